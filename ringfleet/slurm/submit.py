"""`ringfleet run` on a cluster with `scheduler: slurm`: submit the sbatch render as the
job user, stream its output from shared storage, and exit with what `sacct` says.

The run directory and its files are the same as a direct run's (ringfleet.jobs.run makes
them); Slurm writes `output.log` itself (`--output`), ringfleet adds the per-rank logs and
`status.json` with `slurm_job_id`. Ctrl-C or SIGTERM cancels the job (`scancel`), exit 130.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from rich.console import Console
from rich.markup import escape

from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.jobs.attempts import Attempt
from ringfleet.jobs.stopping import Interrupted, raise_interrupted, route_signals
from ringfleet.nodes import Node, lost_node
from ringfleet.runs.record import RECORD_VERSION, rank_exits
from ringfleet.spec import ClusterSpec

SBATCH_NAME = "job.sbatch"
OUTPUT_NAME = "output.log"
# sacct's answer and the controller's output file are read this often, in seconds.
POLL_INTERVAL = 1.0
# slurmdbd records a job's end a moment after slurmctld ends it: how long to wait for it.
SACCT_GRACE = 30.0
# After scancel, how long the job may take to be CANCELLED in sacct before we stop waiting.
CANCEL_GRACE = 20.0
# After a failed job, how long a node's loss may take to show in its state or in sinfo.
LOSS_GRACE = 5.0
EXIT_TIMEOUT = 124
EXIT_NODE_FAIL = 125
EXIT_INTERRUPTED = 130
# What `run` exits with when Slurm ended the job for a reason the job's code does not say.
EXIT_OTHER = 1
# One allocation line: `sacct -X -P -n -o` these fields, in this order.
SACCT_FIELDS = "JobID,State,ExitCode,NodeList,Submit,Start"
# States after which a job never runs again (sacct(1), JOB STATE CODES).
TERMINAL_STATES = frozenset({
    "BOOT_FAIL", "CANCELLED", "COMPLETED", "DEADLINE", "FAILED", "NODE_FAIL", "OUT_OF_MEMORY",
    "PREEMPTED", "TIMEOUT",
})  # fmt: skip
# The nodes Slurm took out of service: a lost node is DOWN once SlurmdTimeout passed.
SINFO_DOWN = ["sinfo", "-h", "-N", "-t", "down,drain,fail", "-o", "%N"]
_EXIT_RE = re.compile(r"^(\d+):(\d+)$")


@dataclass(frozen=True)
class SlurmState:
    """One job as sacct shows it."""

    job_id: str
    state: str
    """The first word: `CANCELLED by 1000` is CANCELLED."""
    exit_code: int
    signal: int
    nodes: str
    """Slurm's host list, e.g. `rf-slurm-cpu-[1-2]`; `None assigned` before it starts."""
    submit: str
    start: str

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass
class SlurmOutcome:
    """How a job through Slurm ended, for `ringfleet run` to report and exit with."""

    job_id: str
    exit_code: int
    reason: str
    seconds: float
    lost_node: str | None = None
    latency: float | None = None
    """Seconds from submission to start, as sacct's Submit and Start say."""
    stopped_by: str | None = None


def sbatch_argv(run_dir: str, partition: str) -> list[str]:
    """Submit the run's sbatch file; Slurm writes every rank's output to the run's record."""
    return [
        "sbatch", "--parsable", f"--partition={partition}",
        f"--output={run_dir}/{OUTPUT_NAME}", f"{run_dir}/{SBATCH_NAME}",
    ]  # fmt: skip


def sacct_argv(job_id: str) -> list[str]:
    return ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", SACCT_FIELDS]


def parse_job_id(text: str) -> str:
    """`sbatch --parsable` prints `ID` or `ID;cluster`."""
    job_id = text.strip().splitlines()[-1].split(";")[0] if text.strip() else ""
    if not job_id.isdigit():
        raise RuntimeFailure("sbatch", "did not print a job id", text.strip()[-200:])
    return job_id


def parse_sacct(text: str, job_id: str) -> SlurmState | None:
    """The allocation's line of `sacct_argv` output; None while sacct does not know the job."""
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) != len(SACCT_FIELDS.split(",")) or parts[0] != job_id:
            continue
        match = _EXIT_RE.match(parts[2])
        code, sig = (int(match.group(1)), int(match.group(2))) if match else (0, 0)
        state = parts[1].split()[0] if parts[1].strip() else "UNKNOWN"
        return SlurmState(parts[0], state, code, sig, parts[3], parts[4], parts[5])
    return None


def outcome_of(state: SlurmState, timeout_seconds: int) -> tuple[int, str]:
    """`run`'s exit code and reason for a job that ended: README "Exit codes"."""
    if state.state == "COMPLETED":
        return 0, "completed"
    if state.state == "FAILED":
        code = state.exit_code or EXIT_OTHER
        return code, f"failed (job exit code {code}; sacct FAILED)"
    if state.state in ("TIMEOUT", "DEADLINE"):
        return EXIT_TIMEOUT, f"timeout after {timeout_seconds} s (sacct {state.state})"
    if state.state == "NODE_FAIL":
        return EXIT_NODE_FAIL, "node lost (sacct NODE_FAIL)"
    if state.state == "CANCELLED":
        return EXIT_INTERRUPTED, "cancelled (sacct CANCELLED)"
    return state.exit_code or EXIT_OTHER, f"ended {state.state} (job exit code {state.exit_code})"


def latency_seconds(state: SlurmState) -> float | None:
    """Seconds from submission to start, from sacct's ISO timestamps (1 s resolution)."""
    try:
        submit = datetime.fromisoformat(state.submit)
        start = datetime.fromisoformat(state.start)
    except ValueError:
        return None
    return (start - submit).total_seconds()


def partition_of(job_pools: list[str], display: str) -> str:
    """One partition per pool, named after it; a job across pools has no one partition."""
    if len(job_pools) != 1:
        raise RingfleetError(
            f"{display}: pools", "with scheduler slurm a job runs in one pool", ",".join(job_pools)
        )
    return job_pools[0]


def submit(controller: Node, run, partition: str) -> str:
    """Write the sbatch render into the run's record and submit it as the job user."""
    controller.put_file(f"{run.run_dir}/{SBATCH_NAME}", run.rendered.sbatch.encode(), run.owner)
    code, output = controller.run(sbatch_argv(run.run_dir, partition), user=run.user, check=False)
    if code != 0:
        raise RuntimeFailure(f"run {run.job.name}: sbatch on {controller.name}", "refused", output)
    return parse_job_id(output)


def query(controller: Node, job_id: str) -> SlurmState | None:
    code, output = controller.run(sacct_argv(job_id), check=False)
    return parse_sacct(output, job_id) if code == 0 else None


class OutputTail:
    """New complete lines of a file on shared storage, read through one node."""

    def __init__(self, node: Node, path: str, user: str):
        self.node, self.path, self.user = node, path, user
        self.offset = 0
        self.partial = ""

    def read(self, final: bool = False) -> list[str]:
        code, text = self.node.run(
            ["tail", "-c", f"+{self.offset + 1}", self.path], user=self.user, check=False
        )
        if code != 0:
            return []
        self.offset += len(text.encode())
        lines = (self.partial + text).split("\n")
        self.partial = "" if final else lines.pop()
        return [line for line in lines if line or not final]


def follow(
    run,
    nodes: dict[str, Node],
    controller: Node,
    job_id: str,
    on_line: Callable[[str], None],
    console: Console,
) -> SlurmOutcome:
    """Stream the job's output until sacct says it ended; Ctrl-C cancels it."""
    started = time.monotonic()
    tail = OutputTail(controller, f"{run.run_dir}/{OUTPUT_NAME}", run.user)
    state: SlurmState | None = None
    stopped_by = None
    announced = False
    try:
        with route_signals(raise_interrupted):
            while state is None or not state.done:
                time.sleep(POLL_INTERVAL)
                state = query(controller, job_id) or state
                for line in tail.read():
                    on_line(line)
                if state and state.state == "RUNNING" and not announced:
                    announced = True
                    console.print(
                        f"slurm job {job_id}: running on {state.nodes}, "
                        f"{latency_seconds(state)} s after submission",
                        highlight=False,
                    )
    except Interrupted as exc:
        stopped_by = exc.signal
        console.print(f"[red]slurm job {job_id}: interrupted ({exc.signal}); scancel {job_id}[/]")
        with route_signals(lambda *_: None):
            controller.run(["scancel", job_id], check=False)
            state = _wait_done(controller, job_id, CANCEL_GRACE) or state
    with route_signals(lambda *_: None):
        for line in tail.read(final=True):
            on_line(line)
    seconds = time.monotonic() - started
    if stopped_by:
        return SlurmOutcome(job_id, EXIT_INTERRUPTED, "interrupted", seconds, stopped_by=stopped_by)
    code, reason = outcome_of(state, run.job.timeout_seconds)
    # The sbatch render waits for Slurm to call a lost node DOWN (NODE_FAIL, templates/
    # sbatch.j2), but a job may still end FAILED first (a node that answers its slurmd port
    # yet lost its ranks, a hand-written script): as in a direct run, the lost node, not
    # the exit code, is the cause.
    lost = _lost_node(controller, nodes, state) if code not in (0, EXIT_TIMEOUT) else None
    if lost:
        code, reason = EXIT_NODE_FAIL, f"node {lost} lost (sacct {state.state})"
    return SlurmOutcome(job_id, code, reason, seconds, lost, latency_seconds(state))


def _wait_done(controller: Node, job_id: str, grace: float) -> SlurmState | None:
    deadline = time.monotonic() + grace
    state = None
    while time.monotonic() < deadline:
        state = query(controller, job_id)
        if state and state.done:
            return state
        time.sleep(POLL_INTERVAL)
    return state


def _lost_node(controller: Node, nodes: dict[str, Node], state: SlurmState) -> str | None:
    """The job's node Slurm marks DOWN, else one of its nodes that is not running.

    Asked again for LOSS_GRACE s (measured in CI: mpirun ended 2.5 s after a kill, before
    the node's state showed it, and the run exited 77 instead of 125).
    """
    code, listed = controller.run(["scontrol", "show", "hostnames", state.nodes], check=False)
    job_nodes = listed.split() if code == 0 else list(nodes)

    def down() -> set[str]:
        code, text = controller.run(SINFO_DOWN, check=False)
        return set(text.split()) if code == 0 else set()

    return lost_node(nodes, LOSS_GRACE, POLL_INTERVAL, job_nodes, down)


def status_record(run, outcome: SlurmOutcome, started_at: str, log: list[str]) -> dict:
    """status.json of a run through Slurm: the schema of ringfleet.runs.record."""
    attempt = Attempt(1, outcome.exit_code, outcome.reason, outcome.lost_node,
                      round(outcome.seconds, 2), outcome.stopped_by, None)  # fmt: skip
    return {
        "version": RECORD_VERSION,
        "run_id": run.run_id,
        "job": run.job.name,
        "exit_code": outcome.exit_code,
        "reason": outcome.reason,
        "lost_node": outcome.lost_node,
        "signal": outcome.stopped_by,
        "started": started_at,
        "seconds": round(outcome.seconds, 2),
        "nodes": run.names,
        "ranks": len(run.rank_nodes),
        "rank_exits": rank_exits(log, len(run.rank_nodes), outcome.exit_code),
        "launcher": "slurm",
        "timeline": None,
        "autotune_log": None,
        "checkpoint_dir": None,
        "attempts": [attempt.record()],
        "recoveries": 0,
        "slurm_job_id": outcome.job_id,
        "slurm_latency": outcome.latency,
    }


def run_through_slurm(
    spec: ClusterSpec, run, controller: Node, log: list[str], show: Callable[[str], list[str]],
    per_rank: dict[int, list[str]], dedupe, console: Console, detach: bool, restarts: int,
) -> SlurmOutcome:  # fmt: skip
    """Submit `run` (made by ringfleet.jobs.run) and follow it, or return once submitted.

    `show` turns one output line into what the console prints (rank tags, banners once);
    `dedupe` holds banners until the end. Slurm requeues nothing here: `restarts` is refused.
    """
    if restarts:
        raise RingfleetError(f"{run.job.display}: restarts", "not with scheduler slurm", restarts)
    partition = partition_of(list(run.job.pools), run.job.display)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    job_id = submit(controller, run, partition)
    console.print(f"slurm job {job_id}: submitted to partition {partition}", highlight=False)

    def on_line(line: str) -> None:
        log.append(line)
        for text in show(line):
            console.print(text, highlight=False)

    if detach:
        outcome = SlurmOutcome(job_id, 0, "detached", 0.0)
    else:
        outcome = follow(run, run.nodes, controller, job_id, on_line, console)
        for text in dedupe.flush(everything=True) if dedupe else []:
            console.print(text, highlight=False)
    status = status_record(run, outcome, started_at, log)
    if detach:
        status.update(exit_code=None, reason="submitted")
    for rank, lines in sorted(per_rank.items()):
        text = "\n".join(lines) + "\n"
        controller.put_file(f"{run.run_dir}/rank-{rank}.log", text.encode(), run.owner)
    data = (json.dumps(status, indent=2) + "\n").encode()
    controller.put_file(f"{run.run_dir}/status.json", data, run.owner)
    style = "green" if outcome.exit_code == 0 else "red"
    console.print(
        f"[{style}]run {run.run_id}: {escape(outcome.reason)} (exit {outcome.exit_code}) in "
        f"{outcome.seconds:.1f} s; slurm job {job_id}[/]; record: {run.run_dir}"
    )
    return outcome
