"""Shared fixtures: the project root and the CLI entry point as users run it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def run_cli(*args: str, root: Path | None = None, timeout: float = 600, **kw):
    """Run `ringfleet ARGS` in a subprocess, the way a user's shell would."""
    env = dict(os.environ)
    if root is not None:
        env["RINGFLEET_ROOT"] = str(root)
    return subprocess.run(
        [sys.executable, "-m", "ringfleet.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
        **kw,
    )


def report(request, line: str) -> None:
    """Write `line` to the test log as it happens: measurements worth keeping in CI's output.

    Output capture is paused around it, or the line would be captured (and dropped
    for a passing test) like the test's own output.
    """
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or capture is None:
        return
    with capture.global_and_fixture_disabled():
        reporter.write_line(line)


@pytest.fixture(scope="module")
def local():
    """The local env's spec (no Docker needed)."""
    from ringfleet.spec import load_spec

    return load_spec("local", ROOT)


@pytest.fixture(scope="module")
def aws():
    from ringfleet.spec import load_spec

    return load_spec("aws-dev", ROOT)


@pytest.fixture(scope="module")
def onprem():
    from ringfleet.spec import load_spec

    return load_spec("onprem", ROOT)


@pytest.fixture(scope="module")
def digits(local):
    """The digits example job on the local env."""
    from ringfleet.jobs.spec import load_job

    return load_job(ROOT / "jobs" / "digits.yaml", local, ROOT)


@pytest.fixture(scope="session")
def local_cluster():
    """The local env's cluster, up and converged once per test session."""
    from ringfleet.spec import load_spec

    proc = run_cli("up", "local", timeout=3600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return load_spec("local", ROOT)
