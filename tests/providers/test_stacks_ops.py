"""ringfleet.stackops: the pulumi CLI check, stack operations, and the inventory from outputs."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from ringfleet.converge.apply import inventory_from_outputs
from ringfleet.converge.inventory import NVIDIA_GROUP, pool_group
from ringfleet.errors import RingfleetError
from ringfleet.providers import stackops
from ringfleet.providers.aws import AWS_LOGIN_USER
from tests.conftest import ROOT

SAMPLE = ROOT / "tests" / "data" / "outputs-aws-dev.json"
SAMPLE_DATA = json.loads(SAMPLE.read_text(encoding="utf-8"))
SAMPLE_NODES = [
    (pool_name, pool, node)
    for pool_name, pool in sorted(SAMPLE_DATA["pools"].items())
    for node in pool["nodes"]
]
NODE_IDS = [node["name"] for _, _, node in SAMPLE_NODES]
NO_CLI = "pulumi CLI not installed"
MISSING_CLI_LINE = (
    "ringfleet: error: pulumi: the pulumi CLI is not installed; install it: "
    "curl -fsSL https://get.pulumi.com | sh (or see https://www.pulumi.com/docs/install/)"
)
STACK_OPS = [stackops.stack_up, stackops.stack_down, stackops.stack_preview, stackops.stack_outputs]


@pytest.fixture
def no_pulumi(monkeypatch, tmp_path):
    """A PATH without the pulumi CLI, whatever this machine has installed."""
    monkeypatch.setenv("PATH", str(tmp_path))


@pytest.fixture(scope="module")
def inventory() -> dict:
    return inventory_from_outputs("aws-dev", SAMPLE)


def children(inventory: dict) -> dict:
    return inventory["all"]["children"]


def hostvars(inventory: dict, pool: str, node: str) -> dict:
    return children(inventory)[pool_group(pool)]["hosts"][node]


# --- the CLI check ------------------------------------------------------------


def test_pulumi_is_unavailable_without_the_cli(no_pulumi):
    assert stackops.pulumi_available() is False


def test_require_pulumi_raises_one_line_with_the_install_command(no_pulumi):
    with pytest.raises(RingfleetError) as caught:
        stackops.require_pulumi()
    assert caught.value.line() == MISSING_CLI_LINE


def test_require_pulumi_exits_2(no_pulumi):
    with pytest.raises(RingfleetError) as caught:
        stackops.require_pulumi()
    assert caught.value.exit_code == 2


@pytest.mark.skipif(shutil.which("pulumi") is not None, reason="pulumi CLI installed here")
def test_require_pulumi_raises_on_this_machine():
    with pytest.raises(RingfleetError, match="the pulumi CLI is not installed"):
        stackops.require_pulumi()


@pytest.mark.parametrize("op", STACK_OPS, ids=[op.__name__ for op in STACK_OPS])
def test_every_stack_operation_checks_for_the_cli_first(no_pulumi, op):
    with pytest.raises(RingfleetError) as caught:
        op("aws-dev")
    assert caught.value.line() == MISSING_CLI_LINE


def test_inventory_without_a_file_needs_the_cli_for_aws(no_pulumi, monkeypatch):
    monkeypatch.setenv("RINGFLEET_ROOT", str(ROOT))
    with pytest.raises(RingfleetError) as caught:
        inventory_from_outputs("aws-dev", None)
    assert caught.value.line() == MISSING_CLI_LINE


def test_inventory_of_a_static_env_needs_no_cli(no_pulumi, monkeypatch):
    monkeypatch.setenv("RINGFLEET_ROOT", str(ROOT))
    inv = inventory_from_outputs("onprem", None)
    assert sorted(children(inv)[pool_group("gpu")]["hosts"]) == ["gpu01", "gpu02"]


@pytest.mark.skipif(shutil.which("pulumi") is None, reason=NO_CLI)
def test_stack_preview_of_a_static_env_creates_only_the_stack(tmp_path, monkeypatch):
    # A throwaway project and local backend: the repo's stack files stay untouched.
    for name in ("Pulumi.yaml", "Pulumi.onprem.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for name in ("stacks", ".venv"):
        os.symlink(ROOT / name, tmp_path / name)
    backend = tmp_path / "backend"
    backend.mkdir()
    monkeypatch.setenv("RINGFLEET_ROOT", str(tmp_path))
    monkeypatch.setenv("PULUMI_BACKEND_URL", backend.as_uri())
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "ringfleet-test")
    summary = stackops.stack_preview("onprem", on_output=lambda line: None)
    assert summary == {"create": 1}


# --- the inventory from the sample outputs ------------------------------------


def test_sample_is_from_the_aws_provider():
    assert SAMPLE_DATA["provider"] == "aws"


@pytest.mark.parametrize("pool", sorted(SAMPLE_DATA["pools"]))
def test_each_pool_is_a_group_of_its_nodes(inventory, pool):
    hosts = children(inventory)[pool_group(pool)]["hosts"]
    assert sorted(hosts) == sorted(n["name"] for n in SAMPLE_DATA["pools"][pool]["nodes"])


def test_gpu_pool_is_in_the_nvidia_group(inventory):
    assert pool_group("gpu") in children(inventory)[NVIDIA_GROUP]["children"]


def test_cpu_pool_is_not_in_the_nvidia_group(inventory):
    assert pool_group("cpu") not in children(inventory)[NVIDIA_GROUP]["children"]


@pytest.mark.parametrize(("pool", "data", "node"), SAMPLE_NODES, ids=NODE_IDS)
def test_host_slots_are_the_pools(inventory, pool, data, node):
    assert hostvars(inventory, pool, node["name"])["ringfleet_slots"] == data["slots"]


@pytest.mark.parametrize(("pool", "data", "node"), SAMPLE_NODES, ids=NODE_IDS)
def test_host_accelerator_is_the_pools(inventory, pool, data, node):
    assert hostvars(inventory, pool, node["name"])["ringfleet_accelerator"] == data["accelerator"]


@pytest.mark.parametrize(("pool", "data", "node"), SAMPLE_NODES, ids=NODE_IDS)
def test_host_private_ip_is_the_nodes(inventory, pool, data, node):
    assert hostvars(inventory, pool, node["name"])["ringfleet_private_ip"] == node["privateIp"]


@pytest.mark.parametrize(("pool", "data", "node"), SAMPLE_NODES, ids=NODE_IDS)
def test_ansible_connects_to_the_public_ip(inventory, pool, data, node):
    assert hostvars(inventory, pool, node["name"])["ansible_host"] == node["publicIp"]


@pytest.mark.parametrize(("pool", "data", "node"), SAMPLE_NODES, ids=NODE_IDS)
def test_ansible_user_is_the_aws_login_user(inventory, pool, data, node):
    assert hostvars(inventory, pool, node["name"])["ansible_user"] == AWS_LOGIN_USER


def test_shared_storage_server_is_the_efs_dns_name(inventory):
    assert (
        inventory["all"]["vars"]["ringfleet_storage_server"]
        == SAMPLE_DATA["sharedStorage"]["server"]
    )
