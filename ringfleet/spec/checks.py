"""Rules across fields of a spec that pydantic's per-field checks cannot express.

Rules every provider shares are here; what one provider needs or refuses is asked of
that provider (`check_pool`, `check_storage`, `check_cluster` in ringfleet.providers).
"""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path

from ringfleet import compat
from ringfleet.errors import RingfleetError
from ringfleet.images.offline import PACKAGES_FILE, SUMS_FILE
from ringfleet.images.record import lock_file
from ringfleet.images.wheels import LOCK_FILE
from ringfleet.providers import rules_for
from ringfleet.spec.model import Cluster, Pool
from ringfleet.spec.resolved import (
    default_controller,
    pool_profile,
    resolve_pool,
    site_dir,
    software_for,
)

# Linux interface names are at most 15 characters (IFNAMSIZ minus the NUL).
INTERFACE_PATTERN = re.compile(r"[A-Za-z0-9_.:-]{1,15}")
# A host name (RFC 1123 labels) for storage.server; IP addresses are checked apart.
HOSTNAME_PATTERN = re.compile(
    r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*"
)
# Widest admin network SSH is opened to unless the spec says it means it.
WIDEST_ADMIN_PREFIX = {4: 16, 6: 48}


def where(display: str, path: str) -> str:
    """`Pulumi.<env>.yaml: cluster.pools[1].count`: the file and the field, for errors."""
    return f"{display}: {path}"


def _software_path(cluster: Cluster, index: int) -> str:
    if cluster.pools[index].software is not None:
        return f"cluster.pools[{index}].software"
    return "cluster.software"


def check_cluster(cluster: Cluster, display: str, root: Path | None = None) -> None:
    """Cross-field rules pydantic's per-field checks cannot express; `root` is the project
    whose added profiles (profiles/) pools may select."""
    provider = rules_for(cluster)
    seen: dict[str, int] = {}
    for i, pool in enumerate(cluster.pools):
        at = f"cluster.pools[{i}]"
        if pool.name in seen:
            raise RingfleetError(
                where(display, f"{at}.name"),
                f"duplicate pool name (also cluster.pools[{seen[pool.name]}])",
                pool.name,
            )
        seen[pool.name] = i
        provider.check_pool(cluster, i, pool, display)
        sw = software_for(cluster, pool)
        try:
            pool_profile(cluster, pool, root)
            if pool.accelerator:
                compat.resolve_gpu_stack(sw.driver, sw.cuda, sw.nccl)
        except compat.ProfileError as exc:
            field = exc.field
            got = sw.profile if field == "profile" else getattr(sw, field, None)
            raise RingfleetError(
                where(display, f"{_software_path(cluster, i)}.{field}"), exc.message, got
            ) from None
        _check_site_sources(cluster, i, pool, display, root)
        if pool.cpus is not None and pool.accelerator is None and pool.cpus < pool.threads_per_rank:
            raise RingfleetError(
                where(display, f"{at}.threads_per_rank"),
                f"more threads per rank than the node has cores ({pool.cpus})",
                pool.threads_per_rank,
            )
    _check_network(cluster, display)
    _check_storage(cluster, display)
    provider.check_cluster(cluster, display)
    _check_nccl_interface(cluster, display)
    names: dict[str, str] = {}
    total = 0
    for i, pool in enumerate(cluster.pools):
        rp = resolve_pool(cluster, i, pool, root)
        total += rp.total_slots
        for j, node in enumerate(rp.nodes):
            if node.name in names:
                raise RingfleetError(
                    where(display, f"cluster.pools[{i}].hosts[{j}].name"),
                    f"host already in pool {names[node.name]!r}",
                    node.name,
                )
            names[node.name] = pool.name
    if total == 0:
        raise RingfleetError(
            where(display, "cluster.pools"),
            "zero total slots: no pool has a node with a slot, so no job could run",
        )
    _check_scheduler(cluster, display, list(names))


# What `images export --wheels` and `--apt` write in every directory they make.
SITE_SOURCE_FILES = {
    "wheelhouse": ("--wheels", (SUMS_FILE, LOCK_FILE)),
    "apt_repo": ("--apt", (SUMS_FILE, PACKAGES_FILE)),
}


def _check_site_sources(
    cluster: Cluster, index: int, pool: Pool, display: str, root: Path | None
) -> None:
    """software.wheelhouse and apt_repo: hosts ringfleet converges over SSH only, each a
    directory an export wrote, and a wheelhouse of the pool's own profile."""
    sw = software_for(cluster, pool)
    for field, (flag, needs) in SITE_SOURCE_FILES.items():
        value = getattr(sw, field)
        if value is None:
            continue
        at = where(display, f"{_software_path(cluster, index)}.{field}")
        provider = rules_for(cluster)
        if not provider.converges_hosts:
            raise RingfleetError(
                at,
                f"{provider.name} nodes are made from the node image, which the bake fills "
                "from PyPI and the mirror; only static and aws hosts install from a site's "
                "directories",
                value,
            )
        path = site_dir(root, value)
        if root is None:
            continue
        if not path.is_dir():
            raise RingfleetError(at, "no such directory on the controller", value)
        missing = [name for name in needs if not (path / name).is_file()]
        if missing:
            raise RingfleetError(
                at,
                f"has no {missing[0]}: write it with `ringfleet images export PROFILE {flag} "
                f"-o {value}`",
                value,
            )
        if field == "wheelhouse":
            _check_wheelhouse_lock(cluster, pool, at, path, root)


def _check_wheelhouse_lock(cluster: Cluster, pool: Pool, at: str, path: Path, root: Path) -> None:
    """The wheelhouse must hold the lock the tensorflow role installs for the pool's profile:
    pip would otherwise stop on the first pin it lacks, after the host changed."""
    profile, added = pool_profile(cluster, pool, root)
    lock = lock_file(root, profile.name, pool.accelerator is not None)
    if added is not None or not lock.is_file():
        return
    if (path / LOCK_FILE).read_bytes() != lock.read_bytes():
        raise RingfleetError(
            at,
            f"its requirements.txt is not profile {profile.name}'s lock "
            f"({lock.relative_to(root)}); export the wheelhouse of the {profile.name} image",
            str(path),
        )


def _check_scheduler(cluster: Cluster, display: str, nodes: list[str]) -> None:
    """`cluster.slurm` only with `scheduler: slurm`; its controller must be a node of the spec."""
    if cluster.scheduler != "slurm":
        if cluster.slurm is not None:
            raise RingfleetError(
                where(display, "cluster.slurm"),
                "only with cluster.scheduler: slurm",
                cluster.scheduler,
            )
        return
    controller = cluster.slurm.controller if cluster.slurm else None
    if controller is not None and controller not in nodes:
        raise RingfleetError(
            where(display, "cluster.slurm.controller"),
            f"no such node (nodes: {', '.join(nodes)})",
            controller,
        )
    if controller is None and default_controller(cluster) is None:
        raise RingfleetError(
            where(display, "cluster.scheduler"),
            "needs a controller: no CPU pool has a node; name one in cluster.slurm.controller",
            cluster.scheduler,
        )


def _check_network(cluster: Cluster, display: str) -> None:
    for field in ("subnet", "admin_cidr"):
        value = getattr(cluster.network, field)
        try:
            net = ipaddress.ip_network(value, strict=True)
        except ValueError as exc:
            raise RingfleetError(
                where(display, f"cluster.network.{field}"), f"not a CIDR network: {exc}", value
            ) from None
        if field == "admin_cidr" and net.prefixlen == 0:
            raise RingfleetError(
                where(display, "cluster.network.admin_cidr"),
                "SSH would be open to the whole internet; name your admin network",
                value,
            )
        widest = WIDEST_ADMIN_PREFIX[net.version]
        wide_ok = cluster.network.allow_wide_admin_cidr
        if field == "admin_cidr" and net.prefixlen < widest and not wide_ok:
            raise RingfleetError(
                where(display, "cluster.network.admin_cidr"),
                f"wider than /{widest} opens SSH to more than an admin network; narrow it "
                "or set cluster.network.allow_wide_admin_cidr: true",
                value,
            )
    interface = cluster.network.interface
    if interface is not None and not INTERFACE_PATTERN.fullmatch(interface):
        raise RingfleetError(
            where(display, "cluster.network.interface"),
            "must be a network interface name such as eth0",
            cluster.network.interface,
        )
    subnet = ipaddress.ip_network(cluster.network.subnet)
    if subnet.num_addresses - 3 < sum((p.count or len(p.hosts or [])) for p in cluster.pools):
        raise RingfleetError(
            where(display, "cluster.network.subnet"),
            "too small for the nodes of all pools",
            cluster.network.subnet,
        )


def _check_nccl_interface(cluster: Cluster, display: str) -> None:
    """GPU ranks talk through NCCL, which takes an interface name (NCCL_SOCKET_IFNAME),
    not the subnet Open MPI can be given: with none named or defaulted, say so."""
    provider = rules_for(cluster)
    if cluster.network.interface or provider.default_interface:
        return
    gpu = next((i for i, p in enumerate(cluster.pools) if p.accelerator), None)
    if gpu is not None:
        raise RingfleetError(
            where(display, "cluster.network.interface"),
            f"required with a GPU pool (cluster.pools[{gpu}]) on provider {provider.name}: "
            "NCCL needs the nodes' cluster interface by name (e.g. ens5 on EC2 Nitro, eno1)",
        )


def _check_storage(cluster: Cluster, display: str) -> None:
    provider = rules_for(cluster)
    allowed = provider.storage_kinds
    if cluster.storage.kind not in allowed:
        raise RingfleetError(
            where(display, "cluster.storage.kind"),
            f"provider {provider.name} supports {', '.join(allowed)}",
            cluster.storage.kind,
        )
    provider.check_storage(cluster, display)
    server = cluster.storage.server
    if server is not None and not is_host(server):
        raise RingfleetError(
            where(display, "cluster.storage.server"),
            "must be a host name or an IP address",
            server,
        )


def is_host(value: str) -> bool:
    """An IPv4 or IPv6 address, or an RFC 1123 host name: what may reach ssh, known_hosts
    and /etc/exports."""
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return HOSTNAME_PATTERN.fullmatch(value) is not None
    return True
