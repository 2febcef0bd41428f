"""`ringfleet runs ENV --prune --older-than 30d`: remove old run directories.

A run's directory holds its record, checkpoints, TensorBoard events and artifacts,
so removing it frees all of them. Age is the time since the record was written
(status.json's mtime, i.e. when the run ended); a directory with no record is a run
still going (or one being started) and is never removed.
"""

from __future__ import annotations

import re
import shlex
import time

from ringfleet import paths
from ringfleet.errors import RingfleetError
from ringfleet.nodes import Node
from ringfleet.runs.record import STATUS_NAME
from ringfleet.spec import ClusterSpec

UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DURATION_RE = re.compile(r"^(\d+)([smhd])$")


def parse_age(text: str) -> int:
    """`30d`, `12h`, `90m`, `0s` -> seconds; anything else is a one-line error."""
    match = DURATION_RE.match(text.strip())
    if not match:
        raise RingfleetError("--older-than", "must be a number and s, m, h or d, e.g. 30d", text)
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)]


def prune(spec: ClusterSpec, node: Node, older_than: int) -> tuple[list[str], int]:
    """Remove runs whose record is older than `older_than` seconds; (run ids, bytes freed)."""
    cutoff = int(time.time()) - older_than
    runs = shlex.quote(paths.runs_dir(spec.cluster.storage.mount))
    # One line per removed run: its bytes and its id. du before rm: what it freed.
    script = (
        f"for d in {runs}/*/; do d=${{d%/}}; f=\"$d/{STATUS_NAME}\"; [ -f \"$f\" ] || continue; "
        f"[ \"$(stat -c %Y \"$f\")\" -lt {cutoff} ] || continue; "
        'b=$(du -sb "$d" | cut -f1); rm -rf -- "$d" && printf "%s\\t%s\\n" "$b" "${d##*/}"; '
        "done; true"
    )
    text = node.output(["/bin/sh", "-c", script], user=spec.cluster.ssh.user)
    removed, freed = [], 0
    for line in text.splitlines():
        size, _, run_id = line.partition("\t")
        if size.isdigit():
            removed.append(run_id)
            freed += int(size)
    return removed, freed


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"
