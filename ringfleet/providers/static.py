"""Static provider: bare metal the user owns. ringfleet creates nothing; Ansible configures.

The spec lists the hosts, so the stack outputs come from the spec alone and no
Pulumi CLI is needed to converge them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from ringfleet.errors import RingfleetError
from ringfleet.providers import Outputs, UpOptions
from ringfleet.providers.base import ProviderBase
from ringfleet.providers.outputs import static_outputs
from ringfleet.spec.checks import where
from ringfleet.spec.resolved import Node as SpecNode

if TYPE_CHECKING:
    from ringfleet.providers.stackops import StackOutputs
    from ringfleet.spec.model import Cluster, Pool


class StaticProvider(ProviderBase):
    name: ClassVar[str] = "static"
    storage_kinds: ClassVar[tuple[str, ...]] = ("nfs",)

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

    @classmethod
    def check_storage(cls, cluster: Cluster, display: str) -> None:
        if not cluster.storage.server:
            raise RingfleetError(
                where(display, "cluster.storage.server"),
                "required for static clusters: the host that exports shared storage",
            )

    @classmethod
    def pool_nodes(cls, cluster: Cluster, pool: Pool) -> tuple[SpecNode, ...]:
        """The hosts as listed, by their own names and addresses."""
        hosts = enumerate(pool.hosts or [], start=1)
        return tuple(SpecNode(h.name, pool.name, i, h.address) for i, h in hosts)

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
