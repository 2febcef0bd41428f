"""Stack output keys and their shape, shared by the stacks, the inventory renderer and tests.

Every provider (docker, aws, static) exports the same keys, so everything after
the stack reads one format whatever created the machines.
"""

from __future__ import annotations

from typing import Any

from ringfleet.images.profiles import added_pins
from ringfleet.spec import ClusterSpec, ResolvedPool, size_bytes

OUT_CLUSTER = "cluster"
OUT_ENV = "env"
OUT_PROVIDER = "provider"
OUT_POOLS = "pools"
OUT_SSH_USER = "sshUser"
OUT_SSH_PORT = "sshPort"
OUT_SSH_PRIVATE_KEY = "sshPrivateKey"
OUT_STORAGE = "sharedStorage"
OUT_NETWORK = "network"
# Only with `cluster.scheduler: slurm`: the controller and each pool's memory for slurm.conf.
OUT_SCHEDULER = "scheduler"

REQUIRED_KEYS = (
    OUT_CLUSTER,
    OUT_ENV,
    OUT_PROVIDER,
    OUT_POOLS,
    OUT_SSH_USER,
    OUT_SSH_PORT,
    OUT_STORAGE,
    OUT_NETWORK,
)


def pool_output(pool: ResolvedPool, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    """The exported description of one pool; `nodes` carry name and addresses."""
    acc = pool.pool.accelerator
    software: dict[str, Any] = {
        "profile": pool.profile.name,
        **pool.profile.versions(),
        "openmpiDebian": pool.profile.openmpi_debian,
        "tensorflowPackage": pool.profile.tensorflow_package,
    }
    if pool.profile.legacy_keras:
        software["legacyKeras"] = pool.profile.legacy_keras
    if pool.added is not None:
        # What an added profile's image holds beyond its parent, for `verify` to check.
        software["added"] = {
            "profile": pool.added.name,
            "pip": added_pins(pool.added),
            "apt": list(pool.added.apt),
        }
    # A site with no PyPI or mirror: directories on the controller (roles/site_sources).
    if pool.wheelhouse is not None:
        software["wheelhouse"] = str(pool.wheelhouse)
    if pool.apt_repo is not None:
        software["aptRepo"] = str(pool.apt_repo)
    if pool.gpu is not None:
        # GPU pools need the CUDA-enabled wheel, pulled with its CUDA libraries.
        software.update(
            driver=pool.gpu.driver,
            cuda=pool.gpu.cuda,
            nccl=pool.gpu.nccl,
            tensorflowPackage="tensorflow[and-cuda]",
        )
    return {
        "slots": pool.slots,
        "cores": pool.cores,
        "threadsPerRank": pool.pool.threads_per_rank,
        "accelerator": acc.model_dump() if acc else None,
        "software": software,
        "nodes": nodes,
    }


def static_outputs(spec: ClusterSpec, addresses: dict[str, dict[str, str]] | None = None) -> dict:
    """Outputs computable from the spec alone; `addresses` adds per-node IPs when known.

    The static provider exports exactly this; docker and aws fill the addresses
    from the resources they create.
    """
    addresses = addresses or {}
    c = spec.cluster
    pools = {}
    for pool in spec.pools.values():
        nodes = []
        for node in pool.nodes:
            extra = addresses.get(node.name, {})
            entry = {
                "name": node.name,
                "privateIp": extra.get("privateIp", node.address),
                "publicIp": extra.get("publicIp"),
            }
            if extra.get("instanceId"):
                # aws: `ringfleet trust` reads the instance's console output by it.
                entry["instanceId"] = extra["instanceId"]
            nodes.append(entry)
        pools[pool.name] = pool_output(pool, nodes)
    result = {
        OUT_CLUSTER: c.name,
        OUT_ENV: spec.env,
        OUT_PROVIDER: c.provider,
        OUT_POOLS: pools,
        OUT_SSH_USER: c.ssh.user,
        OUT_SSH_PORT: c.ssh.port,
        OUT_STORAGE: {
            "kind": c.storage.kind,
            "mount": c.storage.mount,
            "export": c.storage.export,
            "server": c.storage.server,
        },
        OUT_NETWORK: {
            "subnet": c.network.subnet,
            "adminCidr": c.network.admin_cidr,
            # Empty: each host's interface on the subnet (the openmpi role's convention).
            "interface": spec.interface or "",
        },
    }
    if spec.slurm_controller:
        result[OUT_SCHEDULER] = scheduler_output(spec)
    return result


def scheduler_output(spec: ClusterSpec) -> dict[str, Any]:
    """Slurm's controller, and per pool the memory the spec gives a node (MiB; None: the
    node's own): a container reports the host's memory, so slurm.conf takes the spec's."""
    memory = {
        pool.name: size_bytes(pool.pool.memory) // 2**20 if pool.pool.memory else None
        for pool in spec.pools.values()
    }
    return {"kind": "slurm", "controller": spec.slurm_controller, "memoryMb": memory}
