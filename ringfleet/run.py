"""`ringfleet run`: launch a rendered job across nodes, stream it, keep its record.

Every run gets a directory on shared storage, `<mount>/runs/<job>-<UTC time>/`,
holding the launch script, hostfile, full and per-rank logs, the exit status
and timing, plus whatever the job writes to $RINGFLEET_RUN_DIR.
"""

from __future__ import annotations

import json
import re
import shlex
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.markup import escape

from ringfleet.engine import docker_client
from ringfleet.errors import RingfleetError
from ringfleet.jobs import load_job, require_script
from ringfleet.launch import render_job
from ringfleet.nodeshell import DockerNode
from ringfleet.spec import ClusterSpec

# Exit codes of `ringfleet run` beyond the job's own.
EXIT_TIMEOUT = 124
EXIT_NODE_LOST = 125
# How often node liveness and the deadline are checked, in seconds.
WATCH_INTERVAL = 1.0
# After an abort, how long the launcher gets to exit before we stop waiting.
ABORT_GRACE = 20.0
# mpirun --tag-output prefixes every rank line with `[jobid,rank]<stream>:`.
TAG_RE = re.compile(r"^\[(\d+),(\d+)\]<(stdout|stderr|stddiag)>:(.*)$")
RUNS_DIRNAME = "runs"


@dataclass
class RunResult:
    run_id: str
    run_dir: str
    exit_code: int
    reason: str
    seconds: float
    lost_node: str | None = None


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def kill_run_processes(node: DockerNode, run_id: str) -> None:
    """Kill every process on `node` whose environment carries this run's id."""
    script = (
        f"for e in /proc/[0-9]*/environ; do "
        f"if tr '\\0' '\\n' < \"$e\" 2>/dev/null | grep -qx 'RINGFLEET_RUN_ID={run_id}'; then "
        f"p=${{e#/proc/}}; kill -KILL \"${{p%/environ}}\" 2>/dev/null; fi; done; true"
    )
    if node.state() == "running":
        node.run(["/bin/sh", "-c", script], check=False)


def run_job(spec: ClusterSpec, job_file: Path, console: Console | None = None) -> RunResult:
    """Launch `job_file` on the local cluster; returns when the job ends, fails or times out."""
    console = console or Console()
    if spec.cluster.provider != "docker":
        raise RingfleetError(
            "run", f"provider {spec.cluster.provider} is not supported by `run` yet; use docker"
        )
    job = load_job(job_file, spec)
    run_id = f"{job.name}-{_stamp()}"
    mount = spec.cluster.storage.mount.rstrip("/")
    run_dir = f"{mount}/{RUNS_DIRNAME}/{run_id}"
    job = job.model_copy(
        update={"env": {**job.env, "RINGFLEET_RUN_DIR": run_dir, "RINGFLEET_RUN_ID": run_id}}
    )
    rendered = render_job(spec, job)
    client = docker_client()
    names = [name for name, _ in rendered.placement]
    nodes = {name: DockerNode(client, name) for name in names}
    for name, node in nodes.items():
        if node.state() != "running":
            raise RingfleetError(
                f"run {job.name}",
                f"node {name} is {node.state()}; run `ringfleet up {spec.env}` first",
            )
    first = nodes[names[0]]
    user = spec.cluster.ssh.user
    _, ids = first.run(["id", "-u", user])
    _, gids = first.run(["id", "-g", user])
    owner = (int(ids.strip()), int(gids.strip()))
    first.run(["mkdir", "-p", run_dir, job.workdir], user=user)
    script_src = require_script(job)
    first.put_file(f"{job.workdir}/{script_src.name}", script_src.read_bytes(), owner)
    first.put_file(f"{run_dir}/launch.sh", rendered.script.encode(), owner, 0o755)
    first.put_file(f"{run_dir}/hostfile", rendered.hostfile.encode(), owner)
    first.put_file(f"{job.workdir}/hostfile", rendered.hostfile.encode(), owner)
    rank_nodes = dict(enumerate(rendered.ranks))
    console.print(
        f"run {run_id}: {len(rank_nodes)} rank(s) on {', '.join(names)}; "
        f"timeout {job.timeout_seconds} s; record in {run_dir}",
        highlight=False,
    )
    started = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    stream = first.stream(["bash", f"{run_dir}/launch.sh"], user=user, workdir=job.workdir)
    log: list[str] = []
    per_rank: dict[int, list[str]] = {}
    seen = 0
    reason, code, lost = "", None, None
    last_watch = 0.0
    while True:
        new = list(stream.read(seen, WATCH_INTERVAL))
        seen += len(new)
        for line in new:
            log.append(line)
            console.print(_format_line(line, rank_nodes, per_rank), highlight=False)
        if stream.done and not reason:
            code = _wait_exit_code(stream)
            if code == EXIT_TIMEOUT:
                # The launch script's own `timeout` fired first (it guards against a lost
                # controller too); report it as the timeout it is.
                reason = f"timeout after {job.timeout_seconds} s"
            else:
                reason = "completed" if code == 0 else f"failed (job exit code {code})"
            break
        now = time.monotonic()
        if now - last_watch >= WATCH_INTERVAL and not reason:
            last_watch = now
            dead = [n for n, node in nodes.items() if node.state() != "running"]
            if dead:
                lost = dead[0]
                reason = f"node {lost} lost ({nodes[lost].state()})"
                code = EXIT_NODE_LOST
            elif now - started > job.timeout_seconds:
                reason = f"timeout after {job.timeout_seconds} s"
                code = EXIT_TIMEOUT
            if reason:
                console.print(f"[red]run {run_id}: {escape(reason)}; stopping ranks[/]")
                for node in nodes.values():
                    kill_run_processes(node, run_id)
                _drain(stream, ABORT_GRACE)
                break
    seconds = time.monotonic() - started
    # Ranks may outlive a failed launcher; nothing of this run may keep running.
    for node in nodes.values():
        kill_run_processes(node, run_id)
    status = {
        "run_id": run_id,
        "job": job.name,
        "exit_code": code,
        "reason": reason,
        "lost_node": lost,
        "started": started_at,
        "seconds": round(seconds, 2),
        "nodes": names,
        "ranks": len(rank_nodes),
        "launcher": job.launcher,
    }
    # Shared storage is the same from every node: write the record through a live one.
    alive = [node for node in nodes.values() if node.state() == "running"]
    if alive:
        _save_record(alive[0], run_dir, owner, log, per_rank, status)
    else:
        console.print(f"[red]run {run_id}: no node left to write the record through[/]")
    style = "green" if code == 0 else "red"
    console.print(
        f"[{style}]run {run_id}: {escape(reason)} (exit {code}) in {seconds:.1f} s[/]; "
        f"record: {run_dir}"
    )
    return RunResult(run_id, run_dir, int(code), reason, seconds, lost)


def _format_line(line: str, rank_nodes: dict[int, str], per_rank: dict[int, list[str]]) -> str:
    match = TAG_RE.match(line)
    if not match:
        return f"[launcher] {line}"
    rank = int(match.group(2))
    text = match.group(4)
    per_rank.setdefault(rank, []).append(text)
    return f"[{rank} {rank_nodes.get(rank, '?')}] {text}"


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


def list_runs(spec: ClusterSpec) -> list[dict]:
    """The status record of every run on shared storage, oldest first."""
    client = docker_client()
    mount = spec.cluster.storage.mount.rstrip("/")
    for node in spec.nodes:
        shell = DockerNode(client, node.name)
        if shell.state() == "running":
            break
    else:
        raise RingfleetError("runs", f"no node of {spec.env} is running; run `ringfleet up`")
    runs_dir = shlex.quote(f"{mount}/{RUNS_DIRNAME}")
    _, text = shell.run(
        ["/bin/sh", "-c", f"cat {runs_dir}/*/status.json 2>/dev/null; true"], check=False
    )
    decoder = json.JSONDecoder()
    records, pos = [], 0
    text = text.strip()
    while pos < len(text):
        obj, end = decoder.raw_decode(text, pos)
        records.append(obj)
        pos = end
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return sorted(records, key=lambda r: r.get("run_id", ""))
