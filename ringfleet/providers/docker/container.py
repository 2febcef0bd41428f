"""The one definition of a local node container.

`ringfleet up local` (docker SDK) and the Pulumi docker stack both build their
containers from `container_definitions`, so the two can never disagree.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field

from ringfleet.spec import ClusterSpec, ResolvedPool, size_bytes

# The base image of a pool that names none: made here from Debian if missing (baseimage.py).
DEFAULT_DOCKER_IMAGE = "ringfleet/base:bookworm"
LABEL_PREFIX = "ringfleet."
LABEL_CLUSTER = "ringfleet.cluster"
LABEL_POOL = "ringfleet.pool"
LABEL_NODE = "ringfleet.node"
LABEL_POOL_HASH = "ringfleet.pool-spec-hash"
LABEL_DEFINITION_HASH = "ringfleet.definition-hash"

# Open MPI's shared-memory transport needs more than Docker's 64 MiB /dev/shm.
SHM_BYTES = 512 * 1024**2
# Containers inherit the engine's rlimits. Raising memlock/nofile above them is what MPI
# would like, but an engine without CAP_SYS_RESOURCE (as on ringfleet's CI machine) refuses
# to create such a container at all; TCP transports work within the defaults.
ULIMITS: tuple[tuple[str, int, int], ...] = ()

# CPU placement. A CFS quota (nano_cpus) lets a node burst onto every host core and then
# stops it for the rest of the 100 ms period; two ranks that meet at an allreduce every
# step then wait for each other's stalls. Measured on the 2-core machine, 2 nodes of 1
# CPU, synthetic cnn at 2 ranks, 3 alternating rounds: quota 323/457/381 img/s, the same
# nodes on their own cores 514/462/486 (+27 % median; throttled 4.8 s -> 0.01 s per run,
# bench/results/bc-explained.md). So when every node of the spec fits on its own host
# cores, each gets a cpuset of its own cores and no quota; otherwise (more CPUs asked than
# the host has, as the 3 x 2-CPU local default on 2 cores) the quota shares them.

# PID 1 script of every node. Host keys are made on the node's first start, so
# nodes from one baked image never share them; sshd starts once the roles have
# installed it. `docker stop` sends TERM, which the trap turns into a quick exit.
NODE_INIT = """\
if [ -x /usr/bin/ssh-keygen ] && ! ls /etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
  /usr/bin/ssh-keygen -A >/dev/null
fi
if [ -x /usr/sbin/sshd ]; then mkdir -p /run/sshd && /usr/sbin/sshd; fi
trap 'exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
"""


@dataclass(frozen=True)
class ContainerDef:
    """Everything that defines one node container; a change means recreation."""

    name: str
    hostname: str
    image: str
    network: str
    volume: str
    mount: str
    nano_cpus: int
    mem_bytes: int
    gpus: int
    cpuset: str | None = None
    """Host cores of the node (`cpuset-cpus`) when it has its own; then nano_cpus is 0."""
    labels: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ("/bin/sh", "-c", NODE_INIT)
    shm_bytes: int = SHM_BYTES
    ulimits: tuple[tuple[str, int, int], ...] = ULIMITS
    init: bool = True

    @property
    def pool(self) -> str:
        return self.labels[LABEL_POOL]

    def definition_hash(self) -> str:
        """Digest of the definition without its own hash label."""
        data = asdict(self)
        # A node without a cpuset hashes as before the field existed: no recreation.
        if data["cpuset"] is None:
            del data["cpuset"]
        data["labels"] = {k: v for k, v in self.labels.items() if k != LABEL_DEFINITION_HASH}
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def network_name(spec: ClusterSpec) -> str:
    return f"{spec.cluster.name}-net"


def volume_name(spec: ClusterSpec) -> str:
    return f"{spec.cluster.name}-shared"


def pool_spec_hash(pool: ResolvedPool) -> str:
    """Digest of a pool's settings other than its size, so scaling recreates nothing."""
    data = pool.pool.model_dump(mode="json", exclude={"count"})
    data["profile"] = pool.profile.name
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def host_cores() -> int:
    """Cores the local Docker engine's host offers (the engine runs on this machine)."""
    return len(os.sched_getaffinity(0))


def cpusets(spec: ClusterSpec, cores: int) -> dict[str, str] | None:
    """Each node's own host cores, in pool and node order, or None when they do not fit."""
    wanted = [(node.name, pool.cores) for pool in spec.pools.values() for node in pool.nodes]
    if not wanted or sum(n for _, n in wanted) > cores:
        return None
    sets, first = {}, 0
    for name, n in wanted:
        sets[name] = f"{first}-{first + n - 1}" if n > 1 else str(first)
        first += n
    return sets


def container_definitions(
    spec: ClusterSpec, images: dict[str, str], cores: int | None = None
) -> list[ContainerDef]:
    """One ContainerDef per node of every pool; `images` maps pool name to image tag.

    `cores`: the host's (default: this machine's), which decides the CPU placement.
    """
    pinned = cpusets(spec, host_cores() if cores is None else cores)
    defs = []
    for pool in spec.pools.values():
        for node in pool.nodes:
            labels = {
                LABEL_CLUSTER: spec.cluster.name,
                LABEL_POOL: pool.name,
                LABEL_NODE: node.name,
                LABEL_POOL_HASH: pool_spec_hash(pool),
                **{f"{LABEL_PREFIX}user.{k}": v for k, v in sorted(pool.pool.labels.items())},
            }
            d = ContainerDef(
                name=node.name,
                hostname=node.name,
                image=images[pool.name],
                network=network_name(spec),
                volume=volume_name(spec),
                mount=spec.cluster.storage.mount,
                nano_cpus=0 if pinned else pool.cores * 10**9,
                cpuset=pinned[node.name] if pinned else None,
                mem_bytes=size_bytes(pool.pool.memory or "0"),
                gpus=pool.pool.accelerator.count if pool.pool.accelerator else 0,
                labels=labels,
            )
            labels[LABEL_DEFINITION_HASH] = d.definition_hash()
            defs.append(d)
    return defs
