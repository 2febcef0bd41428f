"""After `ringfleet up` on a `scheduler: slurm` cluster: nodes a lost job still holds.

A node lost while its job ended (the launcher ended before Slurm called the node DOWN)
stays COMPLETING that job after it is healed: its new slurmd registers, but slurmctld
counts the job's cleanup on it until a retried terminate request reaches it (measured
once: still `completing` over 60 s after the healing `up`). The sbatch render now waits
for NODE_FAIL (templates/sbatch.j2), which makes the node DOWN first; this covers the
rest (hand-written scripts, a node healed mid-wait).
"""

from __future__ import annotations

from datetime import datetime

from ringfleet.nodes import Node

COMPLETING = ["sinfo", "-h", "-N", "-t", "completing", "-o", "%N"]
REASON = "ringfleet up: slurmd started after its job ended"


def _time(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.strip())
    except ValueError:
        return None


def slurmd_started(node_line: str) -> datetime | None:
    """SlurmdStartTime of one `scontrol show node -o` line."""
    for field in node_line.split():
        if field.startswith("SlurmdStartTime="):
            return _time(field.partition("=")[2])
    return None


def held_by_ended_jobs(started: datetime | None, job_ends: list[str]) -> bool:
    """True when every job the node is completing ended before its slurmd started: that
    slurmd never ran them, so nothing of them is left on the node to clean up."""
    ends = [_time(text) for text in job_ends if text.strip()]
    return bool(ends) and started is not None and all(e is not None and e < started for e in ends)


def release_held_nodes(controller: Node) -> list[str]:
    """DOWN then RESUME each node held only by jobs that ended before its slurmd started.

    DOWN on a COMPLETING node only drops it from those jobs' cleanup (their sacct state
    stays); RESUME makes it idle. A node whose slurmd kept running is never touched: its
    cleanup (a slow epilog) is real. Returns the nodes released.
    """
    code, text = controller.run(COMPLETING, check=False)
    released = []
    for name in sorted(set(text.split())) if code == 0 else []:
        _, line = controller.run(["scontrol", "show", "node", "-o", name], check=False)
        _, ends = controller.run(["squeue", "-h", "-w", name, "-t", "CG", "-o", "%e"], check=False)
        if not held_by_ended_jobs(slurmd_started(line), ends.splitlines()):
            continue
        for state in (["state=down", f"reason={REASON}"], ["state=resume"]):
            controller.run(["scontrol", "update", f"nodename={name}", *state], check=False)
        released.append(name)
    return released
