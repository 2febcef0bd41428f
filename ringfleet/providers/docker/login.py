"""The controller's root login on local nodes, so their converge goes over SSH.

Ansible through the Docker API costs about 2 s a task; over SSH with pipelining and
a persistent master connection it is a fraction of that. What SSH itself needs is
set up here over the Docker API, which works before sshd answers: the controller's
key in root's authorized_keys, accepted only from the controller's address on the
cluster's bridge (`from=`), so a node holding the key could not log in to a peer;
root logins by key only; sshd running. The nodes' host keys are read over Docker
too and become the controller's known_hosts for them, checked strictly (the
containers are ringfleet's own, so nothing is ever accepted on first use).
"""

from __future__ import annotations

import ipaddress
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import docker.errors

from ringfleet import paths
from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.files import write_atomic
from ringfleet.spec import ClusterSpec
from ringfleet.state import controller_keypair, ssh_dir

# How the converge reaches local nodes: "ssh" (default) or "docker" (the Docker API
# connection for everything, as before SSH logins existed; kept to measure both ways).
CONNECTION_ENV = "RINGFLEET_LOCAL_CONVERGE"
CONNECTION_SSH = "ssh"
CONNECTION_DOCKER = "docker"
# Read before the role's drop-in (ringfleet.conf) and first value wins in sshd: a node
# made from the image (baked with root logins off) admits the controller from its first
# converge on. The ssh_mesh role says the same once ringfleet_admin_user is root.
SSHD_LOGIN_DROPIN = "/etc/ssh/sshd_config.d/00-ringfleet-controller.conf"
SSHD_LOGIN_CONFIG = (
    "# Written by ringfleet: the controller converges this node over SSH as root,\n"
    "# by key only; its key is accepted only from the controller's address.\n"
    "PermitRootLogin prohibit-password\n"
)
ROOT_AUTHORIZED_KEYS = "/root/.ssh/authorized_keys"
# Seconds a node's sshd has to accept connections after a (re)start.
SSHD_WAIT_SECONDS = 10
# Ansible's default ssh_args less `-C`: compressing on a local bridge only costs the CPU
# the nodes share with the controller. The master stays as long as Ansible's default.
LOCAL_SSH_ARGS = "-o ControlMaster=auto -o ControlPersist=60s"
# The sentinel a node without an SSH server answers with; it stays on the Docker API.
NO_SSHD = "ringfleet: no sshd"

# One exec per node: ensure the login (changing nothing when it is in place), wait for
# the sshd the node's PID 1 starts (it makes the host keys first; making them here too
# could race it), reload sshd when the drop-in changed, then print the host keys.
# argv after the script: key line, its comment (to replace an older key of ours), the
# drop-in's path, sshd's port, seconds to wait.
_PREPARE = r"""
set -eu
key=$1 comment=$2 dropin=$3 port=$4 wait=$5
if [ ! -x /usr/sbin/sshd ]; then echo "ringfleet: no sshd"; exit 0; fi
answers() {
  i=0
  until bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; do
    i=$((i + 1)); [ "$i" -le $(($1 * 10)) ] || return 1
    sleep 0.1
  done
}
umask 077
mkdir -p /root/.ssh
keys=/root/.ssh/authorized_keys
if ! grep -qxF "$key" "$keys" 2>/dev/null; then
  { grep -vF " $comment" "$keys" 2>/dev/null || true; printf '%s\n' "$key"; } > "$keys.rf-new"
  mv -f "$keys.rf-new" "$keys"
fi
reload=
if [ "$(cat "$dropin" 2>/dev/null)" != "$(printf '%s' "$RF_DROPIN")" ]; then
  umask 022; printf '%s' "$RF_DROPIN" > "$dropin.rf-new"; mv -f "$dropin.rf-new" "$dropin"
  reload=1
fi
if ! answers "$wait"; then
  # Someone stopped it: start it as PID 1 would.
  ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1 || ssh-keygen -A >/dev/null
  mkdir -p /run/sshd && /usr/sbin/sshd
elif [ -n "$reload" ]; then
  # sshd re-executes itself on HUP; give it the moment that takes.
  kill -HUP "$(cat /run/sshd.pid)" && sleep 0.5
fi
answers "$wait" || { echo "sshd does not answer on port $port" >&2; exit 1; }
cat /etc/ssh/ssh_host_*_key.pub
"""


@dataclass(frozen=True)
class Login:
    """How the controller logs in to the local nodes of one env."""

    key_file: Path
    known_hosts: Path
    address: str
    """The controller's address on the cluster's bridge, the only one root keys work from."""
    host_keys: dict[str, str]
    """Per node that runs sshd, its public host keys; nodes without sshd are left out."""


def wanted() -> bool:
    """Whether local converges go over SSH (the default) or the Docker API only."""
    value = os.environ.get(CONNECTION_ENV, CONNECTION_SSH)
    if value not in (CONNECTION_SSH, CONNECTION_DOCKER):
        raise RingfleetError(CONNECTION_ENV, f"must be {CONNECTION_SSH} or {CONNECTION_DOCKER}",
                             value)  # fmt: skip
    return value == CONNECTION_SSH


def controller_address(client: docker.DockerClient, network: str) -> str:
    """The bridge's gateway: the address the controller's connections to nodes come from."""
    net = client.networks.get(network)
    config = (net.attrs.get("IPAM", {}).get("Config") or [{}])[0]
    if config.get("Gateway"):
        return str(config["Gateway"]).split("/")[0]
    # Docker gives a bridge network the first address of its subnet unless told otherwise.
    return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))


def prepare(
    root: Path, client: docker.DockerClient, spec: ClusterSpec, network: str, nodes: list[str]
) -> Login:
    """Give every node in `nodes` the controller's root login; write its known_hosts."""
    private, public = controller_keypair(root, spec.env)
    pub = public.read_text(encoding="utf-8").strip()
    comment = pub.split()[-1]
    address = controller_address(client, network)
    line = f'from="{address}" {pub}'
    argv = [
        "/bin/sh", "-c", _PREPARE, "sh", line, comment, SSHD_LOGIN_DROPIN,
        str(spec.cluster.ssh.port), str(SSHD_WAIT_SECONDS),
    ]  # fmt: skip

    def one(name: str) -> tuple[str, str]:
        try:
            code, (out, err) = client.containers.get(name).exec_run(
                argv, environment={"RF_DROPIN": SSHD_LOGIN_CONFIG}, demux=True
            )
        except docker.errors.APIError as exc:
            raise RuntimeFailure(name, "controller login over the Docker API", str(exc)) from None
        text = (out or b"").decode(errors="replace").strip()
        if code != 0:
            why = (err or out or b"").decode(errors="replace").strip()[-200:]
            raise RuntimeFailure(name, "controller login over the Docker API failed", why)
        return name, text

    # Each exec is a round trip to the engine; the nodes answer in parallel.
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:
        answers = dict(pool.map(one, nodes))
    host_keys = {n: text for n, text in answers.items() if text and text != NO_SSHD}
    ssh_dir(root, spec.env)
    known = paths.controller_known_hosts_path(root, spec.env)
    return Login(private, known, address, host_keys)


def write_known_hosts(login: Login, addresses: dict[str, str], port: int) -> None:
    """The nodes' host keys under the addresses Ansible dials (rewritten every `up`)."""
    lines = []
    for name, keys in sorted(login.host_keys.items()):
        if name not in addresses:
            continue
        host = addresses[name] if port == 22 else f"[{addresses[name]}]:{port}"
        for key in keys.splitlines():
            parts = key.split()
            if len(parts) >= 2:
                lines.append(f"{host} {parts[0]} {parts[1]}")
    text = "\n".join(lines) + "\n"
    try:
        current = login.known_hosts.read_text(encoding="utf-8")
    except OSError:
        current = None
    if current != text:
        write_atomic(login.known_hosts, text)


def connection_vars(
    root: Path, client: docker.DockerClient, spec: ClusterSpec, network: str,
    addresses: dict[str, str],
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per node, the inventory variables that make Ansible converge it over SSH as root.

    Nodes without sshd get none and stay on the provider's Docker API connection. With
    CONNECTION_ENV=docker the login is made all the same and only the connection
    differs, so the roles see the same inputs both ways (a fair comparison, changed=0).
    """
    from ringfleet.nodes.ssh import SshNode

    over_ssh = wanted()
    nodes = sorted(n for n in addresses)
    login = prepare(root, client, spec, network, nodes)
    port = spec.cluster.ssh.port
    write_known_hosts(login, addresses, port)
    out: dict[str, dict[str, Any]] = {}
    for name in nodes:
        if name not in login.host_keys:
            continue
        node = SshNode(
            name,
            addresses[name],
            admin_user="root",
            key_file=login.key_file,
            known_hosts=login.known_hosts,
            port=port,
            trust_command=f"ringfleet up {spec.env}",
        )
        reach = (
            {"ansible_connection": "ssh", "ansible_ssh_args": LOCAL_SSH_ARGS,
             **node.ansible_host_vars()}
            if over_ssh
            else {}
        )  # fmt: skip
        # ssh_mesh keeps root's key login (prohibit-password) for a root admin (#15).
        out[name] = {**reach, "ringfleet_admin_user": "root"}
    return out
