"""The roles' bare metal parts: a root admin keeps its login, a site's own shared file
system is checked, and Open MPI finds the cluster interface by subnet.

Templates are rendered on the controller (no Docker). The checks that read a host
run Ansible over SSH against the simulated bare hosts, as the admin with sudo,
host keys checked against a known_hosts file: the way a static env converges.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ringfleet.nodes.ssh import SshNode
from tests.baremetal.conftest import CLUSTER_SUBNET, PREFIX, SHARED_MOUNT
from tests.conftest import ROOT

BIN = Path(sys.executable).parent
DATA = Path(__file__).parent / "data"
APPLY_ROLE = DATA / "apply_role.yml"
JOB_USER = "rf"
# A subnet none of the bare hosts has an address in.
FOREIGN_SUBNET = "10.228.0.0/24"


def ansible_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    return env


def playbook(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ansible-playbook"), *args],
        cwd=ROOT,
        env=ansible_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def shown(proc: subprocess.CompletedProcess) -> str:
    return f"exit {proc.returncode}\n{proc.stdout[-5000:]}\n{proc.stderr[-2000:]}"


def render(tmp_path: Path, role: str, template: str, **extra: str) -> str:
    dest = tmp_path / "rendered"
    proc = playbook(
        str(DATA / "render_template.yml"),
        "-e",
        json.dumps(
            {"rf_test_role": role, "rf_test_template": template, "rf_test_dest": str(dest), **extra}
        ),
    )
    assert proc.returncode == 0, shown(proc)
    return dest.read_text()


# --- rendered on the controller ---------------------------------------------------


@pytest.mark.parametrize(
    ("admin", "permit"),
    [("root", "prohibit-password"), ("ops", "no"), ("", "no")],
)
def test_sshd_root_login_follows_the_admin_user(tmp_path, admin, permit):
    text = render(tmp_path, "ssh_mesh", "sshd_config.conf.j2", ringfleet_admin_user=admin)
    assert re.findall(r"^PermitRootLogin (\S+)$", text, re.M) == [permit]


@pytest.mark.parametrize(
    ("interface", "include"),
    [("eth1", "eth1"), ("", CLUSTER_SUBNET)],
)
def test_mpi_uses_the_interface_or_else_the_subnet(tmp_path, interface, include):
    text = render(
        tmp_path,
        "openmpi",
        "openmpi-mca-params.conf.j2",
        ringfleet_interface=interface,
        ringfleet_subnet=CLUSTER_SUBNET,
    )
    found = re.findall(r"^(btl|oob)_tcp_if_include = (\S+)$", text, re.M)
    assert found == [("btl", include), ("oob", include)]


# --- over SSH on the simulated bare metal -----------------------------------------


@pytest.fixture(scope="module")
def trusted(bare_metal, tmp_path_factory):
    """A known_hosts file the tests add each host they use to."""
    return tmp_path_factory.mktemp("bm-roles") / "known_hosts"


def ssh_node(host, admin_key, known_hosts: Path) -> SshNode:
    return SshNode(
        host.name,
        host.address,
        port=host.port,
        admin_user=host.admin,
        key_file=admin_key.private,
        known_hosts=known_hosts,
    )


def site_host(bare_metal, admin_key, trusted, role: str, **kw):
    """A bare host as the site prepared it: trusted, with the job user (the common role's)."""
    host = bare_metal.host(role, **kw)
    with trusted.open("a") as fh:
        fh.write(bare_metal.known_hosts_lines(host))
    node = ssh_node(host, admin_key, trusted)
    node.run(["useradd", "--create-home", "--uid", "2001", JOB_USER])
    return host, node


def inventory(tmp_path: Path, hosts, admin_key, known_hosts: Path) -> Path:
    """Each host with the connection variables its SshNode gives Ansible."""
    nodes = {h.name: ssh_node(h, admin_key, known_hosts).ansible_host_vars() for h in hosts}
    doc = {
        "all": {
            "vars": {
                "ansible_python_interpreter": "/usr/bin/python3",
                "ringfleet_ssh_user": JOB_USER,
                "ringfleet_shared_mount": SHARED_MOUNT,
            },
            "children": {"ringfleet_nodes": {"hosts": nodes}},
        }
    }
    path = tmp_path / "hosts.json"
    path.write_text(json.dumps(doc))
    return path


def apply(tmp_path, hosts, admin_key, known_hosts, role: str, *args: str, **extra):
    inv = inventory(tmp_path, hosts, admin_key, known_hosts)
    return playbook(
        "-i",
        str(inv),
        str(APPLY_ROLE),
        "-e",
        json.dumps({"rf_test_role": role, **extra}),
        *args,
    )


@pytest.fixture(scope="module")
def site_pair(bare_metal, admin_key, trusted):
    """Two hosts sharing one file system the site made writable for the job user."""
    first, node = site_host(bare_metal, admin_key, trusted, "site1")
    second, _ = site_host(bare_metal, admin_key, trusted, "site2", joined_second=True)
    node.run(["chown", f"{JOB_USER}:{JOB_USER}", SHARED_MOUNT])
    return first, second, node


@pytest.fixture(scope="module")
def existing_on_pair(site_pair, admin_key, trusted, tmp_path_factory):
    first, second, _ = site_pair
    return apply(
        tmp_path_factory.mktemp("existing"),
        [first, second],
        admin_key,
        trusted,
        "nfs_client",
        ringfleet_storage_kind="existing",
    )


@pytest.mark.docker
def test_existing_storage_passes_on_hosts_sharing_one_writable_fs(existing_on_pair):
    assert existing_on_pair.returncode == 0, shown(existing_on_pair)


@pytest.mark.docker
def test_existing_storage_changes_nothing(existing_on_pair, site_pair):
    recap = re.findall(r"^(\S+)\s+: ok=\d+\s+changed=(\d+)", existing_on_pair.stdout, re.M)
    assert recap == [(site_pair[0].name, "0"), (site_pair[1].name, "0")], shown(existing_on_pair)


@pytest.mark.docker
def test_existing_storage_leaves_no_probe_file(existing_on_pair, site_pair):
    _, _, node = site_pair
    assert node.run(["ls", "-A", SHARED_MOUNT])[1].split() == []


@pytest.mark.docker
def test_existing_storage_not_mounted_fails_naming_the_host(
    bare_metal, admin_key, trusted, site_pair, tmp_path
):
    host, _ = site_host(bare_metal, admin_key, trusted, "nomount", volume=None)
    proc = apply(
        tmp_path, [site_pair[0], host], admin_key, trusted, "nfs_client",
        ringfleet_storage_kind="existing",
    )  # fmt: skip
    assert f"nothing is mounted at {SHARED_MOUNT} on {host.name}" in proc.stdout, shown(proc)


@pytest.mark.docker
def test_existing_storage_of_another_fs_fails_naming_the_host(
    bare_metal, admin_key, trusted, site_pair, tmp_path
):
    host, node = site_host(bare_metal, admin_key, trusted, "otherfs", volume=f"{PREFIX}otherfs")
    node.run(["chown", f"{JOB_USER}:{JOB_USER}", SHARED_MOUNT])
    proc = apply(
        tmp_path, [site_pair[0], host], admin_key, trusted, "nfs_client",
        ringfleet_storage_kind="existing",
    )  # fmt: skip
    said = f"{SHARED_MOUNT} on {host.name} is not the file system the other hosts have there"
    assert said in proc.stdout, shown(proc)


@pytest.mark.docker
def test_existing_storage_not_writable_by_job_user_fails_naming_the_host(
    bare_metal, admin_key, trusted, tmp_path
):
    host, _ = site_host(bare_metal, admin_key, trusted, "rofs", volume=f"{PREFIX}rofs")
    proc = apply(
        tmp_path, [host], admin_key, trusted, "nfs_client", ringfleet_storage_kind="existing"
    )
    assert f"{JOB_USER} may not write to {SHARED_MOUNT} on {host.name}" in proc.stdout, shown(proc)


@pytest.fixture(scope="module")
def with_iproute(site_pair, bare_metal, admin_key, trusted):
    """iproute2 on the pair, as the common role installs it before openmpi runs."""
    first, second, _ = site_pair
    for host in (first, second):
        node = ssh_node(host, admin_key, trusted)
        node.run(["sh", "-c", "apt-get update -qq && apt-get install -y -qq iproute2 >/dev/null"])
    return first, second


@pytest.mark.docker
def test_subnet_check_passes_when_every_host_has_an_address_there(
    with_iproute, admin_key, trusted, tmp_path
):
    proc = apply(
        tmp_path, list(with_iproute), admin_key, trusted, "openmpi", "--tags", "ringfleet_node",
        ringfleet_interface="", ringfleet_subnet=CLUSTER_SUBNET,
    )  # fmt: skip
    assert proc.returncode == 0, shown(proc)


@pytest.mark.docker
def test_host_without_an_address_in_the_subnet_fails_naming_it(
    with_iproute, admin_key, trusted, tmp_path
):
    first = with_iproute[0]
    proc = apply(
        tmp_path, [first], admin_key, trusted, "openmpi", "--tags", "ringfleet_node",
        ringfleet_interface="", ringfleet_subnet=FOREIGN_SUBNET,
    )  # fmt: skip
    assert f"{first.name} has no address in {FOREIGN_SUBNET}" in proc.stdout, shown(proc)
