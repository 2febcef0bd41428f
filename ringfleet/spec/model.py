"""The spec's data model: the pydantic classes of `ringfleet:cluster`, field by field.

Per-field rules live here; rules across fields are in `spec.checks`, and the rules of
one provider (which fields it needs or refuses) in that provider (`ringfleet.providers`).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    """IPv4/IPv6 address or RFC 1123 host name Ansible and SSH connect to (checked in
    spec.checks: it lands in known_hosts and /etc/exports)."""


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
    wheelhouse: str | None = Field(default=None, min_length=1)
    """A site with no PyPI: a directory on the controller (relative to the project) that
    `ringfleet images export PROFILE --wheels` wrote; static and aws hosts install the
    venv and Horovod only from it. Not a profile field."""
    apt_repo: str | None = Field(default=None, min_length=1)
    """A site with no Debian mirror: a directory on the controller that `ringfleet images
    export PROFILE --apt` wrote; apt on static and aws hosts reads only it."""


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
    kind: Literal["volume", "nfs", "efs", "existing"]
    """`existing`: a shared file system the site already mounts at `mount` on every host."""
    mount: AbsPath = "/shared"
    export: AbsPath = "/srv/ringfleet"
    """Exported directory on the NFS server."""
    server: str | None = None
    """NFS server: a host of a static pool, or an address; aws creates a head node if unset."""


UserName = Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_-]{0,31}$")]


class Ssh(Strict):
    user: UserName = "rf"
    """The job user: ranks run as it, and its key makes the nodes' SSH mesh."""
    port: int = Field(default=22, ge=1, le=65535)
    """The nodes' sshd port, for the controller and for the mesh."""
    admin_user: UserName | None = None
    """Who the controller logs in as (converge, run, verify, lock): required for static,
    `admin` on aws; a non-root admin needs passwordless sudo."""
    key_file: str | None = Field(default=None, min_length=1)
    """The controller's private key for admin_user (static: default ~/.ssh/id_ed25519)."""
    known_hosts: str | None = Field(default=None, min_length=1)
    """Host keys, checked strictly (default inventories/<env>/known_hosts; relative to
    the project); `ringfleet trust ENV` fills it."""
    proxy_jump: str | None = Field(default=None, min_length=1)
    """A bastion, `[user@]host[:port]`, for hosts the controller cannot reach directly."""


class Network(Strict):
    subnet: str = "10.213.0.0/24"
    admin_cidr: str = "127.0.0.1/32"
    interface: str | None = None
    """Interface MPI, Horovod and NCCL use between nodes. Unset: the provider's default
    (docker: eth0); on static and aws hosts, whatever interface has an address on
    `subnet`, so hosts may name it differently. Required with a GPU pool there: NCCL
    (NCCL_SOCKET_IFNAME) takes an interface name, not a subnet."""
    allow_wide_admin_cidr: bool = False
    """Allow an admin_cidr wider than /16 (IPv4) or /48 (IPv6) to reach SSH."""


class Slurm(Strict):
    """Where Slurm's control daemons run; partitions are derived, one per pool."""

    controller: Name | None = None
    """The node running slurmctld, slurmdbd and MariaDB; default the first node of the
    first CPU pool that has nodes."""


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
    scheduler: Literal["none", "slurm"] = "none"
    """`slurm`: `up` installs Slurm (roles/slurm) and `run` submits through sbatch."""
    slurm: Slurm | None = None
    """Slurm's settings; only with `scheduler: slurm`."""


