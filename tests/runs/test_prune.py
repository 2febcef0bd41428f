"""`runs --prune`'s node script, run here on a stand-in shared directory (no Docker)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from ringfleet.runs.prune import prune

DAY = 86400


class HereNode:
    """Runs the node commands on this machine: the script under test, not a stand-in."""

    name = "here"

    def output(self, argv: list[str], user: str = "root") -> str:
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def make_run(runs: Path, run_id: str, age_days: float | None, size: int) -> None:
    """A run directory of `size` bytes whose record ended `age_days` ago (None: no record)."""
    run = runs / run_id
    (run / "tensorboard").mkdir(parents=True)
    (run / "tensorboard" / "events").write_bytes(b"x" * size)
    if age_days is not None:
        status = run / "status.json"
        status.write_text("{}")
        when = time.time() - age_days * DAY
        os.utime(status, (when, when))


@pytest.fixture
def pruned(tmp_path):
    runs = tmp_path / "runs"
    make_run(runs, "old-1", 40, 100_000)
    make_run(runs, "new-1", 1, 100_000)
    make_run(runs, "running-1", None, 100_000)
    spec = SimpleNamespace(
        cluster=SimpleNamespace(storage=SimpleNamespace(mount=str(tmp_path)),
                                ssh=SimpleNamespace(user="root"))
    )
    removed, freed = prune(spec, HereNode(), 30 * DAY)
    return runs, removed, freed


def test_prune_removes_only_runs_older_than_the_age(pruned) -> None:
    runs, removed, _ = pruned
    assert (removed, sorted(p.name for p in runs.iterdir())) == (
        ["old-1"], ["new-1", "running-1"]
    )


def test_prune_counts_what_it_freed(pruned) -> None:
    assert pruned[2] >= 100_000
