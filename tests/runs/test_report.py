"""Run reports without a cluster: rows, throughput, the PNG and HTML, prune ages."""

from __future__ import annotations

import pytest

from ringfleet.errors import RingfleetError
from ringfleet.runs.plot import html_report, png
from ringfleet.runs.prune import parse_age
from ringfleet.runs.report import RunReport, last_throughput, rows

RECORD = {"run_id": "digits-1", "job": "digits", "exit_code": 0, "reason": "completed",
          "seconds": 12.5, "ranks": 2, "nodes": ["n1"], "version": 2,
          "rank_exits": {"0": 0, "1": 0}, "attempts": [], "recoveries": 0}  # fmt: skip
HISTORY = {"loss": [1.0, 0.5, 0.3], "accuracy": [0.5, 0.8, 0.9]}


@pytest.fixture
def run() -> RunReport:
    metrics = {"val_accuracy": 0.97, "val_loss": 0.1, "history": HISTORY}
    return RunReport(RECORD, "/shared/runs/digits-1", metrics, HISTORY, {0: "120.5 img/sec"},
                     "mpirun -np 2 python digits.py\n")


@pytest.mark.parametrize(
    ("field", "value"),
    [("val_accuracy", "0.97"), ("rank exits", "0:0 1:0"), ("throughput rank 0", "120.5 img/sec"),
     ("status", "completed (exit 0)")],
)
def test_report_row(run, field: str, value: str) -> None:
    assert (field, value) in rows(run)


def test_curves_are_not_a_row(run) -> None:
    assert "history" not in dict(rows(run))


def test_png_has_the_png_magic(run) -> None:
    assert png(run)[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("part", ["data:image/png;base64,iVBOR", "mpirun -np 2", "val_accuracy"])
def test_html_report_is_self_contained(run, part: str) -> None:
    assert part in html_report(run, png(run))


def test_html_report_escapes_the_launch_script(run) -> None:
    run.launch = "echo '<script>'"
    assert "<script>" not in html_report(run, b"")


def test_last_throughput_is_the_rank_s_final_figure() -> None:
    lines = ["rank 1: iter #0: 10.0 img/sec", "rank 1: 12.3 img/sec (+-1.0)"]
    assert last_throughput(lines) == "12.3 img/sec"


@pytest.mark.parametrize(("text", "seconds"), [("30d", 2592000), ("12h", 43200), ("0s", 0)])
def test_prune_age(text: str, seconds: int) -> None:
    assert parse_age(text) == seconds


@pytest.mark.parametrize("text", ["30", "d", "-1d", "1w", "1.5d"])
def test_bad_prune_age_is_one_line(text: str) -> None:
    with pytest.raises(RingfleetError, match="--older-than"):
        parse_age(text)
