"""converge(): one more run when every failure was a lost connection, none otherwise.

Real ansible-playbook runs on a tiny project of their own: a host whose container
does not exist is unreachable through the docker_api connection (as a Docker exec
that returns nothing is), and a task that fails on localhost is a plain failure.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from ringfleet.converge.ansible import CONVERGE_ATTEMPTS, SITE_PLAYBOOK, converge
from ringfleet.errors import RingfleetError
from ringfleet.providers.docker import DOCKER_CONNECTION
from tests.conftest import ROOT

ABSENT_CONTAINER = "rf-convergetest-no-such-container"
SITE = [
    {
        "name": "Reach every host, then fail where asked.",
        "hosts": "all",
        "gather_facts": False,
        "tasks": [
            {"name": "Ping the host.", "ansible.builtin.ping": {}},
            {
                "name": "Fail where the inventory says so.",
                "ansible.builtin.fail": {"msg": "asked to fail"},
                "when": "rf_test_fail | default(false) | bool",
            },
        ],
    }
]
RETRY_LINE = re.compile(r"unreachable; converging once more \(attempt 2 of 2\)")


def _project(tmp_path: Path, hosts: dict) -> tuple[Path, Path]:
    (tmp_path / "ansible.cfg").write_text((ROOT / "ansible.cfg").read_text())
    (tmp_path / SITE_PLAYBOOK).write_text(yaml.safe_dump(SITE, sort_keys=False))
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": hosts}}))
    return tmp_path, inventory


def _converge(tmp_path: Path, hosts: dict) -> tuple[str, RingfleetError | None]:
    root, inventory = _project(tmp_path, hosts)
    console = Console(file=io.StringIO(), width=300)
    try:
        converge(root, inventory, tmp_path / "state", label="converge test", console=console)
    except RingfleetError as exc:
        return console.file.getvalue(), exc
    return console.file.getvalue(), None


@pytest.fixture(scope="module")
def unreachable(tmp_path_factory) -> tuple[str, RingfleetError | None]:
    hosts = {ABSENT_CONTAINER: {"ansible_connection": DOCKER_CONNECTION}}
    return _converge(tmp_path_factory.mktemp("unreachable"), hosts)


@pytest.fixture(scope="module")
def task_failure(tmp_path_factory) -> tuple[str, RingfleetError | None]:
    hosts = {"localhost": {"ansible_connection": "local", "rf_test_fail": True}}
    return _converge(tmp_path_factory.mktemp("failed"), hosts)


@pytest.mark.docker
def test_unreachable_host_is_converged_once_more(unreachable) -> None:
    output, _ = unreachable
    assert len(RETRY_LINE.findall(output)) == CONVERGE_ATTEMPTS - 1, output


@pytest.mark.docker
def test_unreachable_host_still_fails_after_the_last_attempt(unreachable) -> None:
    output, error = unreachable
    assert error is not None and ABSENT_CONTAINER in str(error), output


def test_failed_task_is_not_run_again(task_failure) -> None:
    output, _ = task_failure
    assert (output.count("play: Reach every host"), RETRY_LINE.search(output)) == (1, None)


def test_failed_task_fails_the_converge_naming_it(task_failure) -> None:
    output, error = task_failure
    assert error is not None and "Fail where the inventory says so." in str(error), output


def test_converge_checks_host_keys(tmp_path):
    """ansible-runner would set ANSIBLE_HOST_KEY_CHECKING=False; the converge env overrides it."""
    from ringfleet.converge.ansible import HOST_KEY_CHECKING, ansible_env

    assert ansible_env(tmp_path)[HOST_KEY_CHECKING] == "True"
