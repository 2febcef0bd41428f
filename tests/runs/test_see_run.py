"""A run on the real local cluster: one digits run, many facts; one detached run.

The digits run (module-scoped, shared by every fact about it) checks its events, the
report, the plot, the record's schema, TensorBoard on loopback and the quiet output;
a short synthetic run checks detach, `logs -f` and `cancel`.
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, report, run_cli
from tests.jobs.test_run import RECORD_FILES, node_exec, rank_processes, record_dir

pytestmark = pytest.mark.docker

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Off the default, so a TensorBoard the user runs on 6006 is not disturbed.
TB_PORT = 6123
LINE_RE = re.compile(r"^\[(\d+) [^\]]+\] (.*)$")


@pytest.fixture(scope="module")
def digits_run(local_cluster) -> subprocess.CompletedProcess:
    """The one digits run of the local cluster's tests: 4 ranks, 2 on each of 2 nodes."""
    return run_cli("run", "local", "jobs/digits.yaml", timeout=1800)


@pytest.fixture(scope="module")
def digits(digits_run):
    """(the run, its record directory), for the facts that need it to have completed."""
    proc = digits_run
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc, record_dir(proc.stdout)


@pytest.fixture(scope="module")
def run_id(digits) -> str:
    return digits[1].rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def shown(run_id, tmp_path_factory):
    """`runs local RUN --plot --html`: its output and the two files."""
    out = tmp_path_factory.mktemp("report")
    proc = run_cli("runs", "local", run_id, "--plot", str(out / "run.png"),
                   "--html", str(out / "run.html"))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, (out / "run.png").read_bytes(), (out / "run.html").read_text()


def test_digits_writes_tensorboard_events(digits) -> None:
    found = node_exec("rf-local-cpu-2", "find", f"{digits[1]}/tensorboard", "-name",
                      "events.out.tfevents.*")
    assert found.stdout.strip() != "", found.stderr


def test_no_line_is_printed_by_two_ranks(digits) -> None:
    """What `make demo` shows: a line every rank prints appears once, folded."""
    ranks_of: dict[str, set[str]] = {}
    for line in digits[0].stdout.splitlines():
        if (m := LINE_RE.match(line)) and not line.startswith(f"[{m.group(1)} ranks]"):
            ranks_of.setdefault(m.group(2), set()).add(m.group(1))
    assert [text for text, ranks in ranks_of.items() if len(ranks) > 1] == []


def test_full_rank_log_is_kept_in_the_record(digits) -> None:
    log = node_exec("rf-local-cpu-1", "cat", f"{digits[1]}/rank-3.log").stdout
    assert "rank 3/4: trained" in log


def test_record_is_version_2_with_rank_exits(digits) -> None:
    status = json.loads(node_exec("rf-local-cpu-1", "cat", f"{digits[1]}/status.json").stdout)
    assert (status["version"], status["rank_exits"]) == (2, {"0": 0, "1": 0, "2": 0, "3": 0})


@pytest.mark.parametrize("field", ["val_accuracy", "val_loss", "rank exits", "attempts"])
def test_runs_run_prints_the_field(shown, field: str) -> None:
    assert re.search(rf"^{field}\s+\S", shown[0], re.MULTILINE), shown[0]


def test_plot_is_a_png(shown) -> None:
    assert shown[1][:8] == PNG_MAGIC


def test_plot_opens_as_an_image(shown, tmp_path) -> None:
    import matplotlib.image

    (tmp_path / "p.png").write_bytes(shown[1])
    assert matplotlib.image.imread(tmp_path / "p.png").shape[0] > 100


@pytest.mark.parametrize(
    "part", ["data:image/png;base64,", "launch command", "horovodrun", "val_accuracy"]
)
def test_html_report_holds(shown, part: str) -> None:
    assert part in shown[2]


def test_runs_json_is_newest_first(digits, run_id) -> None:
    runs = json.loads(run_cli("runs", "local", "--json").stdout)
    assert runs[0]["run_id"] == run_id


@pytest.fixture(scope="module")
def tensorboard(run_id, request):
    """`ringfleet tensorboard local RUN` serving; what it served; how it stopped."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringfleet.cli", "tensorboard", "local", run_id,
         "--port", str(TB_PORT)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    for line in proc.stdout:
        if "http://" in line:
            break
    report(request, f"tensorboard: serving {time.monotonic() - started:.1f} s after start")
    with urllib.request.urlopen(f"http://127.0.0.1:{TB_PORT}/data/runs", timeout=10) as r:
        runs = json.loads(r.read())
    others = non_loopback_reachable(TB_PORT)
    proc.send_signal(subprocess.signal.SIGINT)
    rest = proc.communicate(timeout=60)[0]
    left = subprocess.run(["docker", "ps", "-aq", "--filter", "name=ringfleet-tensorboard"],
                          capture_output=True, text=True).stdout.strip()
    return {"runs": runs, "others": others, "code": proc.returncode, "rest": rest, "left": left}


def non_loopback_reachable(port: int) -> list[str]:
    """This machine's non-loopback addresses on which `port` accepts a connection."""
    addresses = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    open_on = []
    for address in addresses:
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
            sock.settimeout(3)
            if sock.connect_ex((address, port)) == 0:
                open_on.append(address)
    return open_on


def test_tensorboard_lists_the_run(tensorboard, run_id) -> None:
    assert any(name.startswith(run_id) for name in tensorboard["runs"]), tensorboard["runs"]


def test_tensorboard_port_is_closed_beyond_loopback(tensorboard) -> None:
    assert tensorboard["others"] == []


def test_tensorboard_stops_cleanly_on_ctrl_c(tensorboard) -> None:
    assert (tensorboard["code"], tensorboard["left"]) == (0, ""), tensorboard["rest"]


@pytest.fixture(scope="module")
def detached(local_cluster, request):
    """A synthetic run started with --detach, followed with `logs -f`, then cancelled."""
    job = ROOT / "tests" / "data" / "run" / "synthetic-long.yaml"
    started = time.monotonic()
    proc = run_cli("run", "local", str(job), "--detach", timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    report(request, f"run --detach returned after {time.monotonic() - started:.1f} s")
    run = re.search(r"run (\S+): detached", proc.stdout).group(1)
    follow = subprocess.Popen(
        [sys.executable, "-m", "ringfleet.cli", "logs", "local", run, "-f"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    seen = []
    for line in follow.stdout:
        seen.append(line)
        if "img/sec" in line:
            break
    cancel = run_cli("cancel", "local", run, timeout=120)
    rest = follow.communicate(timeout=120)[0]
    status = json.loads(run_cli("runs", "local", run, "--json").stdout)
    return {"run": run, "seen": "".join(seen), "rest": rest, "cancel": cancel,
            "follow_code": follow.returncode, "status": status}


def test_logs_follow_shows_rank_output(detached) -> None:
    assert "img/sec" in detached["seen"]


def test_cancel_exits_zero(detached) -> None:
    assert detached["cancel"].returncode == 0, detached["cancel"].stderr


def test_record_says_cancelled(detached) -> None:
    assert (detached["status"]["reason"], detached["status"]["cancelled"]) == ("cancelled", True)


def test_logs_follow_ends_with_the_run(detached) -> None:
    assert (detached["follow_code"], "cancelled" in detached["rest"]) == (0, True)


@pytest.mark.parametrize("node", ["rf-local-cpu-1", "rf-local-cpu-2"])
def test_cancel_leaves_no_rank_running(detached, node: str) -> None:
    assert rank_processes(node) == []


# -- the run itself (moved from tests/jobs/test_run.py: one digits run serves both) ----------


def test_digits_exits_zero(digits_run) -> None:
    assert digits_run.returncode == 0, digits_run.stdout[-3000:] + digits_run.stderr[-2000:]


def test_digits_reaches_target_accuracy(digits_run) -> None:
    metrics = json.loads(
        node_exec("rf-local-cpu-1", "cat", record_dir(digits_run.stdout) + "/metrics.json").stdout
    )
    assert (metrics["ranks"], metrics["val_accuracy"] >= 0.9) == (4, True), metrics


def test_digits_saves_the_model(digits_run) -> None:
    path = record_dir(digits_run.stdout) + "/model.keras"
    assert node_exec("rf-local-cpu-3", "test", "-s", path).returncode == 0


@pytest.mark.parametrize(("rank", "node"), [(0, "rf-local-cpu-1"), (3, "rf-local-cpu-2")])
def test_output_is_prefixed_with_rank_and_node(digits_run, rank: int, node: str) -> None:
    assert f"[{rank} {node}] rank {rank}/4: trained" in digits_run.stdout


@pytest.mark.parametrize("name", RECORD_FILES)
def test_run_record_file_exists(digits_run, name: str) -> None:
    path = f"{record_dir(digits_run.stdout)}/{name}"
    assert node_exec("rf-local-cpu-2", "test", "-s", path).returncode == 0


def test_run_status_records_exit_and_timing(digits_run) -> None:
    status = json.loads(
        node_exec("rf-local-cpu-1", "cat", record_dir(digits_run.stdout) + "/status.json").stdout
    )
    assert (status["exit_code"], status["reason"], status["ranks"], status["seconds"] > 0) == (
        0,
        "completed",
        4,
        True,
    )


def test_runs_lists_the_digits_run(digits_run) -> None:
    run_id = record_dir(digits_run.stdout).rsplit("/", 1)[-1]
    proc = run_cli("runs", "local")
    assert (proc.returncode, run_id in proc.stdout.split()) == (0, True)
