"""`ringfleet run` on the real local cluster: failures, timeout, node loss, refusal.

The digits run's own facts (exit, accuracy, model, prefixes, record files) are in
tests/runs/test_see_run.py, on the one digits run the local cluster's tests share.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.docker

DATA = ROOT / "tests" / "data" / "run"
RECORD_FILES = ["launch.sh", "hostfile", "output.log", "status.json", "rank-0.log"]


def node_exec(node: str, *argv: str, user: str = "rf") -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", "-u", user, node, *argv], capture_output=True, text=True, timeout=60
    )


def record_dir(stdout: str) -> str:
    match = re.search(r"record: (\S+)", stdout)
    assert match, stdout[-2000:]
    return match.group(1)


def rank_processes(node: str) -> list[str]:
    """The job user's live python processes on `node`.

    A killed rank stays a zombie (`[python] <defunct>`) until its parent reaps it; it
    holds no CPU or memory and runs nothing, so it does not count as a rank left running.
    """
    proc = node_exec(node, "pgrep", "-u", "rf", "-a", "python", user="root")
    return [line for line in proc.stdout.strip().splitlines() if not line.endswith("<defunct>")]


def start_hang_until_training() -> tuple[subprocess.Popen, list[str]]:
    """Start `run local hang.yaml` on three nodes; return once its ranks are training."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringfleet.cli", "run", "local", str(DATA / "hang.yaml")],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "step 20" in line:
            break
    return proc, lines


def test_failing_rank_fails_the_run(local_cluster) -> None:
    proc = run_cli("run", "local", str(DATA / "fails.yaml"), timeout=600)
    assert proc.returncode != 0 and "failed" in proc.stdout, proc.stdout[-2000:]


def test_too_many_processes_refused_before_launch(local_cluster) -> None:
    proc = run_cli("run", "local", str(DATA / "too-many.yaml"))
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "ringfleet: error: tests/data/run/too-many.yaml: job.processes: only 6 slot(s) in pool cpu "
        "(3 node(s) x 2) (got 64)",
    )


@pytest.fixture(scope="module")
def timed_out(local_cluster):
    started = time.monotonic()
    proc = run_cli("run", "local", str(DATA / "short-timeout.yaml"), timeout=600)
    return proc, time.monotonic() - started


def test_timeout_exit_code(timed_out) -> None:
    proc, _ = timed_out
    assert proc.returncode == 124, proc.stdout[-2000:]


def test_timeout_is_enforced_promptly(timed_out) -> None:
    _, seconds = timed_out
    assert seconds < 40 + 60


@pytest.mark.parametrize("node", ["rf-local-cpu-1", "rf-local-cpu-2"])
def test_timeout_leaves_no_rank_running(timed_out, node: str) -> None:
    assert rank_processes(node) == []


@pytest.fixture(scope="module")
def node_lost(local_cluster):
    """Kill rf-local-cpu-2 while `hang` runs on three nodes; repair the cluster afterwards."""
    proc, lines = start_hang_until_training()
    subprocess.run(["docker", "kill", "rf-local-cpu-2"], check=True, capture_output=True)
    killed = time.monotonic()
    try:
        rest, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
    elapsed = time.monotonic() - killed
    survivors = {n: rank_processes(n) for n in ("rf-local-cpu-1", "rf-local-cpu-3")}
    # Repair at once, not at module teardown: the tests after this one need all 3 nodes.
    assert run_cli("up", "local", timeout=1800).returncode == 0
    return proc.returncode, "".join(lines) + rest, elapsed, survivors


def test_node_loss_exit_code(node_lost) -> None:
    code, output, _, _ = node_lost
    assert code == 125, output[-2000:]


def test_node_loss_names_the_node(node_lost) -> None:
    _, output, _, _ = node_lost
    assert "node rf-local-cpu-2 lost" in output


def test_node_loss_detected_within_60_seconds(node_lost) -> None:
    _, _, elapsed, _ = node_lost
    assert elapsed < 60


@pytest.mark.parametrize("node", ["rf-local-cpu-1", "rf-local-cpu-3"])
def test_node_loss_leaves_no_rank_running(node_lost, node: str) -> None:
    _, _, _, survivors = node_lost
    assert survivors[node] == []


@pytest.fixture(scope="module")
def interrupted(local_cluster):
    """Ctrl-C (SIGINT) to `ringfleet run` while `hang` runs ranks on three nodes."""
    proc, lines = start_hang_until_training()
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        rest, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        rest, _ = proc.communicate()
    elapsed = time.monotonic() - sent
    output = "".join(lines) + rest
    # A killed remote rank stays a zombie until its orted notices mpirun is gone and
    # reaps it; give that a few seconds, then look.
    nodes = ("rf-local-cpu-1", "rf-local-cpu-2", "rf-local-cpu-3")
    deadline = time.monotonic() + 15
    ranks = {n: rank_processes(n) for n in nodes}
    while any(ranks.values()) and time.monotonic() < deadline:
        time.sleep(1)
        ranks = {n: rank_processes(n) for n in nodes}
    return proc.returncode, output, elapsed, ranks


def test_interrupt_exits_130(interrupted) -> None:
    code, output, _, _ = interrupted
    assert code == 130, output[-2000:]


@pytest.mark.parametrize("node", ["rf-local-cpu-1", "rf-local-cpu-2", "rf-local-cpu-3"])
def test_interrupt_leaves_no_rank_running(interrupted, node: str) -> None:
    _, _, _, ranks = interrupted
    assert ranks[node] == []


def test_interrupt_writes_the_record(interrupted) -> None:
    _, output, _, _ = interrupted
    status = json.loads(
        node_exec("rf-local-cpu-1", "cat", record_dir(output) + "/status.json").stdout
    )
    assert (status["reason"], status["exit_code"], status["signal"]) == (
        "interrupted", 130, "SIGINT"
    )


def test_interrupt_stops_the_run_promptly(interrupted) -> None:
    _, _, elapsed, _ = interrupted
    assert elapsed < 60
