"""`ringfleet logs ENV RUN [-f]` and `ringfleet cancel ENV RUN`, from the run's record.

Both work for any run; a detached one (runs.detach) is the one that still runs
without a controller attached, so it is the one to follow and cancel.
"""

from __future__ import annotations

import base64
import json
import shlex
import time

from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.jobs.run import TAG_RE, kill_run_processes
from ringfleet.nodes import RUNNING, Node, user_ids
from ringfleet.runs import supervise
from ringfleet.runs.access import read_bytes, read_record, run_path
from ringfleet.runs.quiet import BannerDedupe
from ringfleet.runs.record import OUTPUT_LOG_NAME, STATUS_NAME
from ringfleet.spec import ClusterSpec

# How long `cancel` waits for the supervisor to write the record.
CANCEL_TIMEOUT = 60.0
POLL_SECONDS = 1.0


def follow(spec: ClusterSpec, node: Node, run_id: str, keep_following: bool,
           verbose: bool, write) -> None:
    """Print the run's output from its record; with `keep_following`, until it ends."""
    run_dir = run_path(spec, run_id)
    exists, _ = node.run(["test", "-d", run_dir], check=False)
    if exists != 0:
        raise RingfleetError(f"run {run_id}", "no such run")
    log = shlex.quote(f"{run_dir}/{OUTPUT_LOG_NAME}")
    offset, pending = 0, b""
    dedupe = None if verbose else BannerDedupe(_ranks(node, run_dir))
    while True:
        done = read_bytes(node, f"{run_dir}/{STATUS_NAME}") is not None
        script = f"[ -f {log} ] && tail -c +{offset + 1} {log} | base64 -w0; true"
        chunk = base64.b64decode(node.output(["/bin/sh", "-c", script]).strip() or b"")
        offset += len(chunk)
        *lines, pending = (pending + chunk).split(b"\n")
        for raw in lines:
            line = raw.decode(errors="replace")
            match = TAG_RE.match(line)
            if not match:
                write(f"[launcher] {line}")
                continue
            rank, text = int(match.group(2)), match.group(4)
            for out in dedupe.feed(rank, f"[{rank}]", text) if dedupe else [f"[{rank}] {text}"]:
                write(out)
        for out in dedupe.flush(everything=done or not keep_following) if dedupe else []:
            write(out)
        if done or not keep_following:
            break
        time.sleep(POLL_SECONDS)
    if done:
        record = read_record(spec, node, run_id)
        write(f"run {run_id}: {record.get('reason')} (exit {record.get('exit_code')})")


def _ranks(node: Node, run_dir: str) -> int:
    for name in (STATUS_NAME, supervise.META_NAME):
        data = read_bytes(node, f"{run_dir}/{name}")
        if data:
            return int(json.loads(data).get("ranks") or 1)
    return 1


def cancel(spec: ClusterSpec, node: Node, nodes: dict[str, Node], run_id: str, write) -> dict:
    """Stop every rank of a running run; returns the record its supervisor writes."""
    run_dir = run_path(spec, run_id)
    if read_bytes(node, f"{run_dir}/{STATUS_NAME}") is not None:
        record = read_record(spec, node, run_id)
        raise RingfleetError(f"run {run_id}", f"already ended: {record.get('reason')}")
    exists, _ = node.run(["test", "-d", run_dir], check=False)
    if exists != 0:
        raise RingfleetError(f"run {run_id}", "no such run")
    user = spec.cluster.ssh.user
    owner = user_ids(node, user)
    # The marker first: the supervisor reads it when the launcher ends, killed.
    node.put_file(f"{run_dir}/{supervise.CANCEL_NAME}", b"cancelled\n", owner)
    for name, each in nodes.items():
        if each.state() == RUNNING:
            kill_run_processes(each, run_id, user)
            write(f"cancel {run_id}: stopped its processes on {name}")
    deadline = time.monotonic() + CANCEL_TIMEOUT
    while read_bytes(node, f"{run_dir}/{STATUS_NAME}") is None:
        if time.monotonic() > deadline:
            raise RuntimeFailure(f"cancel {run_id}", "ranks stopped but no record was written")
        time.sleep(POLL_SECONDS)
    record = read_record(spec, node, run_id)
    write(f"run {run_id}: {record.get('reason')} (exit {record.get('exit_code')})")
    return record
