"""`ringfleet run`: launch a rendered job across nodes, stream it, keep its record.

Every run gets a directory on shared storage, `<mount>/runs/<job>-<UTC time>-<random>/`,
made exclusively, holding the launch script, the run's own hostfile, full and
per-rank logs, the exit status and timing, plus whatever the job writes to
$RINGFLEET_RUN_DIR. Ctrl-C (SIGINT) or SIGTERM stops every rank of the run on
every node and still writes the record (reason "interrupted", exit 130).
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ringfleet import paths
from ringfleet.errors import RingfleetError, RuntimeFailure, one_line
from ringfleet.health.gate import read_env_lock, run_gate, say_gate
from ringfleet.jobs.attempts import Attempt, Policy, run_attempts
from ringfleet.jobs.elastic import DISCOVERY_NAME, ElasticRun, announced
from ringfleet.jobs.horovodenv import (
    HOROVOD_AUTOTUNE_LOG,
    HOROVOD_TIMELINE,
    PERFETTO_URL,
    horovod_env,
)
from ringfleet.jobs.render import WRAPPER_NAME, RenderedJob, render_job
from ringfleet.jobs.spec import Job, load_job, require_script
from ringfleet.jobs.stopping import Interrupted, raise_interrupted, route_signals
from ringfleet.nodes import RUNNING, Node, lost_node, user_ids
from ringfleet.providers import for_spec
from ringfleet.runs.quiet import BannerDedupe, rank_env
from ringfleet.runs.record import RECORD_VERSION, rank_exits
from ringfleet.spec import ClusterSpec, project_root

# Exit codes of `ringfleet run` beyond the job's own.
EXIT_TIMEOUT = 124
EXIT_NODE_LOST = 125
# Stopped by SIGINT or SIGTERM: 128 + SIGINT, what shells report for Ctrl-C.
EXIT_INTERRUPTED = 130
# Any other failure of ringfleet itself while the job ran.
EXIT_ERROR = 1
# Random bytes after the time in a run id: two runs started in one second stay apart.
RUN_ID_RANDOM_BYTES = 3
# How often node liveness and the deadline are checked, in seconds.
WATCH_INTERVAL = 1.0
# After a failed launch, how long a node's loss may take to show in its state.
LOSS_GRACE = 2.0
# After an abort, how long the launcher gets to exit before we stop waiting.
ABORT_GRACE = 20.0
# mpirun --tag-output prefixes every rank line with `[jobid,rank]<stream>:`.
# Horovod's Gloo driver (elastic jobs) tags them `[rank]<stdout>:`.
TAG_RE = re.compile(r"^\[(?:(\d+),)?(\d+)\]<(stdout|stderr|stddiag)>:(.*)$")
RUNS_DIRNAME = paths.RUNS_DIRNAME
# Every attempt of a run sees one checkpoint directory, in the run's record on shared storage.
CHECKPOINT_ENV = "RINGFLEET_CHECKPOINT_DIR"
CHECKPOINT_DIRNAME = "checkpoints"


@dataclass
class RunResult:
    run_id: str
    run_dir: str
    exit_code: int
    reason: str
    seconds: float
    lost_node: str | None = None
    timeline: str | None = None
    autotune_log: str | None = None
    attempts: int = 1
    recoveries: int = 0


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def new_run_id(job_name: str) -> str:
    """`<job>-<UTC time>-<random hex>`: sorts by time, unique even within one second."""
    return f"{job_name}-{_stamp()}-{secrets.token_hex(RUN_ID_RANDOM_BYTES)}"


def kill_run_processes(node: Node, run_id: str, user: str) -> None:
    """Kill every process on `node` whose environment carries this run's id.

    Runs as `user`, the one the ranks run as: reading another user's
    /proc/PID/environ needs CAP_SYS_PTRACE, which containers do not get, so root
    would silently find nothing to kill.
    """
    script = (
        f"for e in /proc/[0-9]*/environ; do "
        f"if tr '\\0' '\\n' < \"$e\" 2>/dev/null | grep -qx 'RINGFLEET_RUN_ID={run_id}'; then "
        f'p=${{e#/proc/}}; kill -KILL "${{p%/environ}}" 2>/dev/null; fi; done; true'
    )
    if node.state() == "running":
        node.run(["/bin/sh", "-c", script], user=user, check=False)


def run_job(
    spec: ClusterSpec,
    job_file: Path,
    console: Console | None = None,
    timeline: bool = False,
    autotune: bool = False,
    policy: Policy | None = None,
    verbose: bool = False,
    detach: bool = False,
) -> RunResult:
    """Launch `job_file` on the env's nodes; returns when the job ends, fails or times out.

    `timeline` and `autotune` turn on Horovod's timeline and autotuning, both written
    into the run's directory; the job's own env wins over them, as over any setting.
    The health gate runs first and, with the job's `restarts`, every attempt is one
    launch in the same run directory (ringfleet.jobs.attempts).
    Unless `verbose`, TensorFlow's INFO banners are off and banners every rank prints
    are shown once (ringfleet.runs.quiet); the record keeps every line either way.
    `detach` returns once the ranks started, the run going on under its supervisor
    on the launch node (ringfleet.runs.detach); it is one attempt, no restarts.
    """
    console = console or Console()
    provider = for_spec(spec)
    provider.require_run()
    job = load_job(job_file, spec)
    policy = (policy or Policy()).for_job(job)
    elastic = job.elastic and f"{job.elastic.min_processes}-{job.elastic.max_processes}"
    for field, value in (("restarts", policy.restarts), ("elastic", elastic)):
        if detach and value:  # both need the controller watching the run; detached has none
            raise RingfleetError(f"{job.display}: {field}", "not with --detach", value)
    run = _prepare(spec, job, timeline, autotune, verbose)
    job = run.job
    console.print(
        f"run {run.run_id}: {len(run.rank_nodes)} rank(s) on {', '.join(run.names)}; "
        f"timeout {job.timeout_seconds} s; record in {run.run_dir}",
        highlight=False,
    )
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    log: list[str] = []
    per_rank: dict[int, list[str]] = {}

    if spec.slurm_controller:  # Slurm places, starts and ends the ranks: ringfleet.slurm.submit
        from ringfleet.slurm.submit import run_through_slurm

        dedupe = None if verbose else BannerDedupe(len(run.rank_nodes))
        _make_run_dir(run)
        done = run_through_slurm(
            spec, run, provider.nodes([spec.slurm_controller])[spec.slurm_controller], log,
            lambda line: _console_lines(line, run.rank_nodes, per_rank, dedupe), per_rank,
            dedupe, console, detach, policy.restarts,
        )  # fmt: skip
        return RunResult(run.run_id, run.run_dir, done.exit_code, done.reason, done.seconds,
                         done.lost_node)  # fmt: skip
    held: list = []  # a detached run's failed gate report, for the record below

    def gate():
        if held:
            return held.pop()
        lock = read_env_lock(project_root(), spec.env)
        return say_gate(run_gate(spec, run.nodes, run.names[0], lock), console.print)

    def launch(number: int) -> Attempt:
        if not run.made:
            _make_run_dir(run)
        if number > 1:
            log.append(f"[ringfleet] attempt {number}")
            console.print(f"run {run.run_id}: attempt {number}", highlight=False)
        return _attempt(run, number, log, per_rank, console, policy.keep_on_failure)

    def heal(name: str) -> None:
        console.print(f"run {run.run_id}: healing {name}", highlight=False)
        provider.heal(project_root(), name, policy.heal_timeout, console)
        run.nodes.update(provider.nodes([name]))

    def healthy(name: str) -> str | None:
        """The gate on a healed node and the launch node that starts its ranks."""
        pair = {n: run.nodes[n] for n in dict.fromkeys([run.names[0], name])}
        report = run_gate(spec, pair, run.names[0], read_env_lock(project_root(), spec.env))
        return None if report.passed else report.failures[0].line()

    say = lambda line: console.print(line, highlight=False)  # noqa: E731
    check = None if policy.skip_health else healthy
    run.elastic = ElasticRun.of(run.rendered, run.nodes, heal, say, run.owner, run.user, check)
    if detach and (detached := _detach(run, gate, policy.skip_health, console, held)):
        return detached
    outcome = run_attempts(policy, gate, launch, heal, lambda line: console.print(line))
    if run.elastic:
        run.elastic.finish(policy.heal_timeout)
    final = outcome.final
    code, reason, lost = final.exit_code, final.reason, final.lost_node
    seconds = time.monotonic() - started
    with route_signals(signal.SIG_IGN):
        status = {
            "version": RECORD_VERSION,
            "run_id": run.run_id,
            "job": job.name,
            "exit_code": code,
            "reason": reason,
            "lost_node": lost,
            "signal": final.signal,
            "started": started_at,
            "seconds": round(seconds, 2),
            "nodes": run.names,
            "ranks": len(run.rank_nodes),
            "rank_exits": rank_exits(log, len(run.rank_nodes), code),
            "launcher": job.launcher,
            "timeline": job.env.get(HOROVOD_TIMELINE),
            "autotune_log": job.env.get(HOROVOD_AUTOTUNE_LOG),
            "checkpoint_dir": job.env.get(CHECKPOINT_ENV),
            "attempts": [a.record() for a in outcome.attempts],
            "recoveries": outcome.recoveries + (run.elastic.rejoins if run.elastic else 0),
            **(run.elastic.record() if run.elastic else {}),
        }
        # Shared storage is the same from every node: write the record through a live one.
        alive = [node for node in run.nodes.values() if node.state() == RUNNING]
        if alive and (run.made or _make_run_dir(run, alive[0], files=False)):
            _save_record(alive[0], run.run_dir, run.owner, log, per_rank, status)
        else:
            console.print(f"[red]run {run.run_id}: no node left to write the record through[/]")
    if final.error is not None:
        raise final.error
    style = "green" if code == 0 else "red"
    console.print(
        f"[{style}]run {run.run_id}: {escape(reason)} (exit {code}) in {seconds:.1f} s[/]; "
        f"record: {run.run_dir}"
    )
    if code != 0 and policy.keep_on_failure and run.made:
        console.print(
            f"kept for debugging: files in {run.run_dir}; processes with "
            f"RINGFLEET_RUN_ID={run.run_id} on {', '.join(run.names)}",
            highlight=False,
        )
    timeline_file = job.env.get(HOROVOD_TIMELINE)
    autotune_log = job.env.get(HOROVOD_AUTOTUNE_LOG)
    if timeline_file:
        console.print(
            f"timeline: {timeline_file} (rank 0's Horovod timeline); copy it off a node and "
            f"open it in chrome://tracing (Load) or {PERFETTO_URL} (Open trace file)",
            highlight=False,
        )
    if autotune_log:
        console.print(f"autotune log: {autotune_log}", highlight=False)
    return RunResult(
        run.run_id, run.run_dir, int(code), reason, seconds, lost, timeline_file, autotune_log,
        attempts=len(outcome.attempts), recoveries=outcome.recoveries,
    )  # fmt: skip


@dataclass
class _Run:
    """One run as prepared before any node changes: its job, nodes and rendered launch."""

    job: Job
    run_id: str
    run_dir: str
    rendered: RenderedJob
    names: list[str]
    nodes: dict[str, Node]
    user: str
    owner: tuple[int, int]
    rank_nodes: dict[int, str]
    made: bool = False
    """Whether the run directory exists (it is made once the gate has passed)."""
    verbose: bool = False
    elastic: ElasticRun | None = None


def _prepare(spec: ClusterSpec, job: Job, timeline: bool, autotune: bool, verbose: bool) -> _Run:
    run_id = new_run_id(job.name)
    mount = spec.cluster.storage.mount
    run_dir = paths.run_dir(mount, run_id)
    horovod = horovod_env(run_dir, timeline, autotune)
    run_env = {
        "RINGFLEET_RUN_DIR": run_dir,
        "RINGFLEET_RUN_ID": run_id,
        CHECKPOINT_ENV: f"{run_dir}/{CHECKPOINT_DIRNAME}",
    }
    quiet = rank_env(job.env, verbose)
    job = job.model_copy(update={"env": {**horovod, **quiet, **job.env, **run_env}})
    wrapper = f"{run_dir}/{WRAPPER_NAME}"
    rendered = render_job(
        spec, job, hostfile=f"{run_dir}/hostfile", wrapper=wrapper,
        discovery=f"{run_dir}/{DISCOVERY_NAME}",
    )  # fmt: skip
    names = [name for name, _ in rendered.placement]
    nodes = for_spec(spec).nodes(names)
    for name, node in nodes.items():
        if node.state() != "running":
            raise RuntimeFailure(
                f"run {job.name}",
                f"node {name} is {node.state()}; run `ringfleet up {spec.env}` first",
            )
    first = nodes[names[0]]
    user = spec.cluster.ssh.user
    owner = user_ids(first, user)
    rank_nodes = dict(enumerate(rendered.ranks))
    return _Run(
        job, run_id, run_dir, rendered, names, nodes, user, owner, rank_nodes, False, verbose
    )


def _make_run_dir(run: _Run, node: Node | None = None, files: bool = True) -> bool:
    """The run's own directory (and, with `files`, its launch files), made once for every
    attempt; False when it cannot be made without the launch files (a failed gate's record)."""
    job, run_dir, user, owner = run.job, run.run_dir, run.user, run.owner
    first = node or run.nodes[run.names[0]]
    first.run(["mkdir", "-p", run_dir.rsplit("/", 1)[0], job.workdir], user=user, check=files)
    # Without -p: mkdir fails when the directory exists, so no two runs share a record.
    made, output = first.run(["mkdir", run_dir], user=user, check=False)
    if made != 0 and not files:
        return False
    if made != 0:
        raise RuntimeFailure(
            f"run {job.name}", f"cannot make the run directory {run_dir}", output.strip()
        )
    run.made = True
    if not files:
        return True
    first.run(["mkdir", job.env[CHECKPOINT_ENV]], user=user)
    script_src = require_script(job)
    first.put_file(f"{job.workdir}/{script_src.name}", script_src.read_bytes(), owner)
    first.put_file(f"{run_dir}/launch.sh", run.rendered.script.encode(), owner, 0o755)
    first.put_file(f"{run_dir}/hostfile", run.rendered.hostfile.encode(), owner)
    first.put_file(f"{run_dir}/{WRAPPER_NAME}", run.rendered.wrapper.encode(), owner, 0o755)
    if run.elastic:
        run.elastic.put_files(first, run.rendered)
    return True


def _attempt(run: _Run, number: int, log, per_rank, console: Console, keep: bool) -> Attempt:
    """One launch of the run; its ranks are stopped on every node before it returns
    (left running on failure with `keep`)."""
    job, run_id, user = run.job, run.run_id, run.user
    first = run.nodes[run.names[0]]
    started = time.monotonic()
    reason, code, lost, stopped_by, error = "", None, None, None, None
    try:
        with route_signals(raise_interrupted):
            launch = ["bash", f"{run.run_dir}/launch.sh"]
            stream = first.stream(launch, user=user, workdir=job.workdir)
            reason, code, lost = _watch(
                stream, job, run_id, run.nodes, run.rank_nodes, log, per_rank, started, user,
                console, None if run.verbose else BannerDedupe(len(run.rank_nodes)), keep,
                run.elastic,
            )  # fmt: skip
    except Interrupted as exc:
        reason, code, stopped_by = "interrupted", EXIT_INTERRUPTED, exc.signal
        console.print(
            f"[red]run {run_id}: interrupted ({exc.signal}); stopping ranks on every node[/]"
        )
    except Exception as exc:  # noqa: BLE001 - re-raised once the ranks are stopped
        error = exc
        reason, code = f"error: {one_line(str(exc))[:200]}", EXIT_ERROR
        console.print(f"[red]run {run_id}: {escape(reason)}; stopping ranks on every node[/]")
    # Cleanup must finish even if Ctrl-C is pressed again: ranks left behind would hold
    # the nodes' cores until their timeout, and the next attempt would meet them.
    with route_signals(signal.SIG_IGN):
        if not (keep and code != 0):
            # Ranks may outlive a failed launcher; nothing of this run may keep running.
            for node in run.nodes.values():
                _stop_ranks(node, run_id, user, console)
    seconds = time.monotonic() - started
    return Attempt(number, int(code), reason, lost, round(seconds, 2), stopped_by, error)


def _detach(run: _Run, gate, skip_health: bool, console: Console, held: list) -> RunResult | None:
    """The gate, the run's files, then the run under its node-side supervisor; None when
    the gate failed (its report goes to `held`: the run ends and is recorded as attached)."""
    from ringfleet.runs.detach import start_detached

    if not skip_health and not (report := gate()).passed:
        held.append(report)
        return None
    _make_run_dir(run)
    env = run.job.env
    outputs = {"timeline": env.get(HOROVOD_TIMELINE), "autotune_log": env.get(HOROVOD_AUTOTUNE_LOG)}
    first = run.nodes[run.names[0]]
    start_detached(
        first, run.nodes, run.job, run.run_id, run.run_dir, run.owner, run.user,
        len(run.rank_nodes), console, outputs,
    )  # fmt: skip
    return RunResult(run.run_id, run.run_dir, 0, "detached", 0.0)


def _watch(
    stream, job, run_id, nodes, rank_nodes, log, per_rank, started, job_user, console, dedupe,
    keep=False, elastic=None,
):  # fmt: skip
    """Stream the launcher's output until it ends, times out or loses a node.

    Returns (reason, exit code, lost node); `log` and `per_rank` fill as lines come,
    so an interruption keeps what was printed so far for the record.
    """
    seen = 0
    reason, code, lost = "", None, None
    last_watch = 0.0
    while True:
        new = list(stream.read(seen, WATCH_INTERVAL))
        seen += len(new)
        announce = elastic.rank_started if elastic else None
        for line in new:
            log.append(line)
            for text in _console_lines(line, rank_nodes, per_rank, dedupe, announce):
                console.print(text, highlight=False)
        for text in dedupe.flush(everything=stream.done) if dedupe else []:
            console.print(text, highlight=False)
        if stream.done and not reason:
            code = _wait_exit_code(stream)
            if code == EXIT_TIMEOUT:
                # The launch script's own `timeout` fired first (it guards against a lost
                # controller too); report it as the timeout it is.
                reason = f"timeout after {job.timeout_seconds} s"
            elif code != 0 and (lost := lost_node(nodes, LOSS_GRACE, WATCH_INTERVAL / 2)):
                # mpirun ends as soon as it loses a node's daemon, often before the watch
                # below sees the node gone: the loss, not the exit code, is the cause.
                reason, code = f"node {lost} lost ({nodes[lost].state()})", EXIT_NODE_LOST
            else:
                reason = "completed" if code == 0 else f"failed (job exit code {code})"
            return reason, code, lost
        now = time.monotonic()
        if now - last_watch >= WATCH_INTERVAL and not reason:
            last_watch = now
            dead = [n for n, node in nodes.items() if node.state() != "running"]
            if dead and not (elastic and elastic.tolerate(dead)):
                lost = dead[0]
                reason = f"node {lost} lost ({nodes[lost].state()})"
                code = EXIT_NODE_LOST
            elif now - started > job.timeout_seconds:
                reason = f"timeout after {job.timeout_seconds} s"
                code = EXIT_TIMEOUT
            if reason:
                console.print(f"[red]run {run_id}: {escape(reason)}; stopping ranks[/]")
                for node in nodes.values():
                    if not keep:
                        kill_run_processes(node, run_id, job_user)
                _drain(stream, ABORT_GRACE)
                return reason, code, lost


def _stop_ranks(node: Node, run_id: str, user: str, console: Console) -> None:
    """kill_run_processes, going on to the next node whatever happens on this one."""
    try:
        kill_run_processes(node, run_id, user)
    except Exception as exc:  # noqa: BLE001 - the other nodes still need their ranks stopped
        console.print(
            f"[red]run {run_id}: could not stop ranks on {node.name}: {escape(str(exc))}[/]"
        )


def _console_lines(line, rank_nodes, per_rank, dedupe, on_announce=None) -> list[str]:
    """What the console shows for one launcher line; `per_rank` gets the rank's text,
    `on_announce(rank, node)` each rank's announcement (elastic runs)."""
    match = TAG_RE.match(line)
    if not match:
        return [f"[launcher] {escape(line)}"]  # raw text: Gloo's errors hold [/path:line]
    rank = int(match.group(2))
    text = match.group(4)
    per_rank.setdefault(rank, []).append(text)
    if where := announced(text):  # an elastic rank says which node it is on
        rank_nodes[where[0]] = where[1]
        if on_announce is not None:
            on_announce(*where)
        return []
    prefix, text = f"[{rank} {rank_nodes.get(rank, '?')}]", escape(text)
    if dedupe is None:
        return [f"{prefix} {text}"]
    return dedupe.feed(rank, prefix, text)


def _wait_exit_code(stream) -> int:
    for _ in range(50):
        code = stream.exit_code()
        if code is not None:
            return code
        time.sleep(0.1)
    return 1


def _drain(stream, grace: float) -> None:
    deadline = time.monotonic() + grace
    while not stream.done and time.monotonic() < deadline:
        list(stream.read(len(stream.lines), 0.5))


def _save_record(node, run_dir, owner, log, per_rank, status) -> None:
    node.put_file(f"{run_dir}/output.log", ("\n".join(log) + "\n").encode(), owner)
    for rank, lines in sorted(per_rank.items()):
        node.put_file(f"{run_dir}/rank-{rank}.log", ("\n".join(lines) + "\n").encode(), owner)
    node.put_file(f"{run_dir}/status.json", (json.dumps(status, indent=2) + "\n").encode(), owner)
