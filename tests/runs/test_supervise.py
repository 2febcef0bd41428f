"""The detached run's node-side supervisor, run here on a stand-in launch script (no Docker)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ringfleet.runs import supervise

LAUNCH = """#!/usr/bin/env bash
echo '[1,0]<stdout>:epoch 1'
echo '[1,1]<stderr>:warning on rank 1'
echo 'launcher line'
exit {code}
"""
META = {"version": 2, "run_id": "job-1", "job": "job", "ranks": 2, "timeout_seconds": 60}


def supervised(tmp_path: Path, code: int, cancel: bool = False) -> Path:
    (tmp_path / "launch.sh").write_text(LAUNCH.format(code=code))
    (tmp_path / supervise.META_NAME).write_text(json.dumps(META))
    if cancel:
        (tmp_path / supervise.CANCEL_NAME).write_text("cancelled\n")
    script = Path(supervise.__file__)
    proc = subprocess.run([sys.executable, str(script), str(tmp_path)], timeout=60)
    assert proc.returncode == 0
    return tmp_path


@pytest.fixture(scope="module")
def completed(tmp_path_factory) -> Path:
    """One completed run, shared by the facts about its files."""
    return supervised(tmp_path_factory.mktemp("run"), 0)


def status(run_dir: Path) -> dict:
    return json.loads((run_dir / "status.json").read_text())


@pytest.mark.parametrize(
    ("code", "cancel", "reason", "exit_code"),
    [(0, False, "completed", 0), (3, False, "failed (job exit code 3)", 3),
     (124, False, "timeout after 60 s", 124), (137, True, "cancelled", 130)],
)
def test_record_reason(tmp_path, code, cancel, reason, exit_code) -> None:
    record = status(supervised(tmp_path, code, cancel))
    assert (record["reason"], record["exit_code"]) == (reason, exit_code)


def test_record_keeps_the_meta_and_version(completed) -> None:
    record = status(completed)
    assert (record["version"], record["run_id"], record["rank_exits"]) == (
        2, "job-1", {"0": 0, "1": 0}
    )


def test_output_log_has_every_line(completed) -> None:
    lines = (completed / "output.log").read_text().splitlines()
    assert lines == ["[1,0]<stdout>:epoch 1", "[1,1]<stderr>:warning on rank 1", "launcher line"]


@pytest.mark.parametrize(("rank", "text"), [(0, "epoch 1"), (1, "warning on rank 1")])
def test_rank_log_has_its_lines(completed, rank: int, text: str) -> None:
    assert (completed / f"rank-{rank}.log").read_text() == text + "\n"
