"""What providers share: the spec-rule helpers, the defaults, and the "remote" up.

A provider subclasses `ProviderBase` and overrides what differs; the defaults are
those of machines ringfleet does not run itself (aws, static): nodes named
`<cluster>-<pool>-<i>`, reached by Ansible over SSH at their address, and not yet
reachable by `ringfleet run` (bare metal over SSH is #12).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ringfleet.errors import RingfleetError
from ringfleet.providers import NodeStatus, Outputs, UpOptions
from ringfleet.spec.checks import where
from ringfleet.spec.resolved import Node as SpecNode

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console

    from ringfleet.nodes import Node
    from ringfleet.nodes.trust import HostKey
    from ringfleet.providers.sshreach import Target
    from ringfleet.providers.stackops import StackOutputs
    from ringfleet.spec.model import Cluster, Pool
    from ringfleet.spec.resolved import ClusterSpec

# How often a lost SSH host is asked whether it answers again.
HEAL_POLL_SECONDS = 5.0


class ProviderBase:
    """Defaults for every provider; see `ringfleet.providers.Provider` for the contract."""

    name: ClassVar[str]
    storage_kinds: ClassVar[tuple[str, ...]]
    runs_jobs: ClassVar[bool] = False
    converges_hosts: ClassVar[bool] = True
    """The roles install every host's software (static, aws); docker nodes come from the
    node image, so a site's wheelhouse or package repository means nothing to them."""
    default_interface: ClassVar[str | None] = "eth0"
    """The interface between nodes when the spec names none; None: found by subnet."""

    def __init__(self, spec: ClusterSpec):
        self.spec = spec

    # --- spec rules (class level: they run before a ClusterSpec exists)

    @classmethod
    def forbid(cls, pool: Pool, index: int, display: str, *fields: str) -> None:
        """Refuse a pool field this provider does not use."""
        for field in fields:
            if getattr(pool, field) not in (None, [], False):
                raise RingfleetError(
                    where(display, f"cluster.pools[{index}].{field}"),
                    f"not used by provider {cls.name}",
                    getattr(pool, field),
                )

    @classmethod
    def need(cls, pool: Pool, index: int, display: str, field: str, why: str) -> None:
        """Refuse a pool without a field this provider needs."""
        if getattr(pool, field) is None:
            raise RingfleetError(
                where(display, f"cluster.pools[{index}].{field}"), f"required: {why}"
            )

    @classmethod
    def forbid_ssh(cls, cluster: Cluster, display: str, *fields: str) -> None:
        """Refuse an ssh field this provider does not use."""
        for field in fields:
            value = getattr(cluster.ssh, field)
            if value is not None:
                at = where(display, f"cluster.ssh.{field}")
                raise RingfleetError(at, f"not used by provider {cls.name}", value)

    @classmethod
    def check_proxy_jump(cls, cluster: Cluster, display: str) -> None:
        """ssh.proxy_jump, when set, must be `[user@]host[:port]`."""
        from ringfleet.nodes.ssh import parse_proxy_jump

        if cluster.ssh.proxy_jump is not None:
            try:
                parse_proxy_jump("ssh", cluster.ssh.proxy_jump)
            except RingfleetError:
                raise RingfleetError(
                    where(display, "cluster.ssh.proxy_jump"),
                    "must be [user@]host[:port]",
                    cluster.ssh.proxy_jump,
                ) from None

    @classmethod
    def check_pool(cls, cluster: Cluster, index: int, pool: Pool, display: str) -> None:
        raise NotImplementedError

    @classmethod
    def check_storage(cls, cluster: Cluster, display: str) -> None:
        """Storage rules beyond the kind (`storage_kinds`); none by default."""

    @classmethod
    def check_cluster(cls, cluster: Cluster, display: str) -> None:
        """Cluster-level fields: only aws has a region."""
        if cluster.region:
            raise RingfleetError(
                where(display, "cluster.region"), f"only used by provider aws, not {cls.name}"
            )

    @classmethod
    def pool_cores(cls, pool: Pool) -> int:
        return pool.cpus or 0

    @classmethod
    def pool_nodes(cls, cluster: Cluster, pool: Pool) -> tuple[SpecNode, ...]:
        return tuple(
            SpecNode(f"{cluster.name}-{pool.name}-{i}", pool.name, i)
            for i in range(1, (pool.count or 0) + 1)
        )

    @classmethod
    def host_vars(cls, node: dict[str, Any], at: str) -> dict[str, Any]:
        """Ansible connects over SSH to the node's public address, else its private one."""
        address = node.get("publicIp") or node.get("privateIp")
        if not address:
            raise RingfleetError(at, "has no address", node)
        return {"ansible_host": address}

    # --- one env

    def require_run(self) -> None:
        """Refuse, in one line, to run jobs where the controller cannot reach nodes yet."""
        if not self.runs_jobs:
            raise RingfleetError(
                "run", f"provider {self.name} is not supported by `run` yet; use docker"
            )

    def nodes(self, names: list[str] | None = None) -> dict[str, Node]:
        self.require_run()
        raise NotImplementedError

    def heal(self, root: Path, name: str, timeout: float, console: Console) -> None:
        """Bring a node lost mid-run back for the run's next attempt, or raise.

        ringfleet cannot remake a host someone else owns: it waits up to `timeout`
        seconds for the host to answer again (a reboot, a network blip).
        """
        import time

        from ringfleet.errors import RuntimeFailure
        from ringfleet.nodes import RUNNING

        deadline = time.monotonic() + timeout
        console.print(f"heal {name}: waiting up to {timeout:.0f} s for it to answer")
        while (state := self.nodes([name])[name].state()) != RUNNING:
            if time.monotonic() >= deadline:
                raise RuntimeFailure(name, f"still {state} after {timeout:.0f} s (--heal-timeout)")
            time.sleep(HEAL_POLL_SECONDS)

    def trust_targets(self) -> list[Target]:
        """The hosts `ringfleet trust` scans: name and the address the controller dials."""
        raise RingfleetError(
            f"{self.spec.display}: cluster.provider",
            "`trust` scans hosts listed in the spec; provider " + self.name + " has none",
            self.name,
        )

    def host_key_voucher(self) -> Callable[[list[HostKey]], None] | None:
        """A second source `trust` checks scanned host keys against, if the provider has
        one (aws: the instances' console output); None: the user's confirmation alone."""
        return None

    def connection(self, limit: list[str] | None = None) -> dict[str, dict[str, Any]]:
        """Per node, how Ansible connects beyond `host_vars` (key, known_hosts, become);
        the nodes to converge (`limit`, default all) are checked first: an untrusted host
        or refused sudo stops here in one line, before anything changes."""
        from ringfleet.providers.sshreach import connection_vars, preflight

        nodes = self.nodes()
        chosen = {n: node for n, node in nodes.items() if limit is None or n in limit}
        preflight(chosen, f"converge {self.spec.env}")  # type: ignore[arg-type]
        extra = connection_vars(nodes)  # type: ignore[arg-type]
        for name, node in nodes.items():
            # ssh_mesh keeps key-only root login when the controller logs in as root.
            extra[name]["ringfleet_admin_user"] = node.admin_user  # type: ignore[attr-defined]
        return extra

    def status(self) -> list[NodeStatus]:
        raise RingfleetError(
            f"{self.spec.display}: cluster.provider",
            "the local cluster needs provider docker; use Pulumi for this env",
            self.name,
        )

    def outputs(self, root: Path) -> Outputs:
        raise NotImplementedError

    def create(self) -> StackOutputs:
        """Make the machines; their outputs, secrets apart."""
        raise NotImplementedError

    def up(self, root: Path, options: UpOptions) -> None:
        """Create, save the outputs, then write the inventory and converge (converge.apply)."""
        from ringfleet.converge.apply import ConvergePlan, apply
        from ringfleet.providers.stackops import save_stack_outputs
        from ringfleet.state import converge_vars

        env = self.spec.env
        made = self.create()
        save_stack_outputs(root, env, made)
        connection = self.connection(options.limit) if options.converge else {}

        def written(_inventory: dict, path: Path) -> None:
            options.say(f"up {env}: inventory {path}")

        applied = apply(
            root,
            env,
            made.values,
            where=self.spec.display,
            converge=options.converge,
            extravars=lambda: converge_vars(root, env, self.spec.slurm_controller is not None),
            label=f"converge {env}",
            console=options.console,
            on_written=written,
            connection=connection,
            check=options.check,
            plan=lambda _inventory: ConvergePlan(limit=",".join(options.limit or []) or None),
        )
        if applied.result is None:
            return
        if options.check:
            per_host = ", ".join(f"{h}={n}" for h, n in sorted(applied.result.changed.items()))
            options.say(
                f"up {env}: check mode, nothing changed; a converge would change "
                f"{applied.result.total_changed} ({per_host or 'none'})"
            )
        elif options.limit:
            # The hosts Ansible reported on: proof that the limit held.
            ran = ", ".join(sorted(applied.result.ok)) or "none"
            options.say(
                f"up {env}: converged {ran} (--limit), ansible changed="
                f"{applied.result.total_changed}"
            )
        else:
            options.say(f"up {env}: converged, ansible changed={applied.result.total_changed}")
