"""One command at a time per env: `up`, `down` and `lock` hold an exclusive lock file."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ringfleet.envlock import EXIT_BUSY, EnvBusy, env_lock
from tests.conftest import ROOT, run_cli

# Holds onprem's lock as `ringfleet up onprem` would, until its stdin closes or HOLD_FOR ends.
HOLDER = """
import sys, time
from pathlib import Path
from ringfleet.envlock import env_lock
with env_lock(Path(sys.argv[1]), "onprem", 0, command="ringfleet up onprem"):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


@pytest.fixture
def project(tmp_path) -> Path:
    shutil.copy(ROOT / "Pulumi.onprem.yaml", tmp_path / "Pulumi.onprem.yaml")
    return tmp_path


def _hold(project: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(project), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def held(project):
    proc = _hold(project, 60)
    yield proc
    proc.kill()
    proc.wait()


def test_second_command_with_timeout_0_exits_busy(project, held):
    result = run_cli("up", "onprem", "--no-converge", "--lock-timeout", "0", root=project)
    assert result.returncode == EXIT_BUSY


def test_second_command_with_timeout_0_names_holder_in_one_line(project, held):
    result = run_cli("down", "onprem", "--lock-timeout", "0", root=project)
    assert result.stderr == (
        f"ringfleet: error: env onprem: busy: pid {held.pid} (`ringfleet up onprem`) holds "
        ".ringfleet/onprem.lock; wait for it, or give --lock-timeout SECONDS to wait\n"
    )


def test_lock_command_takes_the_env_lock_too(project, held):
    result = run_cli("lock", "onprem", "--lock-timeout", "0", root=project)
    assert result.returncode == EXIT_BUSY


def test_second_command_says_it_waits_then_gives_up(project, held):
    result = run_cli("up", "onprem", "--no-converge", "--lock-timeout", "1", root=project)
    assert result.stderr.splitlines() == [
        f"ringfleet: env onprem is busy: pid {held.pid} (`ringfleet up onprem`); "
        "waiting up to 1 s (--lock-timeout)",
        f"ringfleet: error: env onprem: still busy after 1 s: pid {held.pid} "
        "(`ringfleet up onprem`) holds .ringfleet/onprem.lock",
    ]


def test_second_command_runs_once_the_first_is_done(project):
    proc = _hold(project, 1.5)
    try:
        result = run_cli("up", "onprem", "--no-converge", "--lock-timeout", "30", root=project)
    finally:
        proc.wait()
    assert (result.returncode, "waiting up to 30 s" in result.stderr) == (0, True)


def test_lock_is_released_when_its_holder_is_killed(project):
    proc = _hold(project, 60)
    proc.kill()
    proc.wait()
    result = run_cli("up", "onprem", "--no-converge", "--lock-timeout", "0", root=project)
    assert result.returncode == 0


def test_lock_file_is_owner_only(project):
    with env_lock(project, "onprem", 0) as path:
        mode = os.stat(path).st_mode & 0o777
    assert mode == 0o600


def test_in_process_second_holder_is_refused(project):
    with env_lock(project, "onprem", 0), pytest.raises(EnvBusy):  # noqa: SIM117
        with env_lock(project, "onprem", 0):
            pass


def test_wait_gives_up_after_the_timeout(project, held):
    started = time.monotonic()
    with pytest.raises(EnvBusy):  # noqa: SIM117
        with env_lock(project, "onprem", 0.5):
            pass
    assert 0.5 <= time.monotonic() - started < 5
