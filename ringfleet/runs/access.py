"""Reading and changing run records on shared storage, through any running node.

Shared storage looks the same from every node, so the first running one serves.
"""

from __future__ import annotations

import base64
import binascii
import shlex
from collections.abc import Iterator

from ringfleet import paths
from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.nodes import RUNNING, Node
from ringfleet.providers import for_spec
from ringfleet.runs.record import STATUS_NAME, RunRecord, parse_run_record, require_run_id
from ringfleet.spec import ClusterSpec


def any_node(spec: ClusterSpec, step: str) -> Node:
    """The first running node of the env (the record is the same through each)."""
    for node in for_spec(spec).nodes().values():
        if node.state() == RUNNING:
            return node
    raise RuntimeFailure(step, f"no node of {spec.env} is running; run `ringfleet up`")


def run_path(spec: ClusterSpec, run_id: str) -> str:
    """The run's directory on shared storage (the id checked first)."""
    return paths.run_dir(spec.cluster.storage.mount, require_run_id(run_id))


def read_bytes(node: Node, path: str) -> bytes | None:
    """The file's bytes, or None when it is not there."""
    script = f"[ -f {shlex.quote(path)} ] || exit 0; base64 -w0 < {shlex.quote(path)}"
    text = node.output(["/bin/sh", "-c", script])
    if not text.strip():
        return None
    try:
        return base64.b64decode(text.strip(), validate=True)
    except binascii.Error:
        raise RingfleetError(path, "could not be read from the node") from None


def read_record(spec: ClusterSpec, node: Node, run_id: str) -> RunRecord:
    """The run's status.json; a run with no record yet (still running) is a one-line error."""
    path = f"{run_path(spec, run_id)}/{STATUS_NAME}"
    data = read_bytes(node, path)
    if data is None:
        exists, _ = node.run(["test", "-d", run_path(spec, run_id)], check=False)
        what = "no record yet (is it still running?)" if exists == 0 else "no such run"
        raise RingfleetError(f"run {run_id}", what)
    return parse_run_record(path, data)


def list_runs(spec: ClusterSpec) -> list[dict]:
    """The status record of every run on shared storage, oldest first."""
    shell = any_node(spec, "runs")
    runs_dir = shlex.quote(paths.runs_dir(spec.cluster.storage.mount))
    # One line per record: its path, a tab, its bytes in base64, so a record that is
    # not UTF-8 or not JSON is still told apart from the others and named.
    script = (
        f'for f in {runs_dir}/*/status.json; do [ -f "$f" ] || continue; '
        'printf "%s\\t" "$f"; base64 -w0 < "$f"; echo; done; true'
    )
    _, text = shell.run(["/bin/sh", "-c", script], check=False)
    records = [parse_run_record(path, data) for path, data in _record_lines(text)]
    return sorted(records, key=lambda r: r.get("run_id") or "")


def _record_lines(text: str) -> Iterator[tuple[str, bytes]]:
    for line in text.splitlines():
        path, tab, encoded = line.partition("\t")
        if not tab:
            continue
        try:
            yield path, base64.b64decode(encoded, validate=True)
        except binascii.Error:
            raise RingfleetError(path, "could not be read from the node") from None
