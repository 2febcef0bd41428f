"""Render the Ansible inventory from stack outputs.

The inventory only reads outputs (see ringfleet.outputs), never the spec or a
stack's internals, so every provider converges the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from ringfleet.errors import RingfleetError
from ringfleet.files import write_atomic
from ringfleet.paths import inventory_path
from ringfleet.providers import outputs as out
from ringfleet.providers import provider_class

# The group the nvidia role's play targets (site.yml).
NVIDIA_GROUP = "nvidia_gpu"
CPU_GROUP = "cpu_nodes"
GPU_GROUP = "gpu_nodes"
NFS_SERVER_GROUP = "nfs_server"
ALL_NODES_GROUP = "ringfleet_nodes"
# Every node of a cluster with `scheduler: slurm`; the slurm role's play targets it.
SLURM_GROUP = "slurm_nodes"


def pool_group(pool: str) -> str:
    """Ansible group names may not contain dashes."""
    return "pool_" + pool.replace("-", "_")


def load_outputs(path: Path) -> dict[str, Any]:
    """Read a `pulumi stack output --json` file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RingfleetError(str(path), "no such file") from None
    except IsADirectoryError:
        raise RingfleetError(str(path), "is a directory, expected a JSON file") from None
    except UnicodeDecodeError:
        raise RingfleetError(str(path), "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        where = f"{path}:{exc.lineno}:{exc.colno}"
        raise RingfleetError(where, f"invalid JSON: {exc.msg}") from None
    if not isinstance(data, dict):
        raise RingfleetError(str(path), "must be a JSON object of stack outputs", data)
    return data


_KIND_WORDS = {dict: "mapping", list: "list", str: "string", int: "integer"}


def _need(data: dict, key: str, where: str, kind: type | tuple[type, ...]) -> Any:
    if key not in data:
        raise RingfleetError(f"{where}: {key}", "required stack output is missing")
    return _typed(data[key], f"{where}: {key}", kind)


def _typed(value: Any, where: str, kind: type | tuple[type, ...]) -> Any:
    """`value` if it has the JSON type the inventory needs, else a one-line error."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        words = " or ".join(_KIND_WORDS.get(k, k.__name__) for k in kinds if k is not type(None))
        if type(None) in kinds:
            words += " or null"
        raise RingfleetError(where, f"must be a {words}", value, show_got=True)
    return value


def _optional(data: dict, key: str, where: str, kind: type) -> Any:
    return _typed(data.get(key), f"{where}.{key}", (kind, type(None)))


SOFTWARE_KEYS = ("profile", "openmpi", "openmpiDebian", "mkl", "tensorflow", "tensorflowPackage",
                 "horovod")  # fmt: skip
GPU_SOFTWARE_KEYS = ("driver", "cuda", "nccl")


def _check_software(software: dict, at: str) -> None:
    keys = SOFTWARE_KEYS + (GPU_SOFTWARE_KEYS if "cuda" in software else ())
    for key in keys:
        _need(software, key, at, str)
    _optional(software, "legacyKeras", at, str)
    _optional(software, "added", at, dict)
    _optional(software, "wheelhouse", at, str)
    _optional(software, "aptRepo", at, str)


def role_vars(software: dict[str, Any]) -> dict[str, Any]:
    """Role variables (prefixed by role) for one pool's software matrix."""
    values = {
        "ringfleet_profile": software["profile"],
        "openmpi_version": software["openmpi"],
        "openmpi_debian_version": software["openmpiDebian"],
        "mkl_version": software["mkl"],
        "tensorflow_version": software["tensorflow"],
        "tensorflow_package": software["tensorflowPackage"],
        "horovod_version": software["horovod"],
    }
    if "legacyKeras" in software:
        values["tensorflow_legacy_keras_version"] = software["legacyKeras"]
    if software.get("added"):
        # An added profile (profiles/<name>.yaml): in the node image, checked by `verify`.
        values["ringfleet_added_profile"] = software["added"]["profile"]
        values["ringfleet_added_pip"] = software["added"]["pip"]
        values["ringfleet_added_apt"] = software["added"]["apt"]
    if software.get("wheelhouse"):
        values["ringfleet_wheelhouse"] = software["wheelhouse"]
    if software.get("aptRepo"):
        values["ringfleet_apt_repo"] = software["aptRepo"]
    if "cuda" in software:
        values.update(
            nvidia_driver_branch=software["driver"],
            nvidia_cuda_version=software["cuda"],
            nvidia_nccl_version=software["nccl"],
            horovod_gpu_operations="NCCL",
        )
    return values


def render_inventory(
    data: dict[str, Any],
    where: str = "stack outputs",
    connection: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The inventory as a dict, ready to dump as YAML.

    `connection`: per host, variables that say how Ansible reaches it beyond the
    provider's `host_vars` (for SSH-reached nodes the key, known_hosts and become,
    from `SshNode.ansible_host_vars()`), so the converge connects as run and verify do.
    """
    connection = connection or {}
    _typed(data, where, dict)
    for key in out.REQUIRED_KEYS:
        if key not in data:
            raise RingfleetError(f"{where}: {key}", "required stack output is missing")
    provider = _need(data, out.OUT_PROVIDER, where, str)
    reach = provider_class(provider, f"{where}: {out.OUT_PROVIDER}")
    pools = _need(data, out.OUT_POOLS, where, dict)
    storage = _need(data, out.OUT_STORAGE, where, dict)
    network = _need(data, out.OUT_NETWORK, where, dict)
    for key in (out.OUT_CLUSTER, out.OUT_ENV, out.OUT_SSH_USER):
        _need(data, key, where, str)
    _need(data, out.OUT_SSH_PORT, where, int)
    for key in ("kind", "mount", "export", "server"):
        _optional(storage, key, f"{where}: {out.OUT_STORAGE}", str)
    _optional(network, "interface", f"{where}: {out.OUT_NETWORK}", str)
    _optional(network, "subnet", f"{where}: {out.OUT_NETWORK}", str)
    scheduler = _scheduler(data, where, pools)

    children: dict[str, Any] = {}
    cpu_groups: dict[str, Any] = {}
    gpu_groups: dict[str, Any] = {}
    nvidia_groups: dict[str, Any] = {}
    nfs_hosts: dict[str, Any] = {}
    for name, pool in sorted(pools.items()):
        at = f"{where}: {out.OUT_POOLS}.{name}"
        _typed(pool, at, dict)
        nodes = _need(pool, "nodes", at, list)
        _need(pool, "slots", at, int)
        _optional(pool, "cores", at, int)
        _optional(pool, "threadsPerRank", at, int)
        _check_software(_need(pool, "software", at, dict), f"{at}.software")
        accelerator = _optional(pool, "accelerator", at, dict)
        hosts: dict[str, Any] = {}
        for i, node in enumerate(nodes):
            named = isinstance(node, dict) and isinstance(node.get("name"), str)
            if not named or not node["name"]:
                raise RingfleetError(f"{at}.nodes[{i}]", "needs a name", node)
            for key in ("privateIp", "publicIp"):
                _optional(node, key, f"{at}.nodes[{i}]", str)
            hv: dict[str, Any] = {
                "ringfleet_pool": name,
                "ringfleet_slots": pool["slots"],
                "ringfleet_accelerator": accelerator,
            }
            # How Ansible reaches the node is the provider's to say (connection, host, user).
            hv.update(reach.host_vars(node, f"{at}.nodes[{i}]"))
            hv.update(connection.get(node["name"], {}))
            if node.get("privateIp"):
                hv["ringfleet_private_ip"] = node["privateIp"]
            hosts[node["name"]] = hv
            if storage.get("kind") == "nfs" and storage.get("server") == node["name"]:
                nfs_hosts[node["name"]] = {}
        group = pool_group(name)
        children[group] = {
            "hosts": hosts,
            "vars": {
                **role_vars(_need(pool, "software", at, dict)),
                "ringfleet_pool_slots": pool["slots"],
                "ringfleet_pool_cores": pool.get("cores"),
                "ringfleet_threads_per_rank": pool.get("threadsPerRank", 1),
                **_pool_memory(scheduler, name),
            },
        }
        if accelerator:
            gpu_groups[group] = {}
            if accelerator.get("vendor") == "nvidia":
                nvidia_groups[group] = {}
        else:
            cpu_groups[group] = {}

    children[CPU_GROUP] = {"children": cpu_groups}
    children[GPU_GROUP] = {"children": gpu_groups}
    children[NVIDIA_GROUP] = {"children": nvidia_groups}
    children[NFS_SERVER_GROUP] = {"hosts": nfs_hosts}
    children[ALL_NODES_GROUP] = {"children": {pool_group(n): {} for n in sorted(pools)}}
    slurm_vars = {}
    if scheduler:
        children[SLURM_GROUP] = {"children": {pool_group(n): {} for n in sorted(pools)}}
        slurm_vars = {
            "ringfleet_scheduler": "slurm",
            "ringfleet_slurm_controller": scheduler["controller"],
        }
    return {
        "all": {
            "vars": {
                "ringfleet_cluster": data[out.OUT_CLUSTER],
                "ringfleet_env": data[out.OUT_ENV],
                "ringfleet_provider": provider,
                "ringfleet_shared_mount": storage.get("mount"),
                "ringfleet_storage_kind": storage.get("kind"),
                "ringfleet_storage_server": storage.get("server"),
                "ringfleet_storage_export": storage.get("export"),
                "ringfleet_interface": network.get("interface"),
                **_by_subnet(network),
                "ringfleet_ssh_user": data[out.OUT_SSH_USER],
                "ringfleet_ssh_port": data[out.OUT_SSH_PORT],
                "ansible_python_interpreter": "/usr/bin/python3",
                **slurm_vars,
            },
            "children": children,
        }
    }


def _scheduler(data: dict[str, Any], where: str, pools: dict[str, Any]) -> dict[str, Any] | None:
    """The `scheduler` output (only with `scheduler: slurm`), checked; None without one."""
    at = f"{where}: {out.OUT_SCHEDULER}"
    scheduler = _optional(data, out.OUT_SCHEDULER, where, dict)
    if scheduler is None:
        return None
    if scheduler.get("kind") != "slurm":
        raise RingfleetError(f"{at}.kind", "must be slurm", scheduler.get("kind"), show_got=True)
    controller = _need(scheduler, "controller", at, str)
    names = {
        n.get("name") for p in pools.values() if isinstance(p, dict)
        for n in p.get("nodes") or [] if isinstance(n, dict)
    }  # fmt: skip
    if controller not in names:
        raise RingfleetError(f"{at}.controller", "not a node of any pool", controller)
    _need(scheduler, "memoryMb", at, dict)
    return scheduler


def _pool_memory(scheduler: dict[str, Any] | None, pool: str) -> dict[str, Any]:
    """With Slurm, the memory the spec gives a pool's nodes (MiB; None: as the node reports)."""
    return {"ringfleet_pool_memory_mb": scheduler["memoryMb"].get(pool)} if scheduler else {}


def _by_subnet(network: dict[str, Any]) -> dict[str, Any]:
    """With no interface named, the roles find each host's by the cluster subnet.

    Only then is the subnet added, so inventories that name an interface stay as they were.
    """
    if network.get("interface"):
        return {}
    return {"ringfleet_subnet": network.get("subnet")}


class _NoAliasDumper(yaml.SafeDumper):
    """Write repeated values out in full: anchors confuse people reading the inventory."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump_inventory(inventory: dict[str, Any]) -> str:
    return "# Rendered by ringfleet from stack outputs; do not edit.\n" + yaml.dump(
        inventory, Dumper=_NoAliasDumper, sort_keys=False, default_flow_style=False
    )


def write_inventory(root: Path, env: str, inventory: dict[str, Any]) -> Path:
    return write_inventory_file(inventory_path(root, env), inventory)


def write_inventory_file(path: Path, inventory: dict[str, Any]) -> Path:
    return write_atomic(path, dump_inventory(inventory))
