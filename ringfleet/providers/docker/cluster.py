"""The local cluster: Docker containers that behave like hosts (sshd, own IP, shared volume)."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
import docker.errors
import docker.types
from rich.console import Console

from ringfleet import paths
from ringfleet.converge.ansible import NODE_PART_TAG, ConvergeResult
from ringfleet.converge.apply import ConvergePlan, apply
from ringfleet.errors import RingfleetError
from ringfleet.files import write_atomic
from ringfleet.providers import NodeStatus
from ringfleet.providers.docker.container import (
    LABEL_CLUSTER,
    LABEL_DEFINITION_HASH,
    LABEL_NODE,
    LABEL_POOL,
    ContainerDef,
    container_definitions,
    network_name,
    volume_name,
)
from ringfleet.providers.docker.engine import docker_client, has_nvidia_runtime
from ringfleet.providers.docker.images import ensure_node_image, node_inputs_digest
from ringfleet.providers.docker.login import connection_vars as login_vars
from ringfleet.providers.outputs import static_outputs
from ringfleet.spec import ClusterSpec
from ringfleet.state import converge_vars, state_dir, write_outputs

# Shown in `status` and stored on the container so a later `up` can say what changed.
LABEL_DEFINITION = "ringfleet.definition"
# The public host keys a node's peers must know; read with one exec per node.
HOST_KEYS_GLOB = "/etc/ssh/ssh_host_*_key.pub"
# How `up` converged: everything, only the node part, or nothing.
CONVERGE_FULL = "full"
CONVERGE_NODE_PART = "node part"
CONVERGE_NONE = "nothing changed"


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
    mode: str = ""
    """CONVERGE_FULL, CONVERGE_NODE_PART or CONVERGE_NONE; empty when not asked to converge."""
    reason: str = ""
    """Why `mode` was chosen, in words for the user."""


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
        "cpus": d.nano_cpus / 1e9 if d.cpuset is None else f"cores {d.cpuset}",
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
        cpuset_cpus=d.cpuset,
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
    spec: ClusterSpec,
    root: Path,
    console: Console | None = None,
    converge_nodes: bool = True,
    force_converge: bool = False,
) -> UpReport:
    """Create or update the local cluster to match the spec, then converge what changed.

    Nodes are made from the baked image, so a converge runs only the node part of the
    roles, on the nodes whose fingerprint differs from their last converge; with every
    node running and every fingerprint unchanged nothing runs at all. `force_converge`
    runs the whole of site.yml on every node (idempotent: changed=0 when nothing drifted).
    """
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
    # A tag is a content hash, so a rebuilt image keeps its tag but gets a new id; a
    # container still on the old id (or on a removed image) is recreated, not reused.
    image_ids = {tag: client.images.get(tag).id for tag in set(images.values()) if tag != "none"}
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
        elif container.attrs.get("Image") != image_ids.get(d.image):
            console.print(f"  node {name}: recreating, its image {d.image} was rebuilt or removed")
            container.remove(force=True)
            _create(client, d)
            report.recreated.append(name)
        elif container.status != "running":
            console.print(f"  node {name}: was {container.status}; starting it")
            container.start()
            report.started.append(name)
        else:
            report.unchanged.append(name)
    addresses = node_addresses(client, spec)
    outputs = static_outputs(spec, addresses)
    write_outputs(root, spec.env, outputs)
    converging = converge_nodes and bool(desired)
    # Once sshd answers, Ansible reaches the nodes over SSH (login.py says why).
    connection = (
        login_vars(
            root,
            client,
            spec,
            network_name(spec),
            {n: a["privateIp"] for n, a in addresses.items() if n in desired},
        )
        if converging
        else {}
    )
    # Every local node is made from its pool's baked image: the converge checks it is.
    extravars = (
        {
            **converge_vars(root, spec.env, slurm=spec.slurm_controller is not None),
            "ringfleet_node_images": images,
        }
        if converging
        else {}
    )

    def plan(inventory: dict) -> ConvergePlan | None:
        return _plan(spec, root, client, inventory, extravars, report, console, force_converge)

    applied = apply(
        root,
        spec.env,
        outputs,
        where=spec.display,
        label=f"converge {spec.env}",
        console=console,
        converge=converging,
        extravars=extravars,
        plan=plan,
        connection=connection,
    )
    report.inventory = applied.path
    if applied.result is not None:
        report.converge = applied.result
        write_fingerprints(
            root,
            spec.env,
            node_fingerprints(root, client, spec, applied.inventory, extravars),
        )
    report.seconds = time.monotonic() - started
    return report


def _plan(spec, root, client, inventory, extravars, report, console, force: bool):
    """Which nodes need a converge (all of site.yml on all with `force`); None for none.

    Says why on the console and forgets the fingerprints of the nodes it picks.
    """
    nodes = sorted(n.name for n in spec.nodes)
    recorded = read_fingerprints(root, spec.env)
    current = node_fingerprints(root, client, spec, inventory, extravars)
    touched = set(report.created + report.recreated + report.started)
    stale = {n: touched_or_changed(n, touched, recorded.get(n), current[n]) for n in nodes}
    stale = {n: why for n, why in stale.items() if why}
    tags = limit = None
    if force:
        report.mode, report.reason = CONVERGE_FULL, "asked for with --converge"
    elif not stale:
        report.mode = CONVERGE_NONE
        report.reason = (
            f"all {len(nodes)} nodes running and each node's fingerprint (roles, inventory "
            "vars, image, peers' host keys) matches its last converge"
        )
        console.print(f"  nothing changed: {report.reason}", highlight=False)
        return None
    else:
        report.mode, tags, limit = CONVERGE_NODE_PART, NODE_PART_TAG, ",".join(sorted(stale))
        report.reason = "; ".join(f"{n}: {why}" for n, why in sorted(stale.items()))
    console.print(f"  converge ({report.mode}): {report.reason}", highlight=False)
    # Until this converge succeeds, the nodes it runs on have no valid fingerprint: a
    # failed or interrupted run must not leave one that makes the next `up` skip them.
    kept = {} if force else {n: fp for n, fp in recorded.items() if n not in stale}
    write_fingerprints(root, spec.env, kept)
    return ConvergePlan(limit=limit, tags=tags, label=f"converge {spec.env} ({report.mode})")


def touched_or_changed(node: str, touched: set[str], recorded: dict | None, now: dict) -> str:
    """Why `node` must be converged, or "" when its last converge still holds."""
    if node in touched:
        return "container created or started"
    if recorded is None:
        return "never converged"
    changed = [part for part, digest in now.items() if recorded.get(part) != digest]
    return f"{', '.join(changed)} changed" if changed else ""


def _digest(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def _host_vars(inventory: dict, node: str) -> dict:
    """The variables Ansible sees for `node`: all vars, its pool group's, its own."""
    top = inventory["all"]
    merged = dict(top.get("vars", {}))
    for group in top.get("children", {}).values():
        if node in (group.get("hosts") or {}):
            merged.update(group.get("vars", {}))
            merged.update(group["hosts"][node] or {})
    return merged


def _read_host_keys(container) -> str:
    """The node's public host keys, "" when it has none (or is not running)."""
    try:
        code, out = container.exec_run(["/bin/sh", "-c", f"cat {HOST_KEYS_GLOB}"])
    except docker.errors.APIError:
        return ""
    return out.decode(errors="replace").strip() if code == 0 else ""


def node_fingerprints(root, client, spec, inventory, extravars) -> dict[str, dict[str, str]]:
    """Per node, a digest of each thing its converge depends on."""
    containers = cluster_containers(client, spec)
    keys = {n: _read_host_keys(c) for n, c in sorted(containers.items())}
    roles = node_inputs_digest(root)
    controller = {
        k: (Path(v).read_text() if k.endswith("_file") and Path(v).is_file() else v)
        for k, v in extravars.items()
    }
    peers = _digest(keys)
    out = {}
    for node in sorted(n.name for n in spec.nodes):
        container = containers.get(node)
        out[node] = {
            "roles": roles,
            "inventory vars": _digest({**_host_vars(inventory, node), **controller}),
            # The id from the container's own record: its image may have been removed.
            "image": container.attrs.get("Image", "") if container is not None else "",
            "container": container.id if container is not None else "",
            "host keys": peers,
        }
    return out


def fingerprints_path(root: Path, env: str) -> Path:
    """Per node, what its last successful converge depended on."""
    state_dir(root, env)
    return paths.fingerprints_path(root, env)


def read_fingerprints(root: Path, env: str) -> dict[str, dict[str, str]]:
    try:
        data = json.loads(fingerprints_path(root, env).read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def write_fingerprints(root: Path, env: str, data: dict[str, dict[str, str]]) -> Path:
    return write_atomic(
        fingerprints_path(root, env), json.dumps(data, indent=2, sort_keys=True) + "\n"
    )


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
        try:
            image = (c.image.tags or [c.image.short_id])[0] if c.image else "?"
        except docker.errors.ImageNotFound:
            image = f"{c.attrs.get('Image', '?')[:19]} (removed)"
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
        shutil.rmtree(paths.env_state_dir(root, spec.env), ignore_errors=True)
        paths.inventory_path(root, spec.env).unlink(missing_ok=True)
    else:
        console.print(f"  volume {volume_name(spec)}: kept (use --purge to delete shared data)")
    return removed
