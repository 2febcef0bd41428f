"""The local cluster: Docker containers that behave like hosts (sshd, own IP, shared volume)."""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import docker.types
from rich.console import Console

from ringfleet.container import (
    LABEL_CLUSTER,
    LABEL_DEFINITION_HASH,
    LABEL_NODE,
    LABEL_POOL,
    ContainerDef,
    container_definitions,
    network_name,
    volume_name,
)
from ringfleet.converge import ConvergeResult, converge
from ringfleet.engine import docker_client, has_nvidia_runtime
from ringfleet.errors import RingfleetError
from ringfleet.images import ensure_node_image
from ringfleet.inventory import inventory_path, render_inventory, write_inventory
from ringfleet.outputs import static_outputs
from ringfleet.spec import ClusterSpec
from ringfleet.state import STATE_DIRNAME, converge_vars, state_dir, write_outputs

# Shown in `status` and stored on the container so a later `up` can say what changed.
LABEL_DEFINITION = "ringfleet.definition"


@dataclass
class UpReport:
    created: list[str] = field(default_factory=list)
    recreated: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    converge: ConvergeResult | None = None
    seconds: float = 0.0
    inventory: Path | None = None


def require_docker_provider(spec: ClusterSpec) -> None:
    if spec.cluster.provider != "docker":
        raise RingfleetError(
            f"{spec.display}: cluster.provider",
            "the local cluster needs provider docker; use Pulumi for this env",
            spec.cluster.provider,
        )


def _summary(d: ContainerDef) -> dict[str, object]:
    """The parts of a definition worth naming when they change."""
    return {
        "image": d.image,
        "cpus": d.nano_cpus / 1e9,
        "memory": d.mem_bytes,
        "gpus": d.gpus,
        "mount": d.mount,
        "network": d.network,
    }


def _changes(container, d: ContainerDef) -> str:
    try:
        old = json.loads(container.labels.get(LABEL_DEFINITION, "{}"))
    except json.JSONDecodeError:
        old = {}
    new = _summary(d)
    diffs = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    return ", ".join(diffs) or "container definition changed"


def _create(client: docker.DockerClient, d: ContainerDef) -> None:
    device_requests = (
        [docker.types.DeviceRequest(count=d.gpus, capabilities=[["gpu"]])] if d.gpus else None
    )
    container = client.containers.create(
        d.image,
        command=list(d.command),
        name=d.name,
        hostname=d.hostname,
        labels={**d.labels, LABEL_DEFINITION: json.dumps(_summary(d), sort_keys=True)},
        mounts=[docker.types.Mount(target=d.mount, source=d.volume, type="volume")],
        nano_cpus=d.nano_cpus,
        mem_limit=d.mem_bytes,
        shm_size=d.shm_bytes,
        ulimits=[docker.types.Ulimit(name=n, soft=s, hard=h) for n, s, h in d.ulimits],
        init=d.init,
        device_requests=device_requests,
        detach=True,
        network=d.network,
    )
    container.start()


def _ensure_network(client: docker.DockerClient, spec: ClusterSpec, console: Console):
    name = network_name(spec)
    try:
        net = client.networks.get(name)
    except docker.errors.NotFound:
        console.print(f"  network {name}: creating ({spec.cluster.network.subnet})")
        ipam = docker.types.IPAMConfig(
            pool_configs=[docker.types.IPAMPool(subnet=spec.cluster.network.subnet)]
        )
        return client.networks.create(
            name, driver="bridge", ipam=ipam, labels={LABEL_CLUSTER: spec.cluster.name}
        )
    subnets = [c.get("Subnet") for c in (net.attrs.get("IPAM", {}).get("Config") or [])]
    if spec.cluster.network.subnet not in subnets:
        raise RingfleetError(
            f"{spec.display}: cluster.network.subnet",
            f"network {name} exists with subnet {', '.join(map(str, subnets))}; "
            "run `ringfleet down` first to change it",
            spec.cluster.network.subnet,
        )
    return net


def _ensure_volume(client: docker.DockerClient, spec: ClusterSpec, console: Console) -> None:
    name = volume_name(spec)
    try:
        client.volumes.get(name)
    except docker.errors.NotFound:
        console.print(f"  volume {name}: creating (shared storage at {spec.cluster.storage.mount})")
        client.volumes.create(name, labels={LABEL_CLUSTER: spec.cluster.name})


def cluster_containers(client: docker.DockerClient, spec: ClusterSpec) -> dict[str, object]:
    found = client.containers.list(
        all=True, filters={"label": f"{LABEL_CLUSTER}={spec.cluster.name}"}
    )
    return {c.labels.get(LABEL_NODE, c.name): c for c in found}


def node_addresses(client: docker.DockerClient, spec: ClusterSpec) -> dict[str, dict[str, str]]:
    net = network_name(spec)
    out = {}
    for name, c in cluster_containers(client, spec).items():
        c.reload()
        ip = c.attrs["NetworkSettings"]["Networks"].get(net, {}).get("IPAddress")
        if ip:
            out[name] = {"privateIp": ip}
    return out


def check_gpu_pools(client: docker.DockerClient, spec: ClusterSpec) -> None:
    for i, pool in enumerate(spec.cluster.pools):
        if pool.accelerator and (pool.count or 0) > 0 and not has_nvidia_runtime(client):
            raise RingfleetError(
                f"{spec.display}: cluster.pools[{i}]",
                "GPU pool on docker needs the NVIDIA container runtime, which this Docker "
                "engine lacks; set count: 0 or install nvidia-container-toolkit",
                pool.count,
            )


def up(
    spec: ClusterSpec, root: Path, console: Console | None = None, converge_nodes: bool = True
) -> UpReport:
    """Create or update the local cluster to match the spec, then converge it."""
    require_docker_provider(spec)
    console = console or Console(stderr=True)
    started = time.monotonic()
    client = docker_client()
    check_gpu_pools(client, spec)
    report = UpReport()
    images = {}
    for pool in spec.pools.values():
        if pool.nodes:
            images[pool.name] = ensure_node_image(client, spec, pool, root, console)
        else:
            images[pool.name] = "none"
    _ensure_network(client, spec, console)
    _ensure_volume(client, spec, console)
    desired = {d.name: d for d in container_definitions(spec, images)}
    existing = cluster_containers(client, spec)
    for name, container in sorted(existing.items()):
        if name not in desired:
            console.print(f"  node {name}: removing (not in the spec any more)")
            container.remove(force=True)
            report.removed.append(name)
    for name, d in desired.items():
        container = existing.get(name)
        if container is None:
            console.print(f"  node {name}: creating ({d.pool})")
            _create(client, d)
            report.created.append(name)
        elif container.labels.get(LABEL_DEFINITION_HASH) != d.labels[LABEL_DEFINITION_HASH]:
            console.print(
                f"  node {name}: recreating, it cannot change in place: {_changes(container, d)}"
            )
            container.remove(force=True)
            _create(client, d)
            report.recreated.append(name)
        elif container.status != "running":
            console.print(f"  node {name}: was {container.status}; starting it")
            container.start()
            report.started.append(name)
        else:
            report.unchanged.append(name)
    outputs = static_outputs(spec, node_addresses(client, spec))
    write_outputs(root, spec.env, outputs)
    report.inventory = write_inventory(root, spec.env, render_inventory(outputs, spec.display))
    if converge_nodes and desired:
        report.converge = converge(
            root,
            report.inventory,
            state_dir(root, spec.env),
            extravars=converge_vars(root, spec.env),
            label=f"converge {spec.env}",
            console=console,
        )
    report.seconds = time.monotonic() - started
    return report


@dataclass(frozen=True)
class NodeStatus:
    name: str
    pool: str
    state: str
    ip: str
    image: str


def status(spec: ClusterSpec) -> list[NodeStatus]:
    """Every node of the spec and every container of the cluster, with its state."""
    require_docker_provider(spec)
    client = docker_client()
    existing = cluster_containers(client, spec)
    addresses = node_addresses(client, spec)
    rows = []
    wanted = {n.name: n for n in spec.nodes}
    for name in sorted(set(wanted) | set(existing)):
        c = existing.get(name)
        pool = wanted[name].pool if name in wanted else c.labels.get(LABEL_POOL, "?")
        if c is None:
            rows.append(NodeStatus(name, pool, "missing", "-", "-"))
            continue
        state = c.status if name in wanted else f"{c.status} (not in spec)"
        image = (c.image.tags or [c.image.short_id])[0] if c.image else "?"
        rows.append(
            NodeStatus(name, pool, state, addresses.get(name, {}).get("privateIp", "-"), image)
        )
    return rows


def down(
    spec: ClusterSpec, root: Path, purge: bool = False, console: Console | None = None
) -> list[str]:
    """Remove the cluster's containers and network; the shared volume too with purge."""
    require_docker_provider(spec)
    console = console or Console(stderr=True)
    client = docker_client()
    removed = []
    for name, c in sorted(cluster_containers(client, spec).items()):
        c.remove(force=True)
        removed.append(name)
        console.print(f"  node {name}: removed")
    try:
        client.networks.get(network_name(spec)).remove()
        console.print(f"  network {network_name(spec)}: removed")
    except docker.errors.NotFound:
        pass
    if purge:
        try:
            client.volumes.get(volume_name(spec)).remove(force=True)
            console.print(f"  volume {volume_name(spec)}: removed (shared data deleted)")
        except docker.errors.NotFound:
            pass
        shutil.rmtree(root / STATE_DIRNAME / spec.env, ignore_errors=True)
        inventory_path(root, spec.env).unlink(missing_ok=True)
    else:
        console.print(f"  volume {volume_name(spec)}: kept (use --purge to delete shared data)")
    return removed
