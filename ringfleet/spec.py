"""The typed cluster spec, read from `Pulumi.<env>.yaml` under `ringfleet:cluster`.

`pulumi up -s ENV` and `ringfleet VERB ENV` read the same file, so there is
exactly one description of each environment.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ringfleet import compat
from ringfleet.errors import RingfleetError
from ringfleet.pydantic_errors import to_ringfleet_error
from ringfleet.yamlio import read_yaml

CONFIG_KEY = "ringfleet:cluster"
ENV_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{0,30}$")]
Version = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)*$")]
AbsPath = Annotated[str, Field(pattern=r"^/[^\s]*$")]
Size = Annotated[str, Field(pattern=r"^[0-9]+(\.[0-9]+)?\s*([KMGT]i?B?|[kmgt]|b)?$")]

_SIZE_UNITS = {
    "": 1, "b": 1,
    "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4,
    "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
    "KB": 1000, "MB": 1000**2, "GB": 1000**3, "TB": 1000**4,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
    "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4,
}


def size_bytes(text: str) -> int:
    """'4GiB' -> 4294967296. Lowercase single letters follow Docker (binary units)."""
    match = re.fullmatch(r"([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)", text.strip())
    if not match or match.group(2) not in _SIZE_UNITS:
        raise ValueError(f"not a size: {text!r}")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


class Strict(BaseModel):
    """Unknown keys are errors: typos are the commonest spec mistake."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Accelerator(Strict):
    vendor: Literal["nvidia"]
    """GPU vendor; only NVIDIA has a role (driver, CUDA, NCCL)."""
    model: str = Field(min_length=1)
    """GPU model, e.g. a10g or a100; informational and used for AWS checks."""
    count: int = Field(ge=1, le=16)
    """GPUs per node; each GPU is one Horovod slot."""


class StaticHost(Strict):
    name: Name
    """Inventory host name."""
    address: str = Field(min_length=1)
    """IP address or DNS name Ansible and SSH connect to."""


class Software(Strict):
    """The software matrix; every field must match a tested profile."""

    profile: str | None = None
    os: str | None = None
    python: Version | None = None
    openmpi: Version | None = None
    tensorflow: Version | None = None
    horovod: Version | None = None
    mkl: Version | None = None
    driver: str | None = None
    """NVIDIA driver branch, for GPU pools."""
    cuda: Version | None = None
    nccl: Version | None = None


class Pool(Strict):
    name: Name
    count: int | None = Field(default=None, ge=0, le=256)
    """Nodes in the pool; for static pools it defaults to the number of hosts."""
    cpus: int | None = Field(default=None, ge=1, le=512)
    """Cores per node (docker: CPU limit; static: cores; aws: override the type's cores)."""
    memory: Size | None = None
    """Memory per node (docker limit), e.g. 4GiB."""
    instance_type: str | None = None
    hosts: list[StaticHost] | None = None
    accelerator: Accelerator | None = None
    image: str | None = None
    """Docker base image or AWS AMI id; defaults per provider."""
    labels: dict[str, str] = Field(default_factory=dict)
    threads_per_rank: int = Field(default=1, ge=1, le=512)
    """CPU pools: cores given to each rank, so slots = cores // threads_per_rank."""
    root_volume_gb: int = Field(default=100, ge=8, le=16384)
    spot: bool = False
    software: Software | None = None
    """Per-pool override of the cluster's software matrix."""


class Storage(Strict):
    kind: Literal["volume", "nfs", "efs"]
    mount: AbsPath = "/shared"
    export: AbsPath = "/srv/ringfleet"
    """Exported directory on the NFS server."""
    server: str | None = None
    """NFS server: a host of a static pool, or an address; aws creates a head node if unset."""


class Ssh(Strict):
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")] = "rf"
    port: int = Field(default=22, ge=1, le=65535)


class Network(Strict):
    subnet: str = "10.213.0.0/24"
    admin_cidr: str = "127.0.0.1/32"
    interface: str = "eth0"
    """Interface MPI and Horovod use between nodes."""


class Cluster(Strict):
    name: Name
    provider: Literal["docker", "aws", "static"]
    region: str | None = None
    """AWS region (provider aws only)."""
    pools: list[Pool] = Field(min_length=1)
    storage: Storage
    ssh: Ssh = Field(default_factory=Ssh)
    network: Network = Field(default_factory=Network)
    software: Software = Field(default_factory=Software)


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

DEFAULT_DOCKER_IMAGE = "ringfleet/base:bookworm"


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
    gpu: compat.GpuStack | None
    nodes: tuple[Node, ...]

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

    @cached_property
    def pools(self) -> dict[str, ResolvedPool]:
        return {p.name: resolve_pool(self.cluster, i, p) for i, p in enumerate(self.cluster.pools)}

    def pool(self, name: str) -> ResolvedPool:
        if name not in self.pools:
            raise KeyError(name)
        return self.pools[name]

    @property
    def nodes(self) -> list[Node]:
        return [n for p in self.pools.values() for n in p.nodes]

    @cached_property
    def spec_hash(self) -> str:
        """A short digest of the normalised spec, for labels and change detection."""
        data = self.cluster.model_dump(mode="json")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def _where(display: str, path: str) -> str:
    return f"{display}: {path}"


def _software_for(cluster: Cluster, pool: Pool) -> Software:
    return pool.software if pool.software is not None else cluster.software


def _software_path(cluster: Cluster, index: int) -> str:
    if cluster.pools[index].software is not None:
        return f"cluster.pools[{index}].software"
    return "cluster.software"


def resolve_pool(cluster: Cluster, index: int, pool: Pool) -> ResolvedPool:
    """Derive cores, slots, nodes and the software profile of one pool."""
    sw = _software_for(cluster, pool)
    profile = compat.resolve_profile(
        {f: getattr(sw, f) for f in compat.SOFTWARE_FIELDS},
        sw.profile,
        pool.accelerator is not None,
    )
    gpu = compat.resolve_gpu_stack(sw.driver, sw.cuda, sw.nccl) if pool.accelerator else None
    if cluster.provider == "aws" and pool.instance_type in AWS_INSTANCE_TYPES:
        cores = pool.cpus or AWS_INSTANCE_TYPES[pool.instance_type].cores
    else:
        cores = pool.cpus or 0
    slots = pool.accelerator.count if pool.accelerator else cores // pool.threads_per_rank
    if cluster.provider == "static":
        nodes = tuple(
            Node(h.name, pool.name, i, h.address) for i, h in enumerate(pool.hosts or [], start=1)
        )
    else:
        nodes = tuple(
            Node(f"{cluster.name}-{pool.name}-{i}", pool.name, i)
            for i in range(1, (pool.count or 0) + 1)
        )
    return ResolvedPool(pool, cores, slots, profile, gpu, nodes)


def check_cluster(cluster: Cluster, display: str) -> None:
    """Cross-field rules pydantic's per-field checks cannot express."""
    provider = cluster.provider
    seen: dict[str, int] = {}
    for i, pool in enumerate(cluster.pools):
        at = f"cluster.pools[{i}]"
        if pool.name in seen:
            raise RingfleetError(
                _where(display, f"{at}.name"),
                f"duplicate pool name (also cluster.pools[{seen[pool.name]}])",
                pool.name,
            )
        seen[pool.name] = i
        _check_pool_provider(cluster, i, pool, display)
        sw = _software_for(cluster, pool)
        try:
            compat.resolve_profile(
                {f: getattr(sw, f) for f in compat.SOFTWARE_FIELDS},
                sw.profile,
                pool.accelerator is not None,
            )
            if pool.accelerator:
                compat.resolve_gpu_stack(sw.driver, sw.cuda, sw.nccl)
        except compat.ProfileError as exc:
            field = exc.field
            got = sw.profile if field == "profile" else getattr(sw, field, None)
            raise RingfleetError(
                _where(display, f"{_software_path(cluster, i)}.{field}"), exc.message, got
            ) from None
        if pool.cpus is not None and pool.accelerator is None and pool.cpus < pool.threads_per_rank:
            raise RingfleetError(
                _where(display, f"{at}.threads_per_rank"),
                f"more threads per rank than the node has cores ({pool.cpus})",
                pool.threads_per_rank,
            )
    _check_network(cluster, display)
    _check_storage(cluster, display)
    if provider == "aws" and not cluster.region:
        raise RingfleetError(_where(display, "cluster.region"), "required for provider aws")
    if provider != "aws" and cluster.region:
        raise RingfleetError(
            _where(display, "cluster.region"), f"only used by provider aws, not {provider}"
        )
    names: dict[str, str] = {}
    total = 0
    for i, pool in enumerate(cluster.pools):
        rp = resolve_pool(cluster, i, pool)
        total += rp.total_slots
        for j, node in enumerate(rp.nodes):
            if node.name in names:
                raise RingfleetError(
                    _where(display, f"cluster.pools[{i}].hosts[{j}].name"),
                    f"host already in pool {names[node.name]!r}",
                    node.name,
                )
            names[node.name] = pool.name
    if total == 0:
        raise RingfleetError(
            _where(display, "cluster.pools"),
            "zero total slots: no pool has a node with a slot, so no job could run",
        )


def _check_pool_provider(cluster: Cluster, i: int, pool: Pool, display: str) -> None:
    at = f"cluster.pools[{i}]"
    provider = cluster.provider

    def forbid(field: str) -> None:
        if getattr(pool, field) not in (None, [], False):
            raise RingfleetError(
                _where(display, f"{at}.{field}"),
                f"not used by provider {provider}",
                getattr(pool, field),
            )

    def need(field: str, why: str) -> None:
        if getattr(pool, field) is None:
            raise RingfleetError(_where(display, f"{at}.{field}"), f"required: {why}")

    if provider == "docker":
        forbid("instance_type")
        forbid("hosts")
        forbid("spot")
        need("count", "how many containers to run")
        need("cpus", "the CPU limit of each container")
        need("memory", "the memory limit of each container")
        if size_bytes(pool.memory) < 256 * 1024**2:
            raise RingfleetError(
                _where(display, f"{at}.memory"), "must be at least 256MiB", pool.memory
            )
    elif provider == "aws":
        forbid("hosts")
        need("count", "how many instances to launch")
        need("instance_type", "the EC2 instance type")
        itype = AWS_INSTANCE_TYPES.get(pool.instance_type)
        if itype is None and pool.cpus is None:
            raise RingfleetError(
                _where(display, f"{at}.instance_type"),
                "unknown instance type; set cpus for it or use one of "
                + ", ".join(sorted(AWS_INSTANCE_TYPES)),
                pool.instance_type,
            )
        if pool.accelerator and itype is not None:
            if itype.gpus == 0:
                raise RingfleetError(
                    _where(display, f"{at}.instance_type"),
                    "instance type has no GPUs but the pool has an accelerator",
                    pool.instance_type,
                )
            if pool.accelerator.count > itype.gpus:
                raise RingfleetError(
                    _where(display, f"{at}.accelerator.count"),
                    f"{pool.instance_type} has only {itype.gpus} GPU(s)",
                    pool.accelerator.count,
                )
        forbid("memory")
    else:  # static
        forbid("instance_type")
        forbid("spot")
        forbid("memory")
        if not pool.hosts:
            raise RingfleetError(
                _where(display, f"{at}.hosts"), "required: the machines of a static pool"
            )
        if pool.count is not None and pool.count != len(pool.hosts):
            raise RingfleetError(
                _where(display, f"{at}.count"),
                f"does not match the {len(pool.hosts)} host(s) listed",
                pool.count,
            )
        if pool.accelerator is None:
            need("cpus", "cores per host, to derive slots")


def _check_network(cluster: Cluster, display: str) -> None:
    for field in ("subnet", "admin_cidr"):
        value = getattr(cluster.network, field)
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise RingfleetError(
                _where(display, f"cluster.network.{field}"), f"not a CIDR network: {exc}", value
            ) from None
        if field == "admin_cidr" and net.prefixlen == 0:
            raise RingfleetError(
                _where(display, "cluster.network.admin_cidr"),
                "SSH would be open to the whole internet; name your admin network",
                value,
            )
    subnet = ipaddress.ip_network(cluster.network.subnet)
    if subnet.num_addresses - 3 < sum((p.count or len(p.hosts or [])) for p in cluster.pools):
        raise RingfleetError(
            _where(display, "cluster.network.subnet"),
            "too small for the nodes of all pools",
            cluster.network.subnet,
        )


STORAGE_BY_PROVIDER = {"docker": ("volume",), "aws": ("efs", "nfs"), "static": ("nfs",)}


def _check_storage(cluster: Cluster, display: str) -> None:
    allowed = STORAGE_BY_PROVIDER[cluster.provider]
    if cluster.storage.kind not in allowed:
        raise RingfleetError(
            _where(display, "cluster.storage.kind"),
            f"provider {cluster.provider} supports {', '.join(allowed)}",
            cluster.storage.kind,
        )
    if cluster.provider == "static" and not cluster.storage.server:
        raise RingfleetError(
            _where(display, "cluster.storage.server"),
            "required for static clusters: the host that exports shared storage",
        )


def project_root() -> Path:
    """The ringfleet project directory: $RINGFLEET_ROOT, else the nearest Pulumi.yaml upward."""
    env = os.environ.get("RINGFLEET_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for cand in (here, *here.parents):
        if (cand / "Pulumi.yaml").is_file():
            return cand
    return Path(__file__).resolve().parent.parent


def spec_path(env: str, root: Path | None = None) -> Path:
    return (root or project_root()) / f"Pulumi.{env}.yaml"


def known_envs(root: Path | None = None) -> list[str]:
    base = root or project_root()
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in base.glob("Pulumi.*.yaml"))


def load_spec(env: str, root: Path | None = None) -> ClusterSpec:
    """Read and validate `Pulumi.<env>.yaml`; every problem is a one-line RingfleetError."""
    if not ENV_PATTERN.match(env):
        raise RingfleetError("env", "must be letters, digits, '.', '_' or '-'", env)
    path = spec_path(env, root)
    display = path.name
    if not path.exists():
        known = ", ".join(known_envs(root)) or "none"
        raise RingfleetError(display, f"no such file (env {env!r}; known envs: {known})")
    return load_spec_file(path, env, display)


def load_spec_file(path: Path, env: str, display: str | None = None) -> ClusterSpec:
    display = display or path.name
    doc = read_yaml(path, display)
    if doc is None:
        raise RingfleetError(display, "file is empty; expected config.ringfleet:cluster")
    if not isinstance(doc, dict):
        raise RingfleetError(display, "top level must be a mapping with a config key", doc)
    config = doc.get("config")
    if not isinstance(config, dict):
        raise RingfleetError(f"{display}: config", "required mapping of Pulumi config", config)
    if CONFIG_KEY not in config:
        raise RingfleetError(f"{display}: config.{CONFIG_KEY}", "required: the cluster spec")
    raw = config[CONFIG_KEY]
    # Pulumi stores structured config under a `value` key when set from the CLI.
    if isinstance(raw, dict) and set(raw) == {"value"}:
        raw = raw["value"]
    if not isinstance(raw, dict):
        raise RingfleetError(f"{display}: cluster", "must be a mapping", raw)
    try:
        cluster = Cluster.model_validate(raw)
    except ValidationError as exc:
        raise to_ringfleet_error(exc, display, "cluster", Cluster) from None
    check_cluster(cluster, display)
    return ClusterSpec(cluster, env, path, display)


def cluster_from_mapping(raw: dict, display: str = "<spec>", env: str = "inline") -> ClusterSpec:
    """Validate a spec already parsed (Pulumi program, tests)."""
    try:
        cluster = Cluster.model_validate(raw)
    except ValidationError as exc:
        raise to_ringfleet_error(exc, display, "cluster", Cluster) from None
    check_cluster(cluster, display)
    return ClusterSpec(cluster, env, Path(display), display)
