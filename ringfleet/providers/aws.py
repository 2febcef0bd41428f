"""AWS provider: EC2 pools, EFS or an NFS head, through the Pulumi program (stacks/).

Stack operations run through Pulumi's Automation API (`providers.stackops`), which
needs the `pulumi` CLI; each fails in one line saying how to install it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ringfleet.errors import RingfleetError
from ringfleet.providers import Outputs, UpOptions
from ringfleet.providers.base import ProviderBase
from ringfleet.spec.checks import where

if TYPE_CHECKING:
    from ringfleet.providers.stackops import StackOutputs
    from ringfleet.spec.model import Cluster, Pool

# Debian AMIs log in as `admin`: the inventory's ansible_user and the stack's key's user.
AWS_LOGIN_USER = "admin"


# AWS instance types ringfleet knows how to slot: physical cores and GPUs.
@dataclass(frozen=True)
class InstanceType:
    cores: int
    gpus: int = 0
    gpu_model: str | None = None


AWS_INSTANCE_TYPES: dict[str, InstanceType] = {
    "c7i.large": InstanceType(1),
    "c7i.xlarge": InstanceType(2),
    "c7i.2xlarge": InstanceType(4),
    "c7i.4xlarge": InstanceType(8),
    "c7i.8xlarge": InstanceType(16),
    "c7i.12xlarge": InstanceType(24),
    "c7i.16xlarge": InstanceType(32),
    "c7i.24xlarge": InstanceType(48),
    "m7i.xlarge": InstanceType(2),
    "m7i.2xlarge": InstanceType(4),
    "m7i.4xlarge": InstanceType(8),
    "g5.xlarge": InstanceType(2, 1, "a10g"),
    "g5.2xlarge": InstanceType(4, 1, "a10g"),
    "g5.4xlarge": InstanceType(8, 1, "a10g"),
    "g5.12xlarge": InstanceType(24, 4, "a10g"),
    "g5.48xlarge": InstanceType(96, 8, "a10g"),
    "p4d.24xlarge": InstanceType(48, 8, "a100"),
}



class AwsProvider(ProviderBase):
    name: ClassVar[str] = "aws"
    storage_kinds: ClassVar[tuple[str, ...]] = ("efs", "nfs")

    @classmethod
    def check_pool(cls, cluster: Cluster, index: int, pool: Pool, display: str) -> None:
        at = f"cluster.pools[{index}]"
        cls.forbid(pool, index, display, "hosts")
        cls.need(pool, index, display, "count", "how many instances to launch")
        cls.need(pool, index, display, "instance_type", "the EC2 instance type")
        itype = AWS_INSTANCE_TYPES.get(pool.instance_type)
        if itype is None and pool.cpus is None:
            raise RingfleetError(
                where(display, f"{at}.instance_type"),
                "unknown instance type; set cpus for it or use one of "
                + ", ".join(sorted(AWS_INSTANCE_TYPES)),
                pool.instance_type,
            )
        if pool.accelerator and itype is not None:
            if itype.gpus == 0:
                raise RingfleetError(
                    where(display, f"{at}.instance_type"),
                    "instance type has no GPUs but the pool has an accelerator",
                    pool.instance_type,
                )
            if pool.accelerator.count > itype.gpus:
                raise RingfleetError(
                    where(display, f"{at}.accelerator.count"),
                    f"{pool.instance_type} has only {itype.gpus} GPU(s)",
                    pool.accelerator.count,
                )
        cls.forbid(pool, index, display, "memory")

    @classmethod
    def check_cluster(cls, cluster: Cluster, display: str) -> None:
        if not cluster.region:
            raise RingfleetError(where(display, "cluster.region"), "required for provider aws")
        # The login key is the stack's own (.ringfleet/<env>/ssh/stack_key), not a named file.
        cls.forbid_ssh(cluster, display, "key_file")
        cls.check_proxy_jump(cluster, display)

    @classmethod
    def pool_cores(cls, pool: Pool) -> int:
        """The spec's cpus, else the known instance type's physical cores."""
        if pool.instance_type in AWS_INSTANCE_TYPES:
            return pool.cpus or AWS_INSTANCE_TYPES[pool.instance_type].cores
        return pool.cpus or 0

    @classmethod
    def host_vars(cls, node: dict[str, Any], at: str) -> dict[str, Any]:
        return {**super().host_vars(node, at), "ansible_user": AWS_LOGIN_USER}

    def outputs(self, root: Path) -> Outputs:
        from ringfleet.providers.stackops import stack_outputs

        return Outputs(stack_outputs(self.spec.env), f"stack {self.spec.env} outputs")

    def create(self) -> StackOutputs:
        from ringfleet.providers.stackops import stack_up

        return stack_up(self.spec.env)

    def down(self, root: Path, purge: bool, options: UpOptions) -> None:
        from ringfleet.providers.stackops import stack_down

        stack_down(self.spec.env)
        options.say(f"down {self.spec.env}: stack destroyed (protected resources are kept)")
