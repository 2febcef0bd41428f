"""Runtime failures (a node, Pulumi, Ansible) exit 3 in one line; bad input stays exit 2."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
from pulumi import automation as auto
from pulumi.automation._cmd import CommandResult

from ringfleet import cli
from ringfleet.errors import RUNTIME_EXIT, USAGE_EXIT, RingfleetError, RuntimeFailure
from ringfleet.nodes.docker import DockerNode
from ringfleet.providers import stackops
from tests.conftest import ROOT, run_cli

PULUMI_FAILURE = "error: creating EC2 instance: UnauthorizedOperation"

# A static env whose one host is this machine's loopback: SSH there is refused (or
# denied), so the converge finds the node unreachable without sending traffic anywhere else.
LOOPBACK_SPEC = """\
config:
  ringfleet:cluster:
    name: rf-lo
    provider: static
    pools:
      - name: cpu
        cpus: 2
        hosts:
          - name: lo1
            address: 127.0.0.1
    storage:
      kind: nfs
      server: lo1
    network:
      subnet: 127.0.0.0/24
      admin_cidr: 127.0.0.1/32
    ssh:
      admin_user: root
      key_file: id_ed25519
"""
# What `up` reads from the project root besides the spec.
PROJECT_FILES = ("site.yml", "roles", "playbooks", "ansible.cfg", "collections", "Pulumi.yaml")


class FailingStack:
    """Stands in for auto.Stack: every operation fails as the pulumi CLI does."""

    def _fail(self, on_output=None):
        raise auto.CommandError(CommandResult("", PULUMI_FAILURE, 255))

    up = destroy = preview = _fail


@pytest.fixture
def aws_project(tmp_path, monkeypatch) -> Path:
    shutil.copy(ROOT / "Pulumi.aws-dev.yaml", tmp_path / "Pulumi.aws-dev.yaml")
    monkeypatch.setenv("RINGFLEET_ROOT", str(tmp_path))
    monkeypatch.setattr(stackops, "_stack", lambda env, root=None: FailingStack())
    return tmp_path


def _main(monkeypatch, *argv: str) -> int:
    """Run the real entry point in-process (so Pulumi can be faked); its exit code."""
    monkeypatch.setattr(sys, "argv", ["ringfleet", *argv])
    with pytest.raises(SystemExit) as stopped:
        cli.main()
    return stopped.value.code


@pytest.mark.parametrize("verb", ["up", "down"])
def test_pulumi_failure_exits_3(aws_project, monkeypatch, verb) -> None:
    assert _main(monkeypatch, verb, "aws-dev", "--lock-timeout", "0") == RUNTIME_EXIT == 3


@pytest.mark.parametrize(("verb", "step"), [("up", "up"), ("down", "destroy")])
def test_pulumi_failure_is_one_line_naming_the_step(
    aws_project, monkeypatch, capsys, verb, step
) -> None:
    _main(monkeypatch, verb, "aws-dev", "--lock-timeout", "0")
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"ringfleet: error: pulumi {step} -s aws-dev: failed; see pulumi's output above "
        f"(got ' stderr: {PULUMI_FAILURE}')"
    )


@pytest.fixture(scope="module")
def unreachable_up(tmp_path_factory):
    """`ringfleet up` of a static env whose node does not answer SSH: the converge's
    first step, reaching each host, fails."""
    project = tmp_path_factory.mktemp("loopback")
    (project / "Pulumi.lo.yaml").write_text(LOOPBACK_SPEC, encoding="utf-8")
    key = project / "id_ed25519"
    key.write_text("never offered: the host does not answer\n")
    key.chmod(0o600)
    for name in PROJECT_FILES:
        (project / name).symlink_to(ROOT / name)
    return run_cli("up", "lo", "--lock-timeout", "0", root=project, timeout=300)


def test_unreachable_node_exits_3(unreachable_up) -> None:
    assert unreachable_up.returncode == 3, unreachable_up.stderr[-2000:]


def test_unreachable_node_error_names_the_step_and_the_node(unreachable_up) -> None:
    last = unreachable_up.stderr.strip().splitlines()[-1]
    assert (
        last.startswith("ringfleet: error: converge lo: lo1 (127.0.0.1:22): "),
        len(unreachable_up.stderr.strip().splitlines()),
    ) == (
        True,
        1,
    ), unreachable_up.stderr[-2000:]


class _Container:
    """A container whose every command exits 1."""

    def exec_run(self, argv, user="root", demux=False):
        return 1, b"no such file\n"


class _Client:
    class containers:  # noqa: N801 - mirrors docker.DockerClient.containers
        @staticmethod
        def get(name):
            return _Container()


def test_failed_node_command_is_a_runtime_failure() -> None:
    with pytest.raises(RuntimeFailure) as failed:
        DockerNode(_Client(), "rf-local-cpu-1").run(["false"])
    assert failed.value.exit_code == 3


def test_failed_node_command_error_names_the_node() -> None:
    with pytest.raises(RuntimeFailure) as failed:
        DockerNode(_Client(), "rf-local-cpu-1").run(["false"])
    assert failed.value.line() == (
        "ringfleet: error: rf-local-cpu-1: command failed (1): false (got 'no such file')"
    )


@pytest.mark.parametrize("kind", [RingfleetError, RuntimeFailure])
def test_every_error_is_one_line(kind) -> None:
    assert "\n" not in kind("node a\nb", "failed\nhere", "x\ny").line()


def test_bad_input_still_exits_2(tmp_path) -> None:
    proc = run_cli("up", "no-such-env", root=tmp_path)
    assert proc.returncode == USAGE_EXIT == 2
