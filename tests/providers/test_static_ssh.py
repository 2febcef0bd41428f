"""Static envs (hosts the user owns): the spec's ssh block, shared storage and interface,
and how the provider turns them into SshNodes and inventory connection settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ringfleet import paths
from ringfleet.converge.inventory import render_inventory
from ringfleet.errors import RingfleetError
from ringfleet.nodes.ssh import SshNode
from ringfleet.providers import for_spec
from ringfleet.providers.outputs import static_outputs
from ringfleet.spec import load_spec_file
from tests.conftest import ROOT, run_cli


def write_spec(root: Path, env: str, ssh: dict | None = None, **cluster) -> Path:
    """A static spec of two hosts in `root`, with `cluster` keys replacing the defaults."""
    import yaml

    spec = {
        "name": "rf-bm",
        "provider": "static",
        "pools": [
            {
                "name": "cpu",
                "cpus": 2,
                "hosts": [
                    {"name": "h1", "address": "10.226.0.2"},
                    {"name": "h2", "address": "h2.example.org"},
                ],
            }
        ],
        "storage": {"kind": "existing", "mount": "/shared"},
        "ssh": {"admin_user": "ops", **(ssh or {})},
        "network": {"subnet": "10.226.0.0/24", "admin_cidr": "10.226.0.0/24"},
        **cluster,
    }
    path = root / f"Pulumi.{env}.yaml"
    path.write_text(yaml.safe_dump({"config": {"ringfleet:cluster": spec}}))
    return path


@pytest.fixture
def key(tmp_path: Path) -> Path:
    path = tmp_path / "keys" / "id_ed25519"
    path.parent.mkdir()
    path.write_text("not used: no connection is made\n")
    path.chmod(0o600)
    return path


def load(root: Path, env: str = "bm", **kw):
    return load_spec_file(write_spec(root, env, **kw), env)


@pytest.mark.parametrize("address", ["10.0.0.1", "2001:db8::1", "node-1.example.org", "n1"])
def test_host_address_accepted(tmp_path: Path, address: str) -> None:
    path = write_spec(tmp_path, "bm")
    path.write_text(path.read_text().replace("10.226.0.2", f"'{address}'"))
    assert load_spec_file(path, "bm").nodes[0].address == address


def test_existing_storage_needs_no_server(tmp_path: Path) -> None:
    assert load(tmp_path).cluster.storage.server is None


def test_static_interface_unset_means_by_subnet(tmp_path: Path) -> None:
    spec = load(tmp_path)
    assert (spec.interface, spec.mpi_include) == (None, "10.226.0.0/24")


def test_docker_interface_default_stays_eth0() -> None:
    from ringfleet.spec import load_spec

    assert load_spec("local", ROOT).interface == "eth0"


def test_inventory_names_the_subnet_when_no_interface(tmp_path: Path) -> None:
    spec = load(tmp_path)
    all_vars = render_inventory(static_outputs(spec))["all"]["vars"]
    assert (all_vars["ringfleet_interface"], all_vars["ringfleet_subnet"]) == ("", "10.226.0.0/24")


def test_inventory_without_subnet_when_interface_named(tmp_path: Path) -> None:
    spec = load(tmp_path, network={"subnet": "10.226.0.0/24", "interface": "eno1"})
    assert "ringfleet_subnet" not in render_inventory(static_outputs(spec))["all"]["vars"]


def test_known_hosts_defaults_to_the_inventory_dir(tmp_path: Path, key: Path) -> None:
    spec = load(tmp_path, ssh={"key_file": str(key)})
    node = for_spec(spec).nodes()["h1"]
    assert node.known_hosts == paths.known_hosts_path(tmp_path.resolve(), "bm")


def test_nodes_are_ssh_nodes_built_from_the_spec(tmp_path: Path, key: Path) -> None:
    spec = load(tmp_path, ssh={"key_file": str(key), "port": 2222, "proxy_jump": "jump@bastion"})
    node = for_spec(spec).nodes()["h2"]
    assert isinstance(node, SshNode) and (
        node.address,
        node.port,
        node.admin_user,
        node.key_file,
        node.proxy_jump,
    ) == ("h2.example.org", 2222, "ops", key, "jump@bastion")


def test_key_file_relative_to_the_project(tmp_path: Path, key: Path) -> None:
    spec = load(tmp_path, ssh={"key_file": "keys/id_ed25519"})
    assert for_spec(spec).nodes()["h1"].key_file == tmp_path.resolve() / "keys" / "id_ed25519"


def test_missing_key_is_one_line(tmp_path: Path) -> None:
    spec = load(tmp_path, ssh={"key_file": str(tmp_path / "nope")})
    with pytest.raises(RingfleetError) as info:
        for_spec(spec).nodes()
    assert info.value.line() == (
        f"ringfleet: error: Pulumi.bm.yaml: cluster.ssh.key_file: no private key at "
        f"{tmp_path / 'nope'} (got '{tmp_path / 'nope'}')"
    )


def test_key_readable_by_others_is_refused(tmp_path: Path, key: Path) -> None:
    key.chmod(0o644)
    spec = load(tmp_path, ssh={"key_file": str(key)})
    with pytest.raises(RingfleetError, match=r"cluster\.ssh\.key_file: private key is open"):
        for_spec(spec).nodes()


def test_non_root_admin_becomes_root_with_sudo(tmp_path: Path, key: Path) -> None:
    spec = load(tmp_path, ssh={"key_file": str(key)})
    hv = for_spec(spec).nodes()["h1"].ansible_host_vars()
    assert (hv["ansible_user"], hv["ansible_become"]) == ("ops", True)


def test_inventory_carries_the_nodes_connection(tmp_path: Path, key: Path) -> None:
    spec = load(tmp_path, ssh={"key_file": str(key)})
    nodes = for_spec(spec).nodes()
    connection = {name: node.ansible_host_vars() for name, node in nodes.items()}
    inv = render_inventory(static_outputs(spec), connection=connection)
    h1 = inv["all"]["children"]["pool_cpu"]["hosts"]["h1"]
    assert "StrictHostKeyChecking=yes" in h1["ansible_ssh_common_args"]


def test_up_limit_of_an_unknown_host_is_one_line(tmp_path: Path) -> None:
    write_spec(tmp_path, "bm")
    proc = run_cli("up", "bm", "--limit", "h9", root=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "ringfleet: error: --limit: no node of that name in Pulumi.bm.yaml (h1, h2) (got 'h9')",
    )


@pytest.mark.parametrize("flag", [["--check"], ["--limit", "rf-local-cpu-1"]])
def test_docker_up_refuses_check_and_limit(tmp_path: Path, flag: list[str]) -> None:
    """Refused before the Docker engine is asked anything."""
    shutil.copy(ROOT / "Pulumi.local.yaml", tmp_path / "Pulumi.local.yaml")
    proc = run_cli("up", "local", *flag, root=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "ringfleet: error: --check/--limit: for hosts ringfleet does not make (static, aws), "
        "not provider docker (got 'local')",
    )


def test_check_cannot_go_with_no_converge(tmp_path: Path) -> None:
    write_spec(tmp_path, "bm")
    proc = run_cli("up", "bm", "--check", "--no-converge", root=tmp_path)
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "ringfleet: error: --check: checks a converge; it cannot go with --no-converge",
    )
