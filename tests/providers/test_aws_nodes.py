"""aws envs are reached like bare metal: SshNodes from the outputs `up` saved, as `admin`
with the stack's key and the env's known_hosts, checked strictly; no ssh-agent.

No instance is contacted: these check what the controller would dial and with what.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from ringfleet import paths
from ringfleet.converge.inventory import render_inventory
from ringfleet.errors import RingfleetError
from ringfleet.nodes.ssh import SshNode
from ringfleet.providers import for_spec
from ringfleet.providers.aws import AWS_LOGIN_USER
from ringfleet.spec import load_spec
from ringfleet.state import write_outputs, write_stack_key
from tests.conftest import ROOT, run_cli

ENV = "aws-dev"
SAMPLE = json.loads((ROOT / "tests" / "data" / "outputs-aws-dev.json").read_text())
SAMPLE_NODES = {n["name"]: n for p in SAMPLE["pools"].values() for n in p["nodes"]}
# Not a usable key: no connection is made, only its presence and mode are checked.
KEY_TEXT = "-----BEGIN OPENSSH PRIVATE KEY-----\nbm90IHVzZWQ=\n-----END OPENSSH PRIVATE KEY-----\n"


def project(tmp_path: Path, ssh: dict | None = None, outputs: bool = True, key: bool = True):
    """A project with the aws-dev spec (its ssh block updated by `ssh`) and, as `up`
    leaves them, the saved outputs and the stack key."""
    doc = yaml.safe_load((ROOT / f"Pulumi.{ENV}.yaml").read_text())
    doc["config"]["ringfleet:cluster"]["ssh"].update(ssh or {})
    (tmp_path / f"Pulumi.{ENV}.yaml").write_text(yaml.safe_dump(doc))
    if outputs:
        write_outputs(tmp_path, ENV, {k: v for k, v in SAMPLE.items() if k != "sshPrivateKey"})
    if key:
        write_stack_key(tmp_path, ENV, KEY_TEXT)
    return load_spec(ENV, tmp_path)


@pytest.fixture
def nodes(tmp_path: Path) -> dict[str, SshNode]:
    return for_spec(project(tmp_path)).nodes()  # type: ignore[return-value]


def test_every_spec_node_is_an_ssh_node(nodes):
    assert {n: type(node) for n, node in nodes.items()} == {n: SshNode for n in SAMPLE_NODES}


@pytest.mark.parametrize("name", sorted(SAMPLE_NODES))
def test_node_is_dialled_at_its_public_address(nodes, name):
    assert nodes[name].address == SAMPLE_NODES[name]["publicIp"]


def test_nodes_log_in_as_admin(nodes):
    assert {node.admin_user for node in nodes.values()} == {AWS_LOGIN_USER}


def test_nodes_use_the_stack_key(nodes, tmp_path):
    assert {node.key_file for node in nodes.values()} == {paths.stack_key_path(tmp_path, ENV)}


def test_known_hosts_defaults_to_the_inventory_dir(nodes, tmp_path):
    assert {n.known_hosts for n in nodes.values()} == {paths.known_hosts_path(tmp_path, ENV)}


def test_known_hosts_from_the_spec(tmp_path):
    spec = project(tmp_path, ssh={"known_hosts": "site/known_hosts"})
    node = for_spec(spec).nodes()["rf-dev-cpu-1"]
    assert node.known_hosts == tmp_path / "site" / "known_hosts"


def test_proxy_jump_from_the_spec(tmp_path):
    spec = project(tmp_path, ssh={"proxy_jump": "jump@bastion.example.org"})
    assert for_spec(spec).nodes()["rf-dev-gpu-1"].proxy_jump == "jump@bastion.example.org"


@pytest.mark.parametrize(
    "option",
    ["StrictHostKeyChecking=yes", "IdentityAgent=none", "IdentitiesOnly=yes", "BatchMode=yes"],
)
def test_converge_connects_strictly_without_an_agent(nodes, option):
    """The inventory's connection settings, as `up` renders them for aws."""
    connection = {name: node.ansible_host_vars() for name, node in nodes.items()}
    hosts = render_inventory(SAMPLE, connection=connection)["all"]["children"]["pool_cpu"]
    assert option in hosts["hosts"]["rf-dev-cpu-1"]["ansible_ssh_common_args"]


def test_converge_key_is_the_stack_key(nodes, tmp_path):
    connection = {name: node.ansible_host_vars() for name, node in nodes.items()}
    hosts = render_inventory(SAMPLE, connection=connection)["all"]["children"]["pool_gpu"]
    key = hosts["hosts"]["rf-dev-gpu-2"]["ansible_ssh_private_key_file"]
    assert key == str(paths.stack_key_path(tmp_path, ENV))


def test_admin_becomes_root_with_sudo(nodes):
    hv = nodes["rf-dev-cpu-1"].ansible_host_vars()
    assert (hv["ansible_user"], hv["ansible_become"]) == ("admin", True)


def test_another_admin_user_is_refused(tmp_path):
    with pytest.raises(RingfleetError) as refused:
        project(tmp_path, ssh={"admin_user": "ops"})
    assert refused.value.line() == (
        "ringfleet: error: Pulumi.aws-dev.yaml: cluster.ssh.admin_user: aws nodes are logged "
        "in to as admin (cloud-init makes it with the stack's key); leave it unset (got 'ops')"
    )


MISSING_STATE = {
    "outputs": (
        {"outputs": False},
        "ringfleet: error: .ringfleet/aws-dev/outputs.json: no saved stack outputs for "
        "aws-dev: run `ringfleet up aws-dev` first",
    ),
    "stack key": (
        {"key": False},
        "ringfleet: error: .ringfleet/aws-dev/ssh/stack_key: no stack key: `ringfleet up "
        "aws-dev` writes it (docs/pulumi.md says how to write it from the stack by hand)",
    ),
}


@pytest.mark.parametrize("missing", MISSING_STATE)
def test_missing_state_is_one_line(tmp_path, missing):
    left_out, line = MISSING_STATE[missing]
    spec = project(tmp_path, **left_out)
    with pytest.raises(RingfleetError) as refused:
        for_spec(spec).nodes()
    assert refused.value.line() == line


def test_a_stack_key_others_can_read_is_refused(tmp_path):
    spec = project(tmp_path)
    paths.stack_key_path(tmp_path, ENV).chmod(0o644)
    with pytest.raises(RingfleetError, match=r"^ringfleet: error: \.ringfleet/aws-dev/ssh/"):
        for_spec(spec).nodes()


def test_trust_targets_are_the_nodes_addresses(tmp_path):
    targets = for_spec(project(tmp_path)).trust_targets()
    assert {t.name: t.address for t in targets} == {
        n: node["publicIp"] for n, node in SAMPLE_NODES.items()
    }


def test_trust_needs_instance_ids_in_the_outputs(tmp_path):
    spec = project(tmp_path)
    saved = paths.outputs_path(tmp_path, ENV)
    data = json.loads(saved.read_text())
    del data["pools"]["cpu"]["nodes"][0]["instanceId"]
    saved.write_text(json.dumps(data))
    with pytest.raises(RingfleetError) as refused:
        for_spec(spec).host_key_voucher()
    assert refused.value.line() == (
        "ringfleet: error: rf-dev-cpu-1: has no instanceId in the stack outputs; run "
        "`ringfleet up aws-dev` again"
    )


def test_run_before_up_is_one_line(tmp_path):
    for needed in ("jobs", "templates"):
        shutil.copytree(ROOT / needed, tmp_path / needed)
    project(tmp_path, outputs=False, key=False)
    proc = run_cli("run", ENV, str(tmp_path / "jobs" / "digits.yaml"), root=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "ringfleet: error: .ringfleet/aws-dev/ssh/stack_key: no stack key: `ringfleet up "
        "aws-dev` writes it (docs/pulumi.md says how to write it from the stack by hand)",
    )
