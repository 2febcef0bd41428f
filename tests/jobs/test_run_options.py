"""`ringfleet run --timeline/--autotune`: Horovod's switches, pointed into the run record."""

from __future__ import annotations

import pytest

from ringfleet.jobs.horovodenv import horovod_env

RUN_DIR = "/shared/runs/job-20260101T000000Z-abcdef"


@pytest.mark.parametrize(
    ("timeline", "autotune", "expected"),
    [
        pytest.param(False, False, {}, id="neither"),
        pytest.param(True, False, {"HOROVOD_TIMELINE": f"{RUN_DIR}/timeline.json"}, id="timeline"),
        pytest.param(
            False,
            True,
            {"HOROVOD_AUTOTUNE": "1", "HOROVOD_AUTOTUNE_LOG": f"{RUN_DIR}/autotune.csv"},
            id="autotune",
        ),
    ],
)
def test_horovod_env(timeline: bool, autotune: bool, expected: dict[str, str]) -> None:
    assert horovod_env(RUN_DIR, timeline, autotune) == expected
