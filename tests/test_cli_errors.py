"""Environment problems are one-line errors with exit code 2, never tracebacks."""

from __future__ import annotations

import os

import pytest

from tests.conftest import run_cli

ENGINE_DOWN = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}


@pytest.mark.parametrize("verb", ["up", "status", "down"])
def test_docker_unreachable_is_one_line(verb: str, monkeypatch) -> None:
    for key, value in ENGINE_DOWN.items():
        monkeypatch.setitem(os.environ, key, value)
    proc = run_cli(verb, "local")
    lines = proc.stderr.strip().splitlines()
    assert (proc.returncode, len(lines), lines[-1].startswith("ringfleet: error: docker: ")) == (
        2,
        1,
        True,
    ), proc.stderr


def test_docker_unreachable_says_how_to_start_it(monkeypatch) -> None:
    monkeypatch.setitem(os.environ, "DOCKER_HOST", ENGINE_DOWN["DOCKER_HOST"])
    assert "start it with `dockerd" in run_cli("status", "local").stderr


def test_aws_status_before_up_is_one_line() -> None:
    """aws nodes are reached over SSH at the addresses `up` saved; before it, none."""
    proc = run_cli("status", "aws-dev")
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "ringfleet: error: .ringfleet/aws-dev/outputs.json: no saved stack outputs for aws-dev: "
        "run `ringfleet up aws-dev` first",
    )


def test_static_status_without_the_admin_key_is_one_line(monkeypatch) -> None:
    """onprem names no key_file, so it is ~/.ssh/id_ed25519: absent under this HOME."""
    monkeypatch.setitem(os.environ, "HOME", "/nonexistent")
    proc = run_cli("status", "onprem")
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "ringfleet: error: Pulumi.onprem.yaml: cluster.ssh.key_file: no private key at "
        "/nonexistent/.ssh/id_ed25519 (got '/nonexistent/.ssh/id_ed25519')",
    )
