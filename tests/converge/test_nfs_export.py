"""The nfs_server role run for real on throwaway containers: rendered exports, Ganesha serving.

playbooks/nfs_server.yml (the play site.yml imports) converges two server
containers on a Docker network of their own, one per implementation. Two more
containers stand for a cluster node and a host outside the cluster; they reach
Ganesha with libnfs's userspace client, since this kernel has neither an NFS
server nor an NFS client (nothing is mounted).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import pytest
import yaml

from ringfleet.converge.ansible import ansible_env
from ringfleet.converge.inventory import ALL_NODES_GROUP, NFS_SERVER_GROUP
from ringfleet.providers.docker import DEFAULT_DOCKER_IMAGE, DOCKER_CONNECTION
from tests.conftest import ROOT

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).parent
PLAYBOOK = ROOT / "playbooks" / "nfs_server.yml"

PREFIX = "rf-nfstest-"
NETWORK = PREFIX + "net"
SUBNET = "10.219.0.0/24"
KERNEL = PREFIX + "kernel"
GANESHA = PREFIX + "ganesha"
# A cluster node (in ringfleet_nodes, so Ganesha lets it in) and a host on the same
# network that is no cluster node.
NODE = PREFIX + "node"
OUTSIDER = PREFIX + "outsider"
ADDRESSES = {
    KERNEL: "10.219.0.10",
    GANESHA: "10.219.0.11",
    NODE: "10.219.0.21",
    OUTSIDER: "10.219.0.22",
}
# The cluster's nodes as the inventory lists them. The second is only an inventory
# entry (nothing connects to it): with two nodes the rendered client list is a real list.
NODE_ADDRESSES = {NODE: ADDRESSES[NODE], PREFIX + "node-2": "10.219.0.23"}

EXPORT = "/exports/shared"
EXPORT_OWNER = "rf"
# The kernel server gets explicit clients of each kind exports(5) accepts, and
# options other than the defaults, so the test sees the inventory's values arrive.
KERNEL_CLIENTS = ("10.219.0.0/24", "10.220.0.7", "login.example.org")
KERNEL_OPTIONS = "rw,async,no_subtree_check,no_root_squash"
GANESHA_EXPORT_ID = 7
GANESHA_CONF = "/etc/ganesha/ganesha.conf"

# Ganesha's VFS backend works on file handles: name_to_handle_at, which Docker's default
# seccomp profile allows only to containers with CAP_SYS_ADMIN (EPERM otherwise), and
# open_by_handle_at, which the kernel allows only with CAP_DAC_READ_SEARCH. Without
# them Ganesha logs "Could not get handle for path ... Operation not permitted" and
# exports nothing (measured on Docker's default profile).
GANESHA_CAPS = ["DAC_READ_SEARCH", "SYS_ADMIN"]
# overlayfs, the container's root, cannot make file handles at all (EOPNOTSUPP), so the
# export is a tmpfs here, as it is a volume or a disk on a real node.
GANESHA_TMPFS = {EXPORT: "mode=0755"}

SERVED_FILE = "hello.txt"
SERVED_TEXT = "served by nfs-ganesha from the nfs_server role\n"
# A fresh Ganesha refuses OPEN with NFS4ERR_GRACE for its whole 90 s grace period,
# even with no client to reclaim anything (measured). The test starts it from a file
# that includes the role's configuration unchanged and only turns the grace period off.
GANESHA_TEST_CONF = "/tmp/rf-nfstest-ganesha.conf"
GANESHA_TEST_CONF_TEXT = f'%include "{GANESHA_CONF}"\nNFSV4 {{\n    Graceless = true;\n}}\n'
GANESHA_LOG = "/tmp/rf-nfstest-ganesha.log"
# What Ganesha logs when the VFS backend cannot open the export (see GANESHA_CAPS).
GANESHA_NO_HANDLE = "Could not get handle for path"
# The role configures NFSv4 only (no mountd, no NFSv3); libnfs speaks v3 unless told.
NFS_URL = f"nfs://{ADDRESSES[GANESHA]}{EXPORT}{{file}}?version=4"


class Exec(NamedTuple):
    code: int
    out: str
    err: str


def _exec(container, *argv: str) -> Exec:
    code, (out, err) = container.exec_run(list(argv), demux=True)
    return Exec(code, (out or b"").decode(), (err or b"").decode())


def _check(container, *argv: str) -> str:
    result = _exec(container, *argv)
    assert result.code == 0, f"{container.name}: {shlex.join(argv)}: {result}"
    return result.out


def _sh(container, script: str) -> str:
    return _check(container, "/bin/sh", "-c", script)


def _remove(client, names: list[str]) -> None:
    import docker.errors

    for name in names:
        try:
            client.containers.get(name).remove(force=True)
        except docker.errors.NotFound:
            pass
    try:
        client.networks.get(NETWORK).remove()
    except docker.errors.NotFound:
        pass


@pytest.fixture(scope="module")
def containers():
    """The four containers on their own network; removed with the network afterwards."""
    import docker

    from ringfleet.providers.docker.baseimage import ensure_base_image

    client = docker.from_env()
    ensure_base_image(client, DEFAULT_DOCKER_IMAGE)
    # Left over by an interrupted run, they would block the names and the subnet.
    _remove(client, list(ADDRESSES))
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=SUBNET)])
    client.networks.create(NETWORK, driver="bridge", ipam=ipam)
    extra = {GANESHA: {"cap_add": GANESHA_CAPS, "tmpfs": GANESHA_TMPFS}}
    try:
        started = {
            name: client.containers.run(
                DEFAULT_DOCKER_IMAGE,
                command=["sleep", "infinity"],
                name=name,
                hostname=name,
                detach=True,
                init=True,
                network=NETWORK,
                networking_config={
                    NETWORK: client.api.create_endpoint_config(ipv4_address=address)
                },
                **extra.get(name, {}),
            )
            for name, address in ADDRESSES.items()
        }
        yield started
    finally:
        _remove(client, list(ADDRESSES))


def _inventory() -> dict:
    def docker_host(name: str) -> dict:
        return {
            "ansible_connection": DOCKER_CONNECTION,
            "ansible_host": name,
            "ansible_user": "root",
        }

    return {
        "all": {
            "vars": {
                "ringfleet_storage_export": EXPORT,
                "ringfleet_ssh_user": EXPORT_OWNER,
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": {
                NFS_SERVER_GROUP: {
                    "hosts": {
                        KERNEL: {
                            **docker_host(KERNEL),
                            "nfs_server_implementation": "kernel",
                            "nfs_server_export_clients": list(KERNEL_CLIENTS),
                            "nfs_server_export_options": KERNEL_OPTIONS,
                        },
                        GANESHA: {
                            **docker_host(GANESHA),
                            "nfs_server_implementation": "ganesha",
                            "nfs_server_ganesha_export_id": GANESHA_EXPORT_ID,
                        },
                    }
                },
                ALL_NODES_GROUP: {
                    "hosts": {
                        name: {"ringfleet_private_ip": address}
                        for name, address in NODE_ADDRESSES.items()
                    }
                },
            },
        }
    }


def _install_nfs_client(container) -> str:
    return _sh(
        container,
        "apt-get update -qq && DEBIAN_FRONTEND=noninteractive"
        " apt-get install -y -qq --no-install-recommends libnfs-utils",
    )


@pytest.fixture(scope="module")
def converged(containers, tmp_path_factory) -> subprocess.CompletedProcess:
    """Both servers converged by playbooks/nfs_server.yml; the clients have libnfs meanwhile."""
    for name in (KERNEL, GANESHA):
        # The common role creates the job user on a real node; the export belongs to it.
        _check(containers[name], "useradd", "--user-group", EXPORT_OWNER)
    inventory = tmp_path_factory.mktemp("nfs-export") / "hosts.yml"
    inventory.write_text(yaml.safe_dump(_inventory(), sort_keys=False), encoding="utf-8")
    with ThreadPoolExecutor(max_workers=2) as pool:
        clients = [pool.submit(_install_nfs_client, containers[n]) for n in (NODE, OUTSIDER)]
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOK)],
            cwd=ROOT,
            env={**os.environ, **ansible_env(ROOT)},
            capture_output=True,
            text=True,
            timeout=900,
        )
        for installed in clients:
            installed.result()
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    return proc


# --- what the role rendered ---------------------------------------------------


def parse_exports(text: str) -> dict[str, dict[str, str]]:
    """/etc/exports as {path: {client: options}}."""
    exports: dict[str, dict[str, str]] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        path, *entries = line.split()
        exports[path] = dict(re.fullmatch(r"([^(]+)\((.*)\)", e).groups() for e in entries)
    return exports


def parse_ganesha(text: str) -> dict:
    """A Ganesha configuration as nested dicts: blocks map to a list of dicts, settings to text."""
    tokens = re.findall(r'"[^"]*"|[{};=]|[^\s{};=]+', re.sub(r"#.*", "", text))

    def block(i: int) -> tuple[dict, int]:
        found: dict = {}
        while i < len(tokens) and tokens[i] != "}":
            name, sign = tokens[i], tokens[i + 1]
            if sign == "{":
                inner, i = block(i + 2)
                found.setdefault(name, []).append(inner)
                i += 1
            else:
                end = tokens.index(";", i)
                found[name] = " ".join(t.strip('"') for t in tokens[i + 2 : end])
                i = end + 1
        return found, i

    return block(0)[0]


def _setting(conf: dict, *path: str):
    """The value at `path` (block names, then a setting); None when any part is missing."""
    *blocks, name = path
    for block in blocks:
        found = conf.get(block) or [{}]
        conf = found[0]
    return conf.get(name)


@pytest.fixture(scope="module")
def exports(converged, containers) -> dict[str, dict[str, str]]:
    return parse_exports(_check(containers[KERNEL], "cat", "/etc/exports"))


@pytest.fixture(scope="module")
def ganesha_conf(converged, containers) -> dict:
    return parse_ganesha(_check(containers[GANESHA], "cat", GANESHA_CONF))


@pytest.mark.parametrize("server", [KERNEL, GANESHA])
def test_export_directory_belongs_to_the_job_user(converged, containers, server):
    stat = _check(containers[server], "stat", "--format=%U:%G %a", EXPORT).strip()
    assert stat == f"{EXPORT_OWNER}:{EXPORT_OWNER} 775"


def test_kernel_exports_only_the_export_path(exports):
    assert list(exports) == [EXPORT]


@pytest.mark.parametrize("client", KERNEL_CLIENTS)
def test_kernel_export_admits_client_with_the_options(exports, client):
    assert exports.get(EXPORT, {}).get(client) == KERNEL_OPTIONS, exports


def test_kernel_export_admits_no_other_client(exports):
    assert sorted(exports.get(EXPORT, {})) == sorted(KERNEL_CLIENTS)


def test_ganesha_config_has_one_export(ganesha_conf):
    assert len(ganesha_conf.get("EXPORT", [])) == 1


GANESHA_SETTINGS = [
    (("NFS_CORE_PARAM", "Protocols"), "4"),
    (("EXPORT", "Export_Id"), str(GANESHA_EXPORT_ID)),
    (("EXPORT", "Path"), EXPORT),
    (("EXPORT", "Pseudo"), EXPORT),
    # Nobody gets in except through a CLIENT block.
    (("EXPORT", "Access_Type"), "None"),
    (("EXPORT", "Squash"), "Root_Squash"),
    (("EXPORT", "FSAL", "Name"), "VFS"),
    (("EXPORT", "CLIENT", "Access_Type"), "RW"),
]


@pytest.mark.parametrize(("path", "expected"), GANESHA_SETTINGS, ids=lambda v: ".".join(v))
def test_ganesha_setting(ganesha_conf, path, expected):
    assert _setting(ganesha_conf, *path) == expected, ganesha_conf


def _ganesha_clients(conf: dict) -> list[str]:
    value = _setting(conf, "EXPORT", "CLIENT", "Clients") or ""
    return [c.strip() for c in value.split(",") if c.strip()]


@pytest.mark.parametrize("address", NODE_ADDRESSES.values())
def test_ganesha_admits_cluster_node(ganesha_conf, address):
    assert address in _ganesha_clients(ganesha_conf)


def test_ganesha_admits_no_other_client(ganesha_conf):
    assert sorted(_ganesha_clients(ganesha_conf)) == sorted(NODE_ADDRESSES.values())


# --- what Ganesha serves ------------------------------------------------------


@pytest.fixture(scope="module")
def ganesha(converged, containers):
    """Ganesha started on the role's configuration, serving a file written on the server."""
    server = containers[GANESHA]
    _sh(server, f"printf %s {shlex.quote(SERVED_TEXT)} > {EXPORT}/{SERVED_FILE}")
    _sh(server, f"printf %s {shlex.quote(GANESHA_TEST_CONF_TEXT)} > {GANESHA_TEST_CONF}")
    # What nfs-ganesha.service gets from systemd: its runtime directory and rpcbind
    # (Ganesha exits with status 2 when it cannot register with rpcbind).
    _check(server, "mkdir", "-p", "/run/ganesha")
    _check(server, "rpcbind")
    _check(server, "ganesha.nfsd", "-L", GANESHA_LOG, "-f", GANESHA_TEST_CONF, "-N", "NIV_EVENT")
    deadline = time.monotonic() + 30
    log = ""
    while "NFS SERVER INITIALIZED" not in log and time.monotonic() < deadline:
        time.sleep(0.5)
        log = _exec(server, "cat", GANESHA_LOG).out
    denied = [line for line in log.splitlines() if GANESHA_NO_HANDLE in line]
    if denied:
        pytest.skip(f"ganesha cannot open the export here: {denied[0].split('] ', 1)[-1]}")
    assert "NFS SERVER INITIALIZED" in log, log[-4000:]
    return server


def test_ganesha_lists_the_export_to_a_cluster_node(ganesha, containers):
    listing = _exec(containers[NODE], "nfs-ls", NFS_URL.format(file=""))
    names = [line.split()[-1] for line in listing.out.splitlines() if line.strip()]
    assert SERVED_FILE in names, listing


def test_ganesha_serves_the_file_to_a_cluster_node(ganesha, containers):
    read = _exec(containers[NODE], "nfs-cat", NFS_URL.format(file="/" + SERVED_FILE))
    assert read.out == SERVED_TEXT, read


def test_ganesha_hides_the_export_from_a_host_outside_the_cluster(ganesha, containers):
    # NFSv4 leaves an export out of the pseudo file system for a client it does not
    # admit, so the path does not exist for it.
    listing = _exec(containers[OUTSIDER], "nfs-ls", NFS_URL.format(file=""))
    assert (listing.code != 0, "NFS4ERR_NOENT" in listing.err) == (True, True), listing
