"""Static provider: bare metal the user owns. ringfleet creates nothing; Ansible configures.

The spec lists the hosts, so the stack outputs come from the spec alone and no
Pulumi CLI is needed to converge them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ringfleet.errors import RingfleetError
from ringfleet.paths import DEFAULT_ADMIN_KEY
from ringfleet.providers import NodeStatus, Outputs, UpOptions
from ringfleet.providers.base import ProviderBase
from ringfleet.providers.outputs import static_outputs
from ringfleet.spec.checks import is_host, where
from ringfleet.spec.resolved import Node as SpecNode

if TYPE_CHECKING:
    from ringfleet.nodes import Node
    from ringfleet.providers.sshreach import Target
    from ringfleet.providers.stackops import StackOutputs
    from ringfleet.spec.model import Cluster, Pool


class StaticProvider(ProviderBase):
    name: ClassVar[str] = "static"
    runs_jobs: ClassVar[bool] = True
    storage_kinds: ClassVar[tuple[str, ...]] = ("nfs", "existing")
    # Hosts the user owns may name the cluster interface differently: find it by subnet.
    default_interface: ClassVar[str | None] = None

    @classmethod
    def check_pool(cls, cluster: Cluster, index: int, pool: Pool, display: str) -> None:
        cls.forbid(pool, index, display, "instance_type", "spot", "memory")
        at = f"cluster.pools[{index}]"
        if not pool.hosts:
            raise RingfleetError(
                where(display, f"{at}.hosts"), "required: the machines of a static pool"
            )
        if pool.count is not None and pool.count != len(pool.hosts):
            raise RingfleetError(
                where(display, f"{at}.count"),
                f"does not match the {len(pool.hosts)} host(s) listed",
                pool.count,
            )
        if pool.accelerator is None:
            cls.need(pool, index, display, "cpus", "cores per host, to derive slots")
        for j, host in enumerate(pool.hosts):
            # It lands in known_hosts, ssh's argv and /etc/exports: nothing else may pass.
            if not is_host(host.address):
                raise RingfleetError(
                    where(display, f"{at}.hosts[{j}].address"),
                    "must be an IPv4 or IPv6 address or an RFC 1123 host name",
                    host.address,
                )

    @classmethod
    def check_storage(cls, cluster: Cluster, display: str) -> None:
        if cluster.storage.kind == "existing":
            if cluster.storage.server:
                raise RingfleetError(
                    where(display, "cluster.storage.server"),
                    "not used by storage kind existing: the site's file system is already mounted",
                    cluster.storage.server,
                )
            return
        if not cluster.storage.server:
            raise RingfleetError(
                where(display, "cluster.storage.server"),
                "required for static clusters: the host that exports shared storage",
            )

    @classmethod
    def check_cluster(cls, cluster: Cluster, display: str) -> None:
        super().check_cluster(cluster, display)
        if cluster.ssh.admin_user is None:
            raise RingfleetError(
                where(display, "cluster.ssh.admin_user"),
                "required for static clusters: the account ringfleet logs in as "
                "(root, or a user with passwordless sudo)",
            )
        cls.check_proxy_jump(cluster, display)

    @classmethod
    def pool_nodes(cls, cluster: Cluster, pool: Pool) -> tuple[SpecNode, ...]:
        """The hosts as listed, by their own names and addresses."""
        hosts = enumerate(pool.hosts or [], start=1)
        return tuple(SpecNode(h.name, pool.name, i, h.address) for i, h in hosts)

    def nodes(self, names: list[str] | None = None) -> dict[str, Node]:
        """The spec's hosts as SshNodes (ssh.admin_user, key_file, known_hosts, proxy_jump)."""
        from ringfleet.providers.sshreach import Target, project_of, ssh_nodes

        ssh = self.spec.cluster.ssh
        wanted = [n for n in self.spec.nodes if names is None or n.name in names]
        key = Path(os.path.expanduser(ssh.key_file or DEFAULT_ADMIN_KEY))
        if not key.is_absolute():
            key = project_of(self.spec) / key
        assert ssh.admin_user is not None  # check_cluster requires it
        targets = [Target(n.name, n.address or n.name) for n in wanted]
        return dict(ssh_nodes(self.spec, targets, ssh.admin_user, key, "cluster.ssh.key_file"))

    def trust_targets(self) -> list[Target]:
        from ringfleet.providers.sshreach import Target

        return [Target(n.name, n.address or n.name) for n in self.spec.nodes]

    def status(self) -> list[NodeStatus]:
        """Each host's state as the controller sees it over SSH (running, untrusted, ...)."""
        from ringfleet.nodes.ssh import SshNode

        rows = []
        nodes = self.nodes()
        for spec_node in self.spec.nodes:
            node = nodes[spec_node.name]
            assert isinstance(node, SshNode)
            rows.append(
                NodeStatus(node.name, spec_node.pool, node.state(), node.address, "bare metal")
            )
        return rows

    def outputs(self, root: Path) -> Outputs:
        return Outputs(static_outputs(self.spec), self.spec.display)

    def create(self) -> StackOutputs:
        from ringfleet.providers.stackops import StackOutputs

        # Nothing to create: the spec (validated on load) is the whole truth.
        return StackOutputs(static_outputs(self.spec))

    def down(self, root: Path, purge: bool, options: UpOptions) -> None:
        raise RingfleetError(
            f"{self.spec.display}: cluster.provider",
            "static clusters are bare metal; ringfleet never removes them",
            "static",
        )
