"""Provider docker: node containers on this machine, from `ringfleet.container`.

`container_definitions` is the one definition of a node container (`ringfleet up
local` uses it through the Docker SDK); `container_args` is the one mapping of it
onto pulumi_docker, so the two ways of starting a local cluster cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker

from ringfleet.providers.docker.container import (
    LABEL_CLUSTER,
    ContainerDef,
    container_definitions,
    network_name,
    volume_name,
)
from ringfleet.providers.docker.images import node_image_tag
from ringfleet.spec import ClusterSpec
from stacks.exports import Made

MIB = 1024**2
# Docker's NVIDIA device request, the same as `docker run --gpus N`.
GPU_DRIVER = "nvidia"
GPU_CAPABILITIES = ["gpu"]


def container_args(defn: ContainerDef) -> dict[str, Any]:
    """Keyword arguments of `docker.Container` for one node; the only such mapping.

    The Docker provider takes memory and /dev/shm in MiB where the definition
    holds bytes; sizes round down so the limit never exceeds the spec.
    """
    args: dict[str, Any] = {
        "name": defn.name,
        "hostname": defn.hostname,
        "image": defn.image,
        "labels": [
            docker.ContainerLabelArgs(label=key, value=value)
            for key, value in sorted(defn.labels.items())
        ],
        "networks_advanced": [docker.ContainerNetworksAdvancedArgs(name=defn.network)],
        "mounts": [docker.ContainerMountArgs(type="volume", source=defn.volume, target=defn.mount)],
        # Own host cores (cpuset) or a CPU quota, as container.py decides.
        **({"cpu_set": defn.cpuset} if defn.cpuset else {"cpus": f"{defn.nano_cpus / 10**9:g}"}),
        "memory": defn.mem_bytes // MIB,
        "command": list(defn.command),
        "shm_size": defn.shm_bytes // MIB,
        "ulimits": [
            docker.ContainerUlimitArgs(name=name, soft=soft, hard=hard)
            for name, soft, hard in defn.ulimits
        ],
        "init": defn.init,
    }
    if defn.gpus:
        args["device_requests"] = [
            docker.ContainerDeviceRequestArgs(
                driver=GPU_DRIVER, count=defn.gpus, capabilities=GPU_CAPABILITIES
            )
        ]
    return args


@dataclass
class ClusterNetworkArgs:
    name: str
    """Docker network name, as the container definitions refer to it."""
    subnet: str
    """IPv4 subnet of the network (the spec's network.subnet)."""
    cluster: str
    """Cluster name, for the network's label."""


class ClusterNetwork(pulumi.ComponentResource):
    """The bridge network the node containers talk MPI over."""

    def __init__(
        self, name: str, args: ClusterNetworkArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("ringfleet:docker:ClusterNetwork", name, None, opts)
        self.network = docker.Network(
            args.name,
            name=args.name,
            driver="bridge",
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=args.subnet)],
            labels=[docker.NetworkLabelArgs(label=LABEL_CLUSTER, value=args.cluster)],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"name": self.network.name})


@dataclass
class SharedStorageArgs:
    name: str
    """Docker volume name, as the container definitions refer to it."""
    cluster: str
    """Cluster name, for the volume's label."""


class SharedStorage(pulumi.ComponentResource):
    """The volume every node mounts at the spec's storage.mount."""

    def __init__(
        self, name: str, args: SharedStorageArgs, opts: pulumi.ResourceOptions | None = None
    ):
        super().__init__("ringfleet:docker:SharedStorage", name, None, opts)
        # Not protected: a local cluster is disposable and `ringfleet down local`
        # must be able to remove all of it.
        self.volume = docker.Volume(
            args.name,
            name=args.name,
            labels=[docker.VolumeLabelArgs(label=LABEL_CLUSTER, value=args.cluster)],
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"name": self.volume.name})


@dataclass
class NodePoolArgs:
    definitions: list[ContainerDef]
    """The container definitions of this pool's nodes."""
    depends_on: list[pulumi.Resource] = field(default_factory=list)
    """Network and volume: the definitions name them, so the dependency is explicit."""


class NodePool(pulumi.ComponentResource):
    """One container per node of a pool."""

    def __init__(self, name: str, args: NodePoolArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("ringfleet:docker:NodePool", name, None, opts)
        self.containers = {
            defn.name: docker.Container(
                defn.name,
                **container_args(defn),
                opts=pulumi.ResourceOptions(parent=self, depends_on=args.depends_on),
            )
            for defn in args.definitions
        }
        self.addresses = {
            node: {"privateIp": c.network_datas.apply(_first_ip), "publicIp": None}
            for node, c in self.containers.items()
        }
        self.register_outputs({"nodes": list(self.containers)})


def _first_ip(datas: list[Any] | None) -> str | None:
    # The definitions attach each container to exactly one network.
    return datas[0].ip_address if datas else None


def build_docker(spec: ClusterSpec, root: Path) -> Made:
    """Network, volume and one NodePool per pool, running the baked node images."""
    c = spec.cluster
    net = ClusterNetwork(
        f"{c.name}-network",
        ClusterNetworkArgs(name=network_name(spec), subnet=c.network.subnet, cluster=c.name),
    )
    storage = SharedStorage(
        f"{c.name}-storage", SharedStorageArgs(name=volume_name(spec), cluster=c.name)
    )
    images = {name: node_image_tag(spec, pool, root) for name, pool in spec.pools.items()}
    definitions = container_definitions(spec, images)
    made = Made()
    for pool_name in spec.pools:
        pool = NodePool(
            f"{c.name}-{pool_name}",
            NodePoolArgs(
                definitions=[d for d in definitions if d.pool == pool_name],
                depends_on=[net.network, storage.volume],
            ),
        )
        made.addresses.update(pool.addresses)
    return made
