"""A validated spec with everything derived: pools' cores, slots, nodes and software profile."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ringfleet import compat
from ringfleet.images.profiles import AddedProfile, find_added
from ringfleet.providers import rules_for
from ringfleet.spec.model import Cluster, Pool, Software


@dataclass(frozen=True)
class Node:
    name: str
    pool: str
    index: int
    address: str | None = None


@dataclass(frozen=True)
class ResolvedPool:
    """A pool with everything derived: cores, slots, nodes, software profile."""

    pool: Pool
    cores: int
    slots: int
    profile: compat.Profile
    """The built-in profile the roles install; an added profile's parent."""
    gpu: compat.GpuStack | None
    nodes: tuple[Node, ...]
    added: AddedProfile | None = None
    """The added profile (profiles/<name>.yaml) the pool selected, built on `profile`."""
    wheelhouse: Path | None = None
    """software.wheelhouse on the controller (absolute when the project is known)."""
    apt_repo: Path | None = None
    """software.apt_repo on the controller (absolute when the project is known)."""

    @property
    def profile_name(self) -> str:
        """What the spec selected: the added profile's name, else the built-in one's."""
        return self.added.name if self.added else self.profile.name

    @property
    def name(self) -> str:
        return self.pool.name

    @property
    def is_gpu(self) -> bool:
        return self.pool.accelerator is not None

    @property
    def total_slots(self) -> int:
        return self.slots * len(self.nodes)


@dataclass(frozen=True)
class ClusterSpec:
    """A validated cluster spec and where it came from."""

    cluster: Cluster
    env: str
    path: Path
    display: str

    @property
    def root(self) -> Path:
        """The project the spec file is in: where its added profiles (profiles/) are."""
        return self.path.parent

    @cached_property
    def pools(self) -> dict[str, ResolvedPool]:
        return {
            p.name: resolve_pool(self.cluster, i, p, self.root)
            for i, p in enumerate(self.cluster.pools)
        }

    def pool(self, name: str) -> ResolvedPool:
        if name not in self.pools:
            raise KeyError(name)
        return self.pools[name]

    @property
    def nodes(self) -> list[Node]:
        return [n for p in self.pools.values() for n in p.nodes]

    @property
    def interface(self) -> str | None:
        """The interface between nodes: the spec's, else the provider's default; None
        means each host's interface on `network.subnet` (hosts name it differently)."""
        return self.cluster.network.interface or rules_for(self.cluster).default_interface

    @property
    def mpi_include(self) -> str:
        """What Open MPI's btl/oob_tcp_if_include get: the interface, else the subnet
        (both accept a CIDR and match it against each host's addresses)."""
        return self.interface or self.cluster.network.subnet

    @property
    def slurm_controller(self) -> str | None:
        """The node running Slurm's controller, or None without `scheduler: slurm`."""
        if self.cluster.scheduler != "slurm":
            return None
        if self.cluster.slurm and self.cluster.slurm.controller:
            return self.cluster.slurm.controller
        return default_controller(self.cluster)

    @cached_property
    def spec_hash(self) -> str:
        """A short digest of the normalised spec, for labels and change detection."""
        data = self.cluster.model_dump(mode="json")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def software_for(cluster: Cluster, pool: Pool) -> Software:
    """The pool's own software matrix, else the cluster's."""
    return pool.software if pool.software is not None else cluster.software


def pool_profile(
    cluster: Cluster, pool: Pool, root: Path | None
) -> tuple[compat.Profile, AddedProfile | None]:
    """The pool's built-in profile and, when it selects one of `root`'s added profiles
    (profiles/<name>.yaml), that added profile, whose parent is then the built-in one."""
    sw = software_for(cluster, pool)
    name, added = sw.profile, None
    if name is not None and root is not None and name not in {p.name for p in compat.PROFILES}:
        added = find_added(root, name)
        name = added.extends if added else name
    profile = compat.resolve_profile(
        {f: getattr(sw, f) for f in compat.SOFTWARE_FIELDS}, name, pool.accelerator is not None
    )
    return profile, added


def resolve_pool(
    cluster: Cluster, index: int, pool: Pool, root: Path | None = None
) -> ResolvedPool:
    """Derive cores, slots, nodes and the software profile of one pool."""
    sw = software_for(cluster, pool)
    profile, added = pool_profile(cluster, pool, root)
    gpu = compat.resolve_gpu_stack(sw.driver, sw.cuda, sw.nccl) if pool.accelerator else None
    provider = rules_for(cluster)
    cores = provider.pool_cores(pool)
    slots = pool.accelerator.count if pool.accelerator else cores // pool.threads_per_rank
    nodes = provider.pool_nodes(cluster, pool)
    return ResolvedPool(
        pool, cores, slots, profile, gpu, nodes, added,
        site_dir(root, sw.wheelhouse), site_dir(root, sw.apt_repo),
    )  # fmt: skip


def site_dir(root: Path | None, value: str | None) -> Path | None:
    """A directory the spec names on the controller: `~` expanded, relative to the project."""
    if value is None:
        return None
    path = Path(value).expanduser()
    return path if path.is_absolute() or root is None else root / path


def default_controller(cluster: Cluster) -> str | None:
    """The first node of the first CPU pool that has nodes: Slurm's default controller."""
    for i, pool in enumerate(cluster.pools):
        if pool.accelerator is None:
            nodes = resolve_pool(cluster, i, pool).nodes
            if nodes:
                return nodes[0].name
    return None
