"""AWS provider: EC2 pools, EFS or an NFS head, through the Pulumi program (stacks/).

Stack operations run through Pulumi's Automation API (`providers.stackops`), which
needs the `pulumi` CLI; each fails in one line saying how to install it.

Once `up` has made the instances, they are reached like bare metal: SshNodes
(`providers.sshreach`) as `admin` with the stack's own key
(`.ringfleet/<env>/ssh/stack_key`, 0600) and the env's known_hosts, checked strictly,
at the addresses of the outputs `up` saved (`.ringfleet/<env>/outputs.json`). Their
host keys enter known_hosts through `ringfleet trust ENV`, vouched for by each
instance's console output (`providers.aws.hostkeys`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ringfleet.errors import RingfleetError
from ringfleet.providers import NodeStatus, Outputs, UpOptions
from ringfleet.providers.base import ProviderBase
from ringfleet.spec.checks import where

if TYPE_CHECKING:
    from collections.abc import Callable

    from ringfleet.nodes import Node
    from ringfleet.nodes.trust import HostKey
    from ringfleet.providers.sshreach import Target
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



# A spec node the saved outputs do not have yet (`status`).
NOT_CREATED = "not created"


class AwsProvider(ProviderBase):
    name: ClassVar[str] = "aws"
    storage_kinds: ClassVar[tuple[str, ...]] = ("efs", "nfs")
    runs_jobs: ClassVar[bool] = True
    # Debian 12 on Nitro instances names the first interface ens5, not eth0: with no
    # interface in the spec, each node's is found by network.subnet, as on bare metal.
    default_interface: ClassVar[str | None] = None

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
        admin = cluster.ssh.admin_user
        if admin is not None and admin != AWS_LOGIN_USER:
            raise RingfleetError(
                where(display, "cluster.ssh.admin_user"),
                f"aws nodes are logged in to as {AWS_LOGIN_USER} (cloud-init makes it with "
                "the stack's key); leave it unset",
                admin,
            )
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

    # --- reaching the instances

    def _root(self) -> Path:
        from ringfleet.providers.sshreach import project_of

        return project_of(self.spec)

    def _saved_nodes(self) -> dict[str, dict[str, Any]]:
        """Node name -> its entry in the outputs `up` saved (name, addresses, instanceId)."""
        from ringfleet.converge.inventory import load_outputs
        from ringfleet.paths import outputs_path
        from ringfleet.providers.outputs import OUT_POOLS

        root, env = self._root(), self.spec.env
        saved = outputs_path(root, env)
        if not saved.is_file():
            raise RingfleetError(
                str(saved.relative_to(root)),
                f"no saved stack outputs for {env}: run `ringfleet up {env}` first",
            )
        data = load_outputs(saved)
        pools = data.get(OUT_POOLS)
        if not isinstance(pools, dict):
            raise RingfleetError(f"{saved.relative_to(root)}: {OUT_POOLS}", "must be a mapping")
        nodes: dict[str, dict[str, Any]] = {}
        for pool in pools.values():
            for node in (pool or {}).get("nodes", []) if isinstance(pool, dict) else []:
                if isinstance(node, dict) and isinstance(node.get("name"), str):
                    nodes[node["name"]] = node
        return nodes

    def _targets(self, names: list[str] | None = None) -> list[Target]:
        """The spec's nodes that the saved outputs have, at the address Ansible dials too."""
        from ringfleet.providers.sshreach import Target

        saved = self._saved_nodes()
        wanted = [n.name for n in self.spec.nodes if names is None or n.name in names]
        targets = []
        for name in wanted:
            if name not in saved:
                raise RingfleetError(
                    name, f"not in the saved stack outputs; run `ringfleet up {self.spec.env}`"
                )
            address = self.host_vars(saved[name], name)["ansible_host"]
            targets.append(Target(name, address))
        return targets

    def stack_key(self) -> Path:
        """The stack's login key as `up` wrote it: present and private, else one line."""
        from ringfleet.paths import stack_key_path
        from ringfleet.state import check_private_key

        root, env = self._root(), self.spec.env
        key = stack_key_path(root, env)
        shown = str(key.relative_to(root))
        if not key.is_file():
            raise RingfleetError(
                shown,
                f"no stack key: `ringfleet up {env}` writes it "
                "(docs/pulumi.md says how to write it from the stack by hand)",
            )
        return check_private_key(key, shown)

    def nodes(self, names: list[str] | None = None) -> dict[str, Node]:
        """The instances as SshNodes: `admin`, the stack key, known_hosts, proxy_jump."""
        from ringfleet.providers.sshreach import ssh_nodes

        key = self.stack_key()
        targets = self._targets(names)
        return dict(ssh_nodes(self.spec, targets, AWS_LOGIN_USER, key, "stack key"))

    def trust_targets(self) -> list[Target]:
        return self._targets()

    def host_key_voucher(
        self, read_console: Callable[[str], str] | None = None
    ) -> Callable[[list[HostKey]], None]:
        """Checks scanned keys against each instance's console output (`trust`), read
        with boto3 unless `read_console` (instance id -> text) is given."""
        from ringfleet.providers.aws.hostkeys import (
            INSTANCE_ID,
            NO_INSTANCE,
            Instance,
            boto3_console_reader,
            vouch,
        )

        saved = self._saved_nodes()
        instances = {}
        for target in self._targets():
            instance_id = saved[target.name].get("instanceId")
            if not isinstance(instance_id, str) or not INSTANCE_ID.fullmatch(instance_id):
                raise RingfleetError(
                    target.name, NO_INSTANCE.format(env=self.spec.env), instance_id
                )
            instances[target.name] = Instance(target.name, instance_id)
        region = self.spec.cluster.region
        assert region is not None  # check_cluster requires it
        trust = f"ringfleet trust {self.spec.env}"

        def check(keys: list[HostKey]) -> None:
            vouch(keys, instances, read_console or boto3_console_reader(region), trust)

        return check

    def status(self) -> list[NodeStatus]:
        """Each instance's state as the controller sees it over SSH."""
        from ringfleet.nodes.ssh import SshNode

        saved = self._saved_nodes()
        made = [n for n in self.spec.nodes if n.name in saved]
        nodes = self.nodes([n.name for n in made]) if made else {}
        rows = []
        for spec_node in self.spec.nodes:
            node = nodes.get(spec_node.name)
            if node is None:
                rows.append(NodeStatus(spec_node.name, spec_node.pool, NOT_CREATED, "", "ec2"))
                continue
            assert isinstance(node, SshNode)
            image = saved[spec_node.name].get("instanceId") or "ec2"
            rows.append(NodeStatus(node.name, spec_node.pool, node.state(), node.address, image))
        return rows

    # --- the stack

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
