"""Providers: what makes an env's machines exist, behind one interface.

`for_spec(spec)` is the one place that picks the implementation from the spec's
`cluster.provider`; everything else (the CLI, run, verify, the inventory, the spec's
own validation) asks the provider it got, never compares the provider's name:

  docker  `providers/docker/`  local containers that behave like hosts
  aws     `providers/aws/`     EC2 through the Pulumi program (stacks/); host keys via console
  static  `providers/static.py` bare metal the user owns; ringfleet creates nothing

This module stays light (no Docker, Pulumi or Ansible imports) because the spec
loader asks it for each provider's rules while it validates a file.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from ringfleet.errors import RingfleetError

if TYPE_CHECKING:
    from rich.console import Console

    from ringfleet.nodes import Node
    from ringfleet.nodes.trust import HostKey
    from ringfleet.providers.sshreach import Target
    from ringfleet.spec import Cluster, ClusterSpec, Pool
    from ringfleet.spec import Node as SpecNode

# name -> "module:Class"; imported on first use so `validate` never loads Docker or Pulumi.
IMPLEMENTATIONS = {
    "docker": "ringfleet.providers.docker:DockerProvider",
    "aws": "ringfleet.providers.aws:AwsProvider",
    "static": "ringfleet.providers.static:StaticProvider",
}

Say = Callable[[str], None]
"""Where a command's result lines go (stdout); progress goes to a Console (stderr)."""


@dataclass(frozen=True)
class Outputs:
    """Stack outputs as the inventory reads them, and where they came from (for errors)."""

    values: dict[str, Any]
    where: str


@dataclass(frozen=True)
class NodeStatus:
    """One row of `ringfleet status`."""

    name: str
    pool: str
    state: str
    ip: str
    image: str


@dataclass
class UpOptions:
    """What `up` (or `down`) was asked for, and where it reports: result lines to `say`
    (stdout), progress to `console` (stderr)."""

    converge: bool = True
    force_converge: bool = False
    check: bool = False
    """Ansible check mode with diffs: report what would change, change nothing."""
    limit: list[str] | None = None
    """Converge only these nodes (names as in the spec)."""
    console: Console | None = None
    say: Say = field(default=print)


@runtime_checkable
class Provider(Protocol):
    """One env's machines: make them, remove them, report them, reach them.

    Class-level members are the provider's spec rules, used while a spec is being
    validated (before a ClusterSpec exists); instance methods act on one env.
    """

    name: ClassVar[str]
    storage_kinds: ClassVar[tuple[str, ...]]
    """Shared storage kinds this provider can give its nodes."""
    runs_jobs: ClassVar[bool]
    """Whether `ringfleet run` (and so `verify --perf`) can reach its nodes yet."""

    spec: ClusterSpec

    @classmethod
    def check_pool(cls, cluster: Cluster, index: int, pool: Pool, display: str) -> None:
        """Refuse, in one line, a pool field this provider needs or does not use."""
        ...

    @classmethod
    def check_storage(cls, cluster: Cluster, display: str) -> None:
        """Refuse, in one line, shared storage this provider cannot serve as specified."""
        ...

    @classmethod
    def check_cluster(cls, cluster: Cluster, display: str) -> None:
        """Refuse, in one line, a cluster-level field this provider needs or does not use."""
        ...

    @classmethod
    def pool_cores(cls, pool: Pool) -> int:
        """Cores per node of `pool` (0 when the spec does not say)."""
        ...

    @classmethod
    def pool_nodes(cls, cluster: Cluster, pool: Pool) -> tuple[SpecNode, ...]:
        """The nodes of `pool`, named as the inventory will name them."""
        ...

    @classmethod
    def host_vars(cls, node: dict[str, Any], where: str) -> dict[str, Any]:
        """How Ansible reaches one node of the stack outputs (connection, host, user)."""
        ...

    def up(self, root: Path, options: UpOptions) -> None:
        """Make the machines match the spec, write the inventory, converge (unless asked not)."""
        ...

    def down(self, root: Path, purge: bool, options: UpOptions) -> None:
        """Remove the machines (and with `purge` the shared data and local state)."""
        ...

    def status(self) -> list[NodeStatus]:
        """Every node of the spec and of the cluster, with its state."""
        ...

    def outputs(self, root: Path) -> Outputs:
        """The env's stack outputs, for the inventory."""
        ...

    def require_run(self) -> None:
        """Raise the one-line error of a provider `ringfleet run` cannot use yet."""
        ...

    def nodes(self, names: list[str] | None = None) -> dict[str, Node]:
        """The named nodes (all of the spec's by default) as `ringfleet.nodes.Node`s."""
        ...

    def trust_targets(self) -> list[Target]:
        """The hosts `ringfleet trust` scans: name and the address the controller dials."""
        ...

    def host_key_voucher(self) -> Callable[[list[HostKey]], None] | None:
        """What `trust` checks scanned host keys against besides the user (aws: the
        instances' console output); None when the user's confirmation is all."""
        ...

    def heal(self, root: Path, name: str, timeout: float, console: Console) -> None:
        """Bring back node `name`, lost mid-run, for the run's next attempt (or raise)."""
        ...


def provider_class(name: str, where: str = "cluster.provider") -> type[Provider]:
    """The implementation registered under `name`; an unknown name is a one-line error at `where`.

    A validated spec always names a known one; stack outputs read from disk may not.
    """
    if name not in IMPLEMENTATIONS:
        raise RingfleetError(where, f"must be one of {', '.join(IMPLEMENTATIONS)}", name)
    module, _, attr = IMPLEMENTATIONS[name].partition(":")
    return getattr(importlib.import_module(module), attr)


def rules_for(cluster: Cluster) -> type[Provider]:
    """The provider class of a cluster model, for validating it."""
    return provider_class(cluster.provider)


def for_spec(spec: ClusterSpec) -> Provider:
    """The provider of a validated spec, bound to it."""
    return rules_for(spec.cluster)(spec)
