"""`ringfleet run` on the local cluster: each rank's threads follow its placement; --timeline.

Tiny jobs (a few seconds each) on the local env's 2-CPU nodes.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.conftest import ROOT, run_cli
from tests.jobs.test_run import node_exec, record_dir

pytestmark = pytest.mark.docker

DATA = ROOT / "tests" / "data" / "run"
# What tests/data/run/threads.py prints, behind run's `[rank node]` prefix.
THREADS_LINE = re.compile(
    r"^\[(?P<rank>\d+) (?P<node>\S+)\] threads local_size=(?P<local>\S+) "
    r"omp=(?P<omp>\S+) intra_op=(?P<intra>\S+) inter_op=(?P<inter>\S+)$"
)


def rank_threads(stdout: str) -> dict[int, dict[str, str]]:
    """Each rank's printed settings, by rank."""
    found = {}
    for line in stdout.splitlines():
        if match := THREADS_LINE.match(line.strip()):
            found[int(match["rank"])] = match.groupdict()
    return found


@pytest.fixture(scope="module")
def layouts(local_cluster) -> dict[str, str]:
    """stdout of threads.py run spread (1 rank on each of 2 nodes) and packed (2 on 1)."""
    out = {}
    for layout in ("spread", "packed"):
        proc = run_cli("run", "local", str(DATA / f"threads-{layout}.yaml"), timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
        out[layout] = proc.stdout
    return out


@pytest.mark.parametrize(
    ("layout", "nodes"),
    [("spread", {"rf-local-cpu-1", "rf-local-cpu-2"}), ("packed", {"rf-local-cpu-1"})],
)
def test_threads_job_is_placed_as_asked(layouts: dict[str, str], layout: str, nodes) -> None:
    assert {r["node"] for r in rank_threads(layouts[layout]).values()} == nodes


# 2-CPU nodes: a lone rank gets both cores, two ranks on one node one core each.
@pytest.mark.parametrize(
    ("layout", "rank", "threads"),
    [("spread", 0, "2"), ("spread", 1, "2"), ("packed", 0, "1"), ("packed", 1, "1")],
)
@pytest.mark.parametrize("setting", ["omp", "intra", "inter"])
def test_rank_threads_follow_the_placement(
    layouts: dict[str, str], layout: str, rank: int, threads: str, setting: str
) -> None:
    assert rank_threads(layouts[layout])[rank][setting] == threads


@pytest.fixture(scope="module")
def timeline_run(local_cluster):
    proc = run_cli("run", "local", str(DATA / "timeline.yaml"), "--timeline", timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    path = record_dir(proc.stdout) + "/timeline.json"
    return proc, path, node_exec("rf-local-cpu-2", "cat", path).stdout


def trace_events(text: str) -> list:
    """The Trace Event Format's JSON Array form, whose closing `]` is optional: a writer
    may stop mid-array, and chrome://tracing and Perfetto load it either way."""
    body = text.strip()
    if not body.endswith("]"):
        body = body.rstrip(",") + "]"
    return json.loads(body)


def test_timeline_run_says_how_to_open_it(timeline_run) -> None:
    proc, path, _ = timeline_run
    assert f"timeline: {path}" in proc.stdout and "chrome://tracing" in proc.stdout


def test_timeline_is_a_list_of_trace_events(timeline_run) -> None:
    _, _, text = timeline_run
    events = trace_events(text)
    assert (len(events) > 0, all(isinstance(e, dict) and "ph" in e for e in events)) == (
        True,
        True,
    )


def test_timeline_records_the_allreduces(timeline_run) -> None:
    _, _, text = timeline_run
    names = {e.get("name", "") for e in trace_events(text)}
    assert any("ALLREDUCE" in name for name in names), sorted(names)[:20]
