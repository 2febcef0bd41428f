"""Elastic Horovod on the local cluster (#18): a node killed mid-run, the run goes on with
the rest, the healed node rejoins, and the run completes on target.

The run happens once (a module fixture); every fact below reads that one run.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, report, run_cli
from tests.jobs.test_run import node_exec, record_dir

pytestmark = pytest.mark.docker

JOB = ROOT / "jobs" / "digits-elastic.yaml"
# digits-elastic places 2 ranks on each of the first two nodes; the first runs Horovod's
# driver, so the second is the one killed.
LAUNCH_NODE, VICTIM = "rf-local-cpu-1", "rf-local-cpu-2"
# Rank 0's line after each committed epoch.
EPOCH = re.compile(r"epoch (\d+): val_accuracy=[0-9.]+ ranks=(\d+)")
KILL_AFTER_EPOCH = 3
LOST_LINE = f"lost {VICTIM}; continuing with 2 ranks"


@pytest.fixture(scope="module")
def elastic(local_cluster):
    """The run's output, exit code and when (seconds after the kill) each epoch ended."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringfleet.cli", "run", "local", str(JOB)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    lines: list[str] = []
    epochs: list[tuple[float, int, int]] = []  # (seconds after the kill, epoch, ranks)
    killed_at = None
    try:
        for line in proc.stdout:
            lines.append(line)
            match = EPOCH.search(line)
            if match and killed_at is not None:
                epochs.append((time.monotonic() - killed_at, int(match[1]), int(match[2])))
            elif match and int(match[1]) >= KILL_AFTER_EPOCH:
                subprocess.run(["docker", "kill", VICTIM], check=True, capture_output=True)
                killed_at = time.monotonic()
        code = proc.wait(timeout=900)
    finally:
        if proc.poll() is None:
            proc.kill()
        # Whatever happened, leave 3 running, converged nodes for the tests after this one.
        if subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", VICTIM],
                          capture_output=True, text=True).stdout.strip() != "true":  # fmt: skip
            run_cli("up", "local", timeout=1800)
    return "".join(lines), code, epochs


def status_of(stdout: str) -> dict:
    return json.loads(node_exec(LAUNCH_NODE, "cat", record_dir(stdout) + "/status.json").stdout)


def test_elastic_run_completes_after_losing_a_node(elastic) -> None:
    stdout, code, _ = elastic
    assert code == 0, stdout[-3000:]


def test_loss_is_announced_with_the_ranks_left(elastic) -> None:
    assert LOST_LINE in elastic[0], elastic[0][-3000:]


def test_training_continues_on_the_rest(elastic, request) -> None:
    smaller = [seconds for seconds, _, ranks in elastic[2] if ranks == 2]
    assert smaller, elastic[0][-3000:]
    report(request, f"elastic: node loss -> training continued (epoch done) in {smaller[0]:.1f} s")


def test_healed_node_rejoins_the_training(elastic, request) -> None:
    after = elastic[2]
    first_small = next(i for i, (_, _, ranks) in enumerate(after) if ranks == 2)
    grown = [seconds for seconds, _, ranks in after[first_small:] if ranks == 4]
    assert grown, elastic[0][-3000:]
    report(request, f"elastic: node loss -> back to 4 ranks in {grown[0]:.1f} s")


def test_elastic_digits_reaches_target_accuracy(elastic) -> None:
    path = record_dir(elastic[0]) + "/metrics.json"
    metrics = json.loads(node_exec(LAUNCH_NODE, "cat", path).stdout)
    assert metrics["val_accuracy"] >= 0.9, metrics


def test_heal_is_announced_as_back_on_the_host_list(elastic) -> None:
    assert f"healed {VICTIM}; back on the host list" in elastic[0], elastic[0][-3000:]


def test_record_keeps_the_loss_the_return_and_the_rejoin(elastic) -> None:
    events = [(e["event"], e["node"]) for e in status_of(elastic[0])["elastic"]["events"]]
    assert events == [("lost", VICTIM), ("returned", VICTIM), ("rejoined", VICTIM)]


def test_record_names_the_lost_node(elastic) -> None:
    assert status_of(elastic[0])["lost_nodes"] == [VICTIM]


def test_record_counts_the_rejoin_as_one_recovery_in_one_attempt(elastic) -> None:
    status = status_of(elastic[0])
    assert (status["recoveries"], len(status["attempts"])) == (1, 1)


def test_lost_node_is_back_and_running(elastic) -> None:
    assert run_cli("status", "local").returncode == 0
