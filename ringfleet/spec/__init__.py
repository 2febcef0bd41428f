"""The typed cluster spec, read from `Pulumi.<env>.yaml` under `ringfleet:cluster`.

`pulumi up -s ENV` and `ringfleet VERB ENV` read the same file, so there is
exactly one description of each environment. The model is in `spec.model`, the
derived view (pools' cores, slots, nodes) in `spec.resolved`, the cross-field rules
in `spec.checks`; each provider checks its own fields (ringfleet.providers).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pydantic import ValidationError

from ringfleet.errors import RingfleetError
from ringfleet.pydantic_errors import to_ringfleet_error
from ringfleet.safetext import refuse_control
from ringfleet.spec.checks import (
    HOSTNAME_PATTERN,
    INTERFACE_PATTERN,
    WIDEST_ADMIN_PREFIX,
    check_cluster,
)
from ringfleet.spec.model import (
    AbsPath,
    Accelerator,
    Cluster,
    Name,
    Network,
    Pool,
    Size,
    Slurm,
    Software,
    Ssh,
    StaticHost,
    Storage,
    Strict,
    Version,
    size_bytes,
)
from ringfleet.spec.resolved import ClusterSpec, Node, ResolvedPool, resolve_pool
from ringfleet.yamlio import read_yaml

__all__ = [
    "CONFIG_KEY",
    "ENV_PATTERN",
    "HOSTNAME_PATTERN",
    "INTERFACE_PATTERN",
    "WIDEST_ADMIN_PREFIX",
    "AbsPath",
    "Accelerator",
    "Cluster",
    "ClusterSpec",
    "Name",
    "Network",
    "Node",
    "Pool",
    "ResolvedPool",
    "Size",
    "Slurm",
    "Software",
    "Ssh",
    "StaticHost",
    "Storage",
    "Strict",
    "Version",
    "check_cluster",
    "cluster_from_mapping",
    "known_envs",
    "load_spec",
    "load_spec_file",
    "project_root",
    "resolve_pool",
    "size_bytes",
    "spec_path",
]

CONFIG_KEY = "ringfleet:cluster"
ENV_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def project_root() -> Path:
    """The ringfleet project directory: $RINGFLEET_ROOT, else the nearest Pulumi.yaml upward."""
    env = os.environ.get("RINGFLEET_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for cand in (here, *here.parents):
        if (cand / "Pulumi.yaml").is_file():
            return cand
    return Path(__file__).resolve().parent.parent.parent


def spec_path(env: str, root: Path | None = None) -> Path:
    return (root or project_root()) / f"Pulumi.{env}.yaml"


def known_envs(root: Path | None = None) -> list[str]:
    base = root or project_root()
    return sorted(p.name[len("Pulumi."):-len(".yaml")] for p in base.glob("Pulumi.*.yaml"))


def load_spec(env: str, root: Path | None = None) -> ClusterSpec:
    """Read and validate `Pulumi.<env>.yaml`; every problem is a one-line RingfleetError."""
    if not ENV_PATTERN.fullmatch(env):
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
    refuse_control(raw, display, "cluster")
    try:
        cluster = Cluster.model_validate(raw)
    except ValidationError as exc:
        raise to_ringfleet_error(exc, display, "cluster", Cluster) from None
    check_cluster(cluster, display, path.parent)
    return ClusterSpec(cluster, env, path, display)


def cluster_from_mapping(raw: dict, display: str = "<spec>", env: str = "inline") -> ClusterSpec:
    """Validate a spec already parsed (Pulumi program, tests)."""
    refuse_control(raw, display, "cluster")
    try:
        cluster = Cluster.model_validate(raw)
    except ValidationError as exc:
        raise to_ringfleet_error(exc, display, "cluster", Cluster) from None
    check_cluster(cluster, display)
    return ClusterSpec(cluster, env, Path(display), display)
