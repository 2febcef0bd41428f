"""The nodes of an Ansible inventory as testinfra hosts, for the verify suite and `ringfleet lock`.

Any inventory works: the one `ringfleet up` renders for the local cluster, a
static on-prem one, or a cloud one. Node software facts are read over the same
connections in both places, so the suite and the lock never disagree on how a
node was reached.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import testinfra
import testinfra.host

from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.paths import NODE_VENV

# Group every ringfleet node is in, and the host variable naming its pool (ringfleet.inventory).
ALL_NODES_GROUP = "ringfleet_nodes"
NVIDIA_GROUP = "nvidia_gpu"
POOL_VAR = "ringfleet_pool"
DOCKER_API = "community.docker.docker_api"
# The roles' venv when the inventory does not move it (ringfleet_venv).
DEFAULT_VENV = NODE_VENV


@dataclass(frozen=True)
class Inventory:
    """What `ansible-inventory --list` says: every host's merged variables and the groups."""

    path: Path
    hostvars: dict[str, dict[str, Any]]
    groups: dict[str, list[str]]

    def hosts(self, group: str = ALL_NODES_GROUP) -> list[str]:
        return sorted(self.groups.get(group, []))

    def pool_of(self, host: str) -> str:
        return str(self.hostvars[host].get(POOL_VAR, "?"))

    def pools(self) -> dict[str, list[str]]:
        """Pool name -> its nodes, both sorted; pools without nodes are not listed."""
        out: dict[str, list[str]] = {}
        for host in self.hosts():
            out.setdefault(self.pool_of(host), []).append(host)
        return dict(sorted(out.items()))

    def var(self, host: str, name: str, default: Any = None) -> Any:
        return self.hostvars[host].get(name, default)


def ansible_bin(name: str) -> str:
    """An Ansible executable: beside this Python first (the venv), then on PATH."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else (shutil.which(name) or name)


def read_inventory(path: Path, display: str | None = None) -> Inventory:
    """Parse an inventory with ansible-inventory, so every inventory format Ansible reads works."""
    display = display or str(path)
    if not path.is_file():
        raise RingfleetError(display, "no such inventory file", str(path))
    env = dict(os.environ, ANSIBLE_VERBOSITY="0")
    proc = subprocess.run(
        [ansible_bin("ansible-inventory"), "--list", "-i", str(path)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["ansible-inventory failed"])[-1]
        raise RingfleetError(display, "ansible-inventory cannot read it", last)
    data = json.loads(proc.stdout)
    if "[WARNING]: Unable to parse" in proc.stderr:
        raise RingfleetError(display, "ansible-inventory cannot parse it as an inventory")
    groups = {name: sorted(_members(data, name)) for name in data if name != "_meta"}
    hostvars = data.get("_meta", {}).get("hostvars", {})
    inv = Inventory(path, {h: hostvars.get(h, {}) for h in groups.get("all", [])}, groups)
    if not inv.hosts():
        raise RingfleetError(display, f"no hosts in group {ALL_NODES_GROUP}; is the cluster up?")
    return inv


def _members(data: dict[str, Any], group: str, seen: frozenset[str] = frozenset()) -> set[str]:
    entry = data.get(group, {})
    hosts = set(entry.get("hosts", []))
    for child in entry.get("children", []):
        if child not in seen:
            hosts |= _members(data, child, seen | {group})
    return hosts


def testinfra_host(inventory: Inventory, name: str) -> testinfra.host.Host:
    """The testinfra host for one inventory node.

    testinfra's ansible backend connects natively only for the ssh, paramiko,
    local, docker (CLI plugin) and lxc connections; for anything else, including
    the community.docker.docker_api connection the local cluster's inventory uses,
    it falls back to running the whole `ansible` CLI with the shell module once per
    command (force_ansible). That measured 1.8 s a command here, against well under
    0.1 s for `docker exec`, and the suite runs a few hundred commands. So docker_api
    nodes are mapped to testinfra's docker backend: the same engine, the same
    container (ansible_host), the same user (ansible_user), through `docker exec`.
    Only when that mapping could be wrong do we keep Ansible: no docker CLI here, or
    the node sets docker_api options the CLI would not see (ansible_docker_host for a
    remote engine, TLS, extra env); then force_ansible=True, slow but exact.
    """
    hv = inventory.hostvars[name]
    connection = hv.get("ansible_connection", "ssh")
    if connection == DOCKER_API:
        engine_options = [k for k in hv if k.startswith("ansible_docker_")]
        if shutil.which("docker") and not engine_options:
            container = hv.get("ansible_host", name)
            user = hv.get("ansible_user") or hv.get("ansible_docker_user")
            spec = f"docker://{user}@{container}" if user else f"docker://{container}"
            return testinfra.get_host(spec)
        return testinfra.get_host(
            f"ansible://{name}?force_ansible=True", ansible_inventory=str(inventory.path)
        )
    return testinfra.get_host(f"ansible://{name}", ansible_inventory=str(inventory.path))


@dataclass
class NodeShell:
    """One node: run commands as root or as another user, whoever the connection logs in as."""

    name: str
    host: testinfra.host.Host
    hostvars: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def login_user(self) -> str:
        """Who commands run as (after the backend's own sudo, if it uses one)."""
        return self.host.run("id -un").stdout.strip()

    def command(self, command: str, user: str | None = None) -> str:
        """`command` wrapped to run as `user` (None: root)."""
        want = user or "root"
        if self.login_user == want:
            return command
        if self.login_user == "root":
            # runuser sets HOME and the user's groups and needs no sudo on the node.
            return f"runuser -u {shlex.quote(want)} -- /bin/sh -c {shlex.quote(command)}"
        target = "" if want == "root" else f"-u {shlex.quote(want)} "
        return f"sudo -n {target}/bin/sh -c {shlex.quote(command)}"

    def run(self, command: str, user: str | None = None):
        return self.host.run(self.command(command, user))

    def output(self, command: str, user: str | None = None) -> str:
        """stdout of a command that must succeed; a failure names the node and the command."""
        result = self.run(command, user)
        if result.rc != 0:
            raise RuntimeFailure(
                self.name,
                f"command failed ({result.rc}): {command[:80]}",
                (result.stderr or result.stdout).strip()[-200:],
            )
        return result.stdout

    @property
    def venv(self) -> str:
        return str(self.hostvars.get("ringfleet_venv") or DEFAULT_VENV)


def node_shells(inventory: Inventory, names: list[str] | None = None) -> dict[str, NodeShell]:
    return {
        n: NodeShell(n, testinfra_host(inventory, n), inventory.hostvars[n])
        for n in (names if names is not None else inventory.hosts())
    }
