"""The run record, `<mount>/runs/<run id>/status.json`: one schema for every writer.

`ringfleet run` writes it; fault tolerance (#18: attempts, recoveries) and the Slurm
launch (#19: slurm_job_id) add to it; `runs`, `logs` and reports read it. Version 2
added `version`, `attempts`, `recoveries`, `slurm_job_id` and `rank_exits`; a record
without `version` is version 1 and loads with those keys at their defaults.
"""

from __future__ import annotations

import json
import re
from typing import TypedDict

from ringfleet.errors import RingfleetError

RECORD_VERSION = 2
STATUS_NAME = "status.json"
METRICS_NAME = "metrics.json"
OUTPUT_LOG_NAME = "output.log"
# A run id is `<job>-<UTC time>-<hex>` (jobs.run.new_run_id); a job name is a plain
# word. Anything else on the command line (a path, `..`, a glob, a control
# character) is refused before it reaches a shell or a path on a node.
RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,199}$")


class Attempt(TypedDict):
    """One launch of the job; #18 retries a run after a lost node as a new attempt."""

    attempt: int
    exit_code: int | None
    reason: str
    lost_node: str | None
    seconds: float


class RunRecord(TypedDict, total=False):
    version: int
    run_id: str
    job: str
    exit_code: int | None
    reason: str | None
    lost_node: str | None
    signal: str | None
    started: str | None
    seconds: float | None
    nodes: list[str]
    ranks: int | None
    launcher: str
    timeline: str | None
    autotune_log: str | None
    # rank -> exit code, or None when it was killed or its code is unknown.
    rank_exits: dict[str, int | None] | None
    attempts: list[Attempt]
    recoveries: int
    slurm_job_id: str | None
    cancelled: bool


NONE = type(None)
# Every typed field and the JSON types it may hold; others pass through untouched.
RECORD_FIELDS: dict[str, tuple[type, ...]] = {
    "run_id": (str,),
    "exit_code": (int, NONE),
    "seconds": (int, float, NONE),
    "ranks": (int, NONE),
    "started": (str, NONE),
    "reason": (str, NONE),
    "version": (int,),
    "rank_exits": (dict, NONE),
    "attempts": (list,),
    "recoveries": (int,),
    "slurm_job_id": (str, NONE),
}
ATTEMPT_FIELDS: dict[str, tuple[type, ...]] = {
    "attempt": (int,),
    "exit_code": (int, NONE),
    "reason": (str,),
    "lost_node": (str, NONE),
    "seconds": (int, float),
}
# What a version-1 record (no `version`) means for the keys version 2 added.
V1_DEFAULTS: dict[str, object] = {
    "version": 1,
    "rank_exits": None,
    "attempts": [],
    "recoveries": 0,
    "slurm_job_id": None,
}
# mpirun names a failed rank as `Process name: [[jobid,rank],...]` then `Exit code: N`.
_PROCESS_RE = re.compile(r"Process name:\s*\[\[\d+,(\d+)\]")
_EXIT_RE = re.compile(r"Exit code:\s*(-?\d+)")


def require_run_id(run_id: str) -> str:
    """`run_id` if it is one; anything else is the one-line bad-input error."""
    if not RUN_ID_RE.match(run_id) or ".." in run_id:
        raise RingfleetError("RUN", "not a run id (letters, digits, '.', '_', '-')", run_id)
    return run_id


def parse_run_record(path: str, data: bytes) -> RunRecord:
    """One run's status.json; a broken or mistyped record is a one-line error naming it."""
    try:
        record = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RingfleetError(path, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        where = f"{path}:{exc.lineno}:{exc.colno}"
        raise RingfleetError(where, f"invalid JSON: {exc.msg}") from None
    if not isinstance(record, dict):
        raise RingfleetError(path, "must be a JSON object (a run record)", record)
    if record.get("run_id") is None:
        raise RingfleetError(f"{path}: run_id", "required")
    _check_types(path, record, RECORD_FIELDS)
    for i, attempt in enumerate(record.get("attempts", [])):
        where = f"{path}: attempts[{i}]"
        if not isinstance(attempt, dict):
            raise RingfleetError(where, "must be an object", attempt)
        _check_types(where, attempt, ATTEMPT_FIELDS, required=True)
    return record


def with_defaults(record: RunRecord) -> RunRecord:
    """`record` with the keys a version-1 record lacks at their defaults."""
    return {**V1_DEFAULTS, **record}  # type: ignore[return-value]


def _check_types(where, record, fields, required: bool = False) -> None:
    for key, kinds in fields.items():
        if key not in record and (not required or NONE in kinds):
            continue
        value = record.get(key)
        if isinstance(value, bool) or not isinstance(value, kinds):
            names = " or ".join("null" if k is NONE else k.__name__ for k in kinds)
            raise RingfleetError(f"{where}: {key}", f"must be {names}", value, show_got=True)


def rank_exits(log: list[str], ranks: int, exit_code: int | None) -> dict[str, int | None]:
    """Each rank's exit code: 0 for all on success, else what mpirun reported per rank.

    A rank mpirun does not name was killed when the run stopped, or its code is
    unknown: None.
    """
    if exit_code == 0:
        return {str(rank): 0 for rank in range(ranks)}
    exits: dict[str, int | None] = {str(rank): None for rank in range(ranks)}
    pending: str | None = None
    for line in log:
        if process := _PROCESS_RE.search(line):
            pending = process.group(1)
        elif pending is not None and (code := _EXIT_RE.search(line)):
            exits[pending] = int(code.group(1))
            pending = None
    return exits
