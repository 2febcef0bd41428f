"""The run record's schema (no Docker): versions, reserved keys, per-rank exits, run ids."""

from __future__ import annotations

import json

import pytest

from ringfleet.errors import RingfleetError
from ringfleet.runs.record import (
    RECORD_VERSION,
    parse_run_record,
    rank_exits,
    require_run_id,
    with_defaults,
)
from tests.conftest import run_cli

PATH = "/shared/runs/digits-1/status.json"
V1 = {"run_id": "digits-1", "exit_code": 0, "seconds": 1.5, "ranks": 4, "reason": "completed"}
ATTEMPT = {"attempt": 1, "exit_code": 125, "reason": "node lost", "lost_node": "n2", "seconds": 3}
HOSTILE_IDS = ["../../etc", "a/b", "-rf", "x;rm -rf /", "run\nid", "*", ".hidden", ""]


def load(record: dict) -> dict:
    return parse_run_record(PATH, json.dumps(record).encode())


@pytest.mark.parametrize(
    ("key", "default"),
    [("version", 1), ("attempts", []), ("recoveries", 0), ("slurm_job_id", None)],
)
def test_version_1_record_loads_with_defaults(key: str, default) -> None:
    assert with_defaults(load(V1))[key] == default


def test_version_2_record_with_attempts_loads() -> None:
    record = {**V1, "version": RECORD_VERSION, "attempts": [ATTEMPT], "recoveries": 1}
    assert with_defaults(load(record))["attempts"] == [ATTEMPT]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"attempts": [{**ATTEMPT, "attempt": "1"}]}, "attempts[0]: attempt: must be int"),
        ({"attempts": [{**ATTEMPT, "reason": None}]}, "attempts[0]: reason: must be str"),
        ({"attempts": ["x"]}, "attempts[0]: must be an object"),
        ({"recoveries": 1.5}, "recoveries: must be int"),
        ({"slurm_job_id": 42}, "slurm_job_id: must be str or null"),
        ({"version": "2"}, "version: must be int"),
    ],
)
def test_mistyped_v2_key_is_one_line_naming_it(change: dict, line: str) -> None:
    with pytest.raises(RingfleetError) as caught:
        load({**V1, **change})
    assert f"ringfleet: error: {PATH}: {line}" in caught.value.line()


def test_rank_exits_all_zero_on_success() -> None:
    assert rank_exits([], 2, 0) == {"0": 0, "1": 0}


def test_rank_exits_from_mpirun_report() -> None:
    log = ["Process name: [[6123,1],1]", "  Exit code:    3", "other"]
    assert rank_exits(log, 2, 3) == {"0": None, "1": 3}


@pytest.mark.parametrize("run_id", HOSTILE_IDS)
def test_hostile_run_id_is_refused(run_id: str) -> None:
    with pytest.raises(RingfleetError):
        require_run_id(run_id)


def test_run_id_as_written_by_run_is_accepted() -> None:
    assert require_run_id("digits-20261124T021925Z-3f9a0c") == "digits-20261124T021925Z-3f9a0c"


@pytest.mark.parametrize("command", ["runs", "logs", "cancel"])
def test_hostile_run_id_on_the_command_line_is_one_line_exit_2(command: str) -> None:
    proc = run_cli(command, "local", "../../etc/passwd", timeout=60)
    assert (proc.returncode, proc.stderr.strip().splitlines()) == (
        2,
        ["ringfleet: error: RUN: not a run id (letters, digits, '.', '_', '-') "
         "(got '../../etc/passwd')"],
    )
