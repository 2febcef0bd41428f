"""Slurm as the scheduler (#19), on a 2-node `scheduler: slurm` cluster of its own.

The env `slurm` lives in a temporary project (its spec from tests/data/slurm, everything
else linked to this repo, so its node image is the one every other test uses); it is
brought up once for the module and removed after. Each job runs once in a module
fixture and several facts are read from that one run.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ringfleet.providers import for_spec
from ringfleet.spec import load_spec
from tests.conftest import ROOT, report, run_cli

pytestmark = [pytest.mark.docker, pytest.mark.cluster]

ENV = "slurm"
DATA = ROOT / "tests" / "data" / "slurm"
# What a project needs besides its spec; linked, so the roles (and the image tag) are this repo's.
PROJECT_FILES = ("Pulumi.yaml", "ansible.cfg", "site.yml", "roles", "playbooks", "templates",
                 "collections", "jobs")  # fmt: skip
NODES = ("rf-slurm-cpu-1", "rf-slurm-cpu-2")
CONTROLLER = NODES[0]
# The node the lost-node test kills: not the controller, whose loss ends Slurm itself.
VICTIM = NODES[1]
RUNNING_RE = re.compile(r"slurm job (\d+): running on \S+, ([0-9.]+|None) s after submission")
SUBMITTED_RE = re.compile(r"slurm job (\d+): submitted")
DONE_RE = re.compile(r"\(exit (-?\d+)\) in ([0-9.]+) s")
ACCURACY_RE = re.compile(r"val_accuracy=([0-9.]+)")
JOB_FILES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "jobs").glob("*.yaml"))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    proj = tmp_path_factory.mktemp("slurm-project")
    for name in PROJECT_FILES:
        (proj / name).symlink_to(ROOT / name)
    shutil.copy(DATA / f"Pulumi.{ENV}.yaml", proj / f"Pulumi.{ENV}.yaml")
    return proj


@pytest.fixture(scope="module")
def slurm_cluster(project, request):
    started = time.monotonic()
    proc = run_cli("up", ENV, root=project, timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report(request, f"slurm: up with Slurm (2 nodes) in {time.monotonic() - started:.0f} s")
    spec = load_spec(ENV, project)
    yield spec
    run_cli("down", ENV, "--purge", root=project, timeout=600)


def on_controller(spec, argv: list[str], user: str = "root") -> tuple[int, str]:
    return for_spec(spec).nodes([CONTROLLER])[CONTROLLER].run(argv, user=user, check=False)


def sacct_state(spec, job_id: str) -> str:
    code, out = on_controller(spec, ["sacct", "-n", "-P", "-X", "-j", job_id, "-o", "State"])
    return out.strip().split()[0] if code == 0 and out.strip() else ""


def job_id_of(output: str) -> str:
    match = SUBMITTED_RE.search(output)
    assert match, output[-2000:]
    return match.group(1)


# --- the cluster ------------------------------------------------------------------


@pytest.mark.parametrize("node", NODES)
def test_sinfo_shows_node_idle(slurm_cluster, node):
    code, out = on_controller(slurm_cluster, ["sinfo", "-h", "-N", "-n", node, "-o", "%T"])
    assert (code, out.strip()) == (0, "idle"), out


# --- digits through sbatch --------------------------------------------------------


@pytest.fixture(scope="module")
def digits_run(slurm_cluster, project, request):
    proc = run_cli("run", ENV, "jobs/digits.yaml", root=project, timeout=1800)
    out = proc.stdout + proc.stderr
    latency = RUNNING_RE.search(out)
    done = DONE_RE.search(out)
    report(
        request,
        f"slurm: digits through Slurm: exit {proc.returncode}, "
        f"{done.group(2) if done else '?'} s, submit-to-start "
        f"{latency.group(2) if latency else '?'} s",
    )
    return proc, out


def test_digits_through_slurm_exits_0(digits_run):
    proc, out = digits_run
    assert proc.returncode == 0, out[-3000:]


def test_digits_through_slurm_reaches_accuracy(digits_run):
    _, out = digits_run
    accuracies = [float(a) for a in ACCURACY_RE.findall(out)]
    assert accuracies and min(accuracies) >= 0.9, out[-3000:]


def test_digits_sacct_says_completed(slurm_cluster, digits_run):
    assert sacct_state(slurm_cluster, job_id_of(digits_run[1])) == "COMPLETED"


def test_digits_record_names_the_slurm_job(slurm_cluster, digits_run):
    _, out = digits_run
    run_dir = re.search(r"record: (\S+)", out).group(1)
    code, text = on_controller(slurm_cluster, ["cat", f"{run_dir}/status.json"])
    assert json.loads(text)["slurm_job_id"] == job_id_of(out)


# --- a failing job ----------------------------------------------------------------


@pytest.fixture(scope="module")
def exit7_run(slurm_cluster, project):
    proc = run_cli("run", ENV, str(DATA / "jobs" / "exit7.yaml"), root=project, timeout=600)
    return proc, proc.stdout + proc.stderr


def test_failing_job_makes_run_exit_with_its_code(exit7_run):
    proc, out = exit7_run
    assert proc.returncode == 7, out[-3000:]


def test_failing_job_is_failed_in_sacct(slurm_cluster, exit7_run):
    assert sacct_state(slurm_cluster, job_id_of(exit7_run[1])) == "FAILED"


# --- every job of jobs/ passes sbatch --test-only -----------------------------------


@pytest.mark.parametrize("job", JOB_FILES)
def test_sbatch_render_passes_test_only(slurm_cluster, project, job):
    proc = run_cli("render", ENV, job, "--format", "sbatch", root=project)
    assert proc.returncode == 0, proc.stderr
    node = for_spec(slurm_cluster).nodes([CONTROLLER])[CONTROLLER]
    path = f"/tmp/test-only-{Path(job).stem}.sbatch"
    node.put_file(path, proc.stdout.encode(), (0, 0), 0o644)
    code, out = node.run(["sbatch", "--test-only", "--partition=cpu", path], user="rf", check=False)
    assert code == 0 and "to start at" in out, out


# --- Ctrl-C and a lost node ---------------------------------------------------------


def start_run(project: Path, job: Path) -> tuple[subprocess.Popen, list[str]]:
    """`ringfleet run` in the background; returns once Slurm says the job runs."""
    import os

    env = {**os.environ, "RINGFLEET_ROOT": str(project)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ringfleet.cli", "run", ENV, str(job)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )  # fmt: skip
    lines: list[str] = []
    for line in proc.stdout:
        lines.append(line)
        if "sleep: started" in line:
            return proc, lines
    raise AssertionError("".join(lines)[-3000:])


def finish(proc: subprocess.Popen, lines: list[str], timeout: float) -> str:
    out, _ = proc.communicate(timeout=timeout)
    return "".join(lines) + out


@pytest.fixture(scope="module")
def interrupted_run(slurm_cluster, project):
    proc, lines = start_run(project, DATA / "jobs" / "sleep.yaml")
    proc.send_signal(signal.SIGINT)
    out = finish(proc, lines, 120)
    return proc.returncode, out


def test_ctrl_c_exits_130(interrupted_run):
    code, out = interrupted_run
    assert code == 130, out[-3000:]


def test_ctrl_c_cancels_the_slurm_job(slurm_cluster, interrupted_run):
    assert sacct_state(slurm_cluster, job_id_of(interrupted_run[1])) == "CANCELLED"


@pytest.fixture(scope="module")
def lost_node_run(slurm_cluster, project, request):
    from ringfleet.providers.docker.engine import docker_client

    proc, lines = start_run(project, DATA / "jobs" / "sleep.yaml")
    killed = time.monotonic()
    docker_client().containers.get(VICTIM).kill()
    out = finish(proc, lines, 300)
    report(request, f"slurm: node killed -> run ended in {time.monotonic() - killed:.0f} s")
    code = proc.returncode
    started = time.monotonic()
    healed = run_cli("up", ENV, root=project, timeout=1800)
    healing = time.monotonic() - started
    report(request, f"slurm: healing up: exit {healed.returncode} in {healing:.0f} s")
    return code, out, healed


def test_lost_node_exits_125(lost_node_run):
    code, out, _ = lost_node_run
    assert code == 125, out[-3000:]


def test_lost_node_is_named(lost_node_run):
    _, out, _ = lost_node_run
    assert f"node {VICTIM} lost" in out, out[-3000:]


def test_lost_node_job_is_node_fail_in_sacct(slurm_cluster, lost_node_run):
    assert sacct_state(slurm_cluster, job_id_of(lost_node_run[1])) == "NODE_FAIL"


def test_lost_node_is_back_idle_after_up(slurm_cluster, lost_node_run, request):
    _, _, healed = lost_node_run
    assert healed.returncode == 0, healed.stderr[-3000:]
    waited = time.monotonic()
    deadline = waited + 60
    while True:
        code, out = on_controller(slurm_cluster, ["sinfo", "-h", "-N", "-n", VICTIM, "-o", "%T"])
        if out.strip() == "idle" or time.monotonic() > deadline:
            break
        time.sleep(2)
    report(request, f"slurm: healed node {out.strip()} {time.monotonic() - waited:.0f} s after up")
    assert out.strip() == "idle", out
