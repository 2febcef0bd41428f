"""Detached runs: start and leave (`run --detach`); `logs` and `cancel` are in runs.follow.

The launcher runs under ringfleet/runs/supervise.py, started with setsid on the
launch node, so it keeps going without the controller; everything about the run
is in its record directory, which `logs` and `cancel` use.
"""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path

from rich.console import Console

from ringfleet import paths
from ringfleet.errors import RuntimeFailure
from ringfleet.nodes import RUNNING, Node
from ringfleet.runs import supervise
from ringfleet.runs.access import read_bytes
from ringfleet.runs.record import RECORD_VERSION, STATUS_NAME

SUPERVISOR_NAME = "supervise.py"
PYTHON = f"{paths.NODE_VENV}/bin/python"
# How long `run --detach` waits for every rank's process to exist.
START_TIMEOUT = 120.0
POLL_SECONDS = 1.0
# A rank's process carries its run id and its rank (mpirun's or Horovod's variable).
RANK_VARS = ("OMPI_COMM_WORLD_RANK", "HOROVOD_RANK")


def start_detached(first: Node, nodes: dict[str, Node], job, run_id: str, run_dir: str,
                   owner: tuple[int, int], user: str, ranks: int, console: Console,
                   outputs: dict[str, str | None]) -> None:
    """Start the run under its supervisor; return once every rank's process exists.

    `outputs`: the record's paths of Horovod's timeline and autotune log (or None).
    """
    # What the supervisor writes into status.json besides the outcome (jobs.run's keys).
    meta = {
        "version": RECORD_VERSION, "run_id": run_id, "job": job.name, "lost_node": None,
        "signal": None, "nodes": list(nodes), "ranks": ranks, "launcher": job.launcher,
        **outputs, "timeout_seconds": job.timeout_seconds, "detached": True,
    }
    first.put_file(f"{run_dir}/{supervise.META_NAME}", json.dumps(meta).encode(), owner)
    source = Path(supervise.__file__).read_bytes()
    first.put_file(f"{run_dir}/{SUPERVISOR_NAME}", source, owner)
    # setsid -f: a session of its own, so it outlives this exec or SSH session.
    log = shlex.quote(f"{run_dir}/supervise.log")
    start = (f"cd {shlex.quote(job.workdir)} && setsid -f {PYTHON} "
             f"{shlex.quote(run_dir + '/' + SUPERVISOR_NAME)} {shlex.quote(run_dir)} "
             f"</dev/null >{log} 2>&1")
    first.run(["/bin/sh", "-c", start], user=user)
    deadline = time.monotonic() + START_TIMEOUT
    while (count := sum(rank_count(n, run_id, user) for n in nodes.values())) < meta["ranks"]:
        done = read_bytes(first, f"{run_dir}/{STATUS_NAME}")
        if done is not None:
            status = json.loads(done)
            raise RuntimeFailure(f"run {run_id}", f"ended before detaching: {status['reason']}")
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"run {run_id}", f"only {count} of {meta['ranks']} ranks started")
        time.sleep(POLL_SECONDS)
    console.print(f"run {run_id}: detached; {count} rank(s) running", highlight=False)
    console.print(f"  follow: ringfleet logs ENV {run_id} -f", highlight=False)
    console.print(f"  stop:   ringfleet cancel ENV {run_id}", highlight=False)


def rank_count(node: Node, run_id: str, user: str) -> int:
    """Processes on `node` that are ranks of this run (by their environment)."""
    ranks = "|".join(RANK_VARS)
    script = (
        # Braces: a process that vanished or is not ours fails the redirection, not tr.
        "n=0; for e in /proc/[0-9]*/environ; do env=$({ tr '\\0' '\\n' < \"$e\"; } 2>/dev/null) "
        f"|| continue; echo \"$env\" | grep -qx 'RINGFLEET_RUN_ID={run_id}' || continue; "
        f"echo \"$env\" | grep -qE '^({ranks})=' && n=$((n+1)); done; echo $n"
    )
    if node.state() != RUNNING:
        return 0
    return int(node.output(["/bin/sh", "-c", script], user=user).split()[-1])
