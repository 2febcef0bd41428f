"""How the controller reaches nodes it did not make itself (static, aws): SshNodes from the spec.

One place turns the spec's `ssh` block (admin_user, key_file, known_hosts, proxy_jump,
port) into `ringfleet.nodes.ssh.SshNode`s, so `run`, `runs`, `status`, `verify`, `lock`
and the converge (through `SshNode.ansible_host_vars()` in the inventory) all reach a
host with the same key, the same known_hosts file and the same strictness.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringfleet import paths
from ringfleet.errors import RingfleetError
from ringfleet.spec.checks import where

if TYPE_CHECKING:
    from ringfleet.nodes.ssh import SshNode
    from ringfleet.spec.resolved import ClusterSpec


@dataclass(frozen=True)
class Target:
    """One node as the controller dials it."""

    name: str
    address: str


def project_of(spec: ClusterSpec) -> Path:
    """The project the spec file lives in: relative ssh paths are relative to it."""
    return spec.path.resolve().parent


def known_hosts_file(spec: ClusterSpec) -> Path:
    """ssh.known_hosts (relative to the project), else inventories/<env>/known_hosts."""
    root = project_of(spec)
    named = spec.cluster.ssh.known_hosts
    if named is None:
        return paths.known_hosts_path(root, spec.env)
    return root / os.path.expanduser(named)


def checked_key(spec: ClusterSpec, key: Path, field: str) -> Path:
    """The private key, present and private to this user, else one line naming `field`."""
    at = where(spec.display, field)
    if not key.is_file():
        raise RingfleetError(at, f"no private key at {key}", str(key))
    from ringfleet.state import check_private_key

    return check_private_key(key, at)


def ssh_nodes(
    spec: ClusterSpec, targets: list[Target], admin_user: str, key_file: Path, key_field: str
) -> dict[str, SshNode]:
    """An SshNode per target, all with the spec's port, bastion and known_hosts."""
    from ringfleet.nodes.ssh import SshNode

    key = checked_key(spec, key_file, key_field)
    ssh = spec.cluster.ssh
    known = known_hosts_file(spec)
    return {
        t.name: SshNode(
            t.name,
            t.address,
            admin_user=admin_user,
            key_file=key,
            known_hosts=known,
            port=ssh.port,
            proxy_jump=ssh.proxy_jump,
            trust_command=f"ringfleet trust {spec.env}",
        )
        for t in targets
    }


def preflight(nodes: dict[str, SshNode], step: str) -> None:
    """Before a converge: every host trusted, its key accepted and, for a non-root admin,
    sudo without a password. The first refusal is one line naming the host.

    An untrusted key, a refused login or refused sudo is the user's to fix (exit 2); a
    host that does not answer is a runtime failure of `step` (exit 3).
    """
    from ringfleet.errors import RuntimeFailure
    from ringfleet.nodes.ssh import UNREACHABLE

    for node in nodes.values():
        try:
            node.connect()
        except RingfleetError as exc:
            if getattr(exc, "state", None) == UNREACHABLE:
                raise RuntimeFailure(f"{step}: {exc.where}", exc.what, exc.got) from None
            raise
        node.check_sudo()


def connection_vars(nodes: dict[str, SshNode]) -> dict[str, dict[str, Any]]:
    """Per host, the inventory variables that make Ansible connect as the node does."""
    return {name: node.ansible_host_vars() for name, node in nodes.items()}
