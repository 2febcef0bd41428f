"""The node lockfile `inventories/<env>/ringfleet.lock`: each pool's software, and drift from it.

A pool's nodes are meant to be identical, so the lock holds one entry per pool:
OS release, kernel, the installed Debian packages and the node venv's Python
packages (each as a digest of the sorted `name=version` lines, the key versions,
and the full sorted list, so a drift names the package). Nothing that must differ
between nodes is recorded: no hostnames, addresses or host keys. Keys are sorted
so a lock diffs line by line in review.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ringfleet.checks.suite.targets import Inventory
from ringfleet.errors import RingfleetError
from ringfleet.files import write_atomic
from ringfleet.nodes import Node
from ringfleet.paths import NODE_VENV, lock_path  # noqa: F401 - callers use lockmod.lock_path

LOCK_VERSION = 1
# The Debian and Python packages a reviewer looks for first; the full lists follow them.
# Debian names are shell patterns, matched without the `:arch` suffix of multi-arch packages.
KEY_DEBIAN_PACKAGES = (
    "libc6",
    "python3",
    "openssh-server",
    "openmpi-bin",
    "libopenmpi-dev",
    "g++",
    "cuda-drivers-*",
    "cuda-toolkit-*",
    "libnccl2",
)
KEY_PYTHON_PACKAGES = (
    "tensorflow",
    "tensorflow-cpu",
    "horovod",
    "numpy",
    "mkl",
    "intel-openmp",
    "protobuf",
    "keras",
    "tensorboard",
    "scikit-learn",
    "pip",
)
# Marks a package a node lacks, in drift rows.
ABSENT = "(absent)"
HELD = "held"
# Files the roles write that define a node's software and are the same on every node
# of a pool: Open MPI's defaults, the thread defaults, the venv's lock and Horovod's
# build record, the Horovod wheel nodes install, and the base image's package record.
# Per-node files (host keys, /etc/hosts, known_hosts, the cluster's SSH keys) are not
# here: they must differ, or differ per cluster. `{venv}` is the pool's node venv.
NODE_FILES = (
    "/etc/openmpi/openmpi-mca-params.conf",
    "/etc/profile.d/ringfleet-*.sh",
    "{venv}/ringfleet-requirements.txt",
    "{venv}/ringfleet-horovod-build.json",
    "/opt/ringfleet/wheels/*.whl",
    "/etc/ringfleet/base-packages.txt",
)
# dpkg's status abbreviation: the second letter is the current state, `i` installed.
_DPKG_FORMAT = r"${db:Status-Abbrev} ${binary:Package}=${Version}\n"


@dataclass(frozen=True)
class NodeFacts:
    """What one node runs, as the lock records it."""

    node: str
    pool: str
    os: str
    debian_version: str
    kernel: str
    debian: dict[str, str]
    python: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)
    """sha256 of each node-independent file the roles write (NODE_FILES)."""
    held: tuple[str, ...] = ()
    """Debian packages held at their version (`apt-mark hold`)."""

    def items(self) -> dict[str, str]:
        """Every comparable item, flat: os, kernel, deb:, pip:, file:<path> and hold:<name>."""
        out = {"os": self.os, "debian_version": self.debian_version, "kernel": self.kernel}
        out.update({f"deb:{k}": v for k, v in self.debian.items()})
        out.update({f"pip:{k}": v for k, v in self.python.items()})
        out.update({f"file:{k}": v for k, v in self.files.items()})
        out.update({f"hold:{k}": HELD for k in self.held})
        return out


@dataclass(frozen=True)
class Drift:
    """One item of one node that differs from its reference (the lock, or the pool's peers)."""

    node: str
    item: str
    locked: str
    found: str
    against: str = "lock"
    """`lock`, or `peers` when the pool has no lock entry and the pool's majority is used."""


def normalize_name(name: str) -> str:
    """PEP 503 names, as pip compares them: `PyYAML` and `pyyaml` are one package."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dpkg_rows(text: str) -> Iterator[tuple[str, str, str]]:
    """(status, name, version) of each `dpkg-query -W` line in _DPKG_FORMAT."""
    for line in text.splitlines():
        status, _, pin = line.strip().partition(" ")
        name, sep, version = pin.strip().partition("=")
        if len(status) >= 2 and sep:
            yield status, name, version


def parse_dpkg(text: str) -> dict[str, str]:
    """`dpkg-query -W` lines of installed packages only (not removed-with-config ones)."""
    packages = {name: version for status, name, version in _dpkg_rows(text) if status[1] == "i"}
    return dict(sorted(packages.items()))


def parse_freeze(text: str) -> dict[str, str]:
    """`pip freeze` lines: `name==version`, or `name @ url` for a package installed from a URL."""
    packages = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "-")):
            continue
        if "==" in line:
            name, _, version = line.partition("==")
        elif " @ " in line:
            name, _, version = line.partition(" @ ")
            version = _wheel_version(name.strip(), version.strip()) or version
        else:
            name, version = line, ""
        packages[normalize_name(name.strip())] = version.strip()
    return dict(sorted(packages.items()))


def parse_held(text: str) -> tuple[str, ...]:
    """Names of installed packages held at their version (`h` wanted state)."""
    return tuple(sorted({name for status, name, _ in _dpkg_rows(text) if status[:2] == "hi"}))


def parse_sha256sum(text: str) -> dict[str, str]:
    """`sha256sum` lines: path -> digest."""
    out = {}
    for line in text.splitlines():
        digest_, sep, path = line.strip().partition("  ")
        if sep and len(digest_) == 64:
            out[path.strip()] = digest_
    return dict(sorted(out.items()))


def _wheel_version(name: str, url: str) -> str | None:
    """The version in a wheel's file name (PEP 427), when `url` is a wheel of `name`.

    Horovod is installed from the wheel the role builds, so pip freeze names its file;
    the lock keeps the version, and the wheel's sha256 is under `files`.
    """
    filename = url.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1]
    parts = filename.removesuffix(".whl").split("-")
    if not filename.endswith(".whl") or len(parts) < 5:
        return None
    if normalize_name(parts[0]) != normalize_name(name):
        return None
    return parts[1]


def parse_os_release(text: str) -> str:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip().strip('"')
    return values.get("PRETTY_NAME") or values.get("NAME") or "unknown"


def collect(node: Node, pool: str, venv: str = NODE_VENV) -> NodeFacts:
    """Read one node's facts: a few read-only commands, as root."""

    def shell(command: str) -> str:
        return node.output(["/bin/sh", "-c", command])

    freeze = shell(
        f"{venv}/bin/python -m pip freeze --all --disable-pip-version-check"
        " --no-python-version-warning"
    )
    dpkg = shell(f"dpkg-query -W -f '{_DPKG_FORMAT}'")
    # Globs that match nothing stay literal and sha256sum skips them (stderr, exit 1).
    paths = " ".join(p.format(venv=venv) for p in NODE_FILES)
    return NodeFacts(
        node=node.name,
        pool=pool,
        os=parse_os_release(shell("cat /etc/os-release")),
        debian_version=shell("cat /etc/debian_version 2>/dev/null || true").strip(),
        kernel=shell("uname -r").strip(),
        debian=parse_dpkg(dpkg),
        python=parse_freeze(freeze),
        files=parse_sha256sum(shell(f"sha256sum {paths} 2>/dev/null || true")),
        held=parse_held(dpkg),
    )


def node_venv(inventory: Inventory, name: str) -> str:
    """The node's venv: the inventory may set it per host (`ringfleet_venv`)."""
    return str(inventory.var(name, "ringfleet_venv") or NODE_VENV)


def collect_all(inventory: Inventory, nodes: dict[str, Node]) -> dict[str, NodeFacts]:
    """Facts of every inventory node, read in parallel: each node answers on its own.

    `nodes` is the provider's node access (`Provider.nodes()`); a node of the
    inventory the provider does not know is a one-line error naming it.
    """
    for name in inventory.hosts():
        if name not in nodes:
            raise RingfleetError(name, "in the inventory but not a node of the spec")
    names = inventory.hosts()
    with ThreadPoolExecutor(max_workers=min(8, len(names)) or 1) as pool:
        futures = {
            n: pool.submit(collect, nodes[n], inventory.pool_of(n), node_venv(inventory, n))
            for n in names
        }
        return {n: f.result() for n, f in sorted(futures.items())}


def digest(packages: dict[str, str]) -> str:
    lines = "".join(f"{k}={v}\n" for k, v in sorted(packages.items()))
    return hashlib.sha256(lines.encode()).hexdigest()


def key_versions(packages: dict[str, str], patterns: Iterable[str]) -> dict[str, str]:
    """The packages matching any pattern (`libc6` also matches `libc6:amd64`)."""
    return {
        name: version
        for name, version in sorted(packages.items())
        if any(fnmatch.fnmatchcase(name.split(":", 1)[0], p) for p in patterns)
    }


def _package_set(packages: dict[str, str], keys: Iterable[str]) -> dict[str, Any]:
    return {
        "count": len(packages),
        "sha256": digest(packages),
        "key": key_versions(packages, keys),
        "packages": dict(sorted(packages.items())),
    }


def pool_entry(facts: NodeFacts, venv: str) -> dict[str, Any]:
    """The lock entry of a pool, from one of its (identical) nodes."""
    return {
        "os": facts.os,
        "debian_version": facts.debian_version,
        "kernel": facts.kernel,
        "debian": _package_set(facts.debian, KEY_DEBIAN_PACKAGES),
        "python": {"venv": venv, **_package_set(facts.python, KEY_PYTHON_PACKAGES)},
        "files": dict(sorted(facts.files.items())),
        "held": sorted(facts.held),
    }


def entry_items(entry: dict[str, Any]) -> dict[str, str]:
    """A lock entry flattened like NodeFacts.items()."""
    out = {k: str(entry.get(k, "")) for k in ("os", "debian_version", "kernel")}
    for prefix, part in (("deb", "debian"), ("pip", "python")):
        for name, version in (entry.get(part, {}).get("packages") or {}).items():
            out[f"{prefix}:{name}"] = str(version)
    out.update({f"file:{k}": str(v) for k, v in (entry.get("files") or {}).items()})
    out.update({f"hold:{k}": HELD for k in entry.get("held") or ()})
    return out


def peer_drift(facts: dict[str, NodeFacts]) -> list[Drift]:
    """Items on which a pool's nodes disagree; the pool's most common value is the reference.

    On a tie the value of the first node (by name) among the tied ones wins, so the
    report is stable; every node that differs from it is listed.
    """
    drifts = []
    by_pool: dict[str, list[NodeFacts]] = {}
    for f in facts.values():
        by_pool.setdefault(f.pool, []).append(f)
    for nodes in by_pool.values():
        nodes = sorted(nodes, key=lambda f: f.node)
        items = [f.items() for f in nodes]
        for item in sorted(set().union(*items)):
            values = [i.get(item, ABSENT) for i in items]
            if len(set(values)) == 1:
                continue
            counts = Counter(values)
            best = max(counts.values())
            reference = next(v for v in values if counts[v] == best)
            drifts.extend(
                Drift(f.node, item, reference, v, "peers")
                for f, v in zip(nodes, values, strict=True)
                if v != reference
            )
    return sorted(drifts, key=lambda d: (d.node, d.item))


def lock_drift(lock: dict[str, Any], facts: dict[str, NodeFacts]) -> list[Drift]:
    """Each node against its pool's lock entry; pools the lock lacks against their peers."""
    pools = lock.get("pools", {})
    unlocked = {n: f for n, f in facts.items() if f.pool not in pools}
    drifts = peer_drift(unlocked)
    for node, f in facts.items():
        if f.pool not in pools:
            continue
        entry = pools[f.pool]
        found = f.items()
        expected = entry_items(entry)
        for part, prefix, have in (("debian", "deb", f.debian), ("python", "pip", f.python)):
            listed = entry.get(part, {}).get("packages")
            if listed is None and entry.get(part, {}).get("sha256") not in (None, digest(have)):
                # A lock trimmed to digests still catches drift, without naming the package.
                drifts.append(Drift(node, f"{prefix}:sha256", entry[part]["sha256"], digest(have)))
            if listed is None:
                found = {k: v for k, v in found.items() if not k.startswith(prefix + ":")}
        for part, prefix in (("files", "file"), ("held", "hold")):
            # A lock written before ringfleet recorded these parts says nothing about them.
            if part not in entry:
                found = {k: v for k, v in found.items() if not k.startswith(prefix + ":")}
        for item in sorted(set(found) | set(expected)):
            locked, have = expected.get(item, ABSENT), found.get(item, ABSENT)
            if have != locked:
                drifts.append(Drift(node, item, locked, have))
    return sorted(drifts, key=lambda d: (d.node, d.item))


def build_lock(
    env: str, facts: dict[str, NodeFacts], venvs: dict[str, str], keep: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The lock of `env` from nodes that agree with their peers (check peer_drift first).

    Pools in `keep` (the previous lock's entries) that have no node now are kept,
    so scaling a pool to zero does not forget what it ran.
    """
    pools: dict[str, Any] = dict(keep or {})
    first: dict[str, NodeFacts] = {}
    for f in sorted(facts.values(), key=lambda f: f.node):
        first.setdefault(f.pool, f)
    for name, f in first.items():
        pools[name] = pool_entry(f, venvs[name])
    return {"version": LOCK_VERSION, "env": env, "pools": dict(sorted(pools.items()))}


@dataclass(frozen=True)
class EnvLock:
    """What `ringfleet lock` reads from an env's nodes, before anything is written."""

    lock: dict[str, Any]
    drifts: list[Drift]
    """Nodes of a pool that disagree; a lock is only written when this is empty."""
    facts: dict[str, NodeFacts]
    pools: dict[str, list[str]]
    kept: list[str]
    """Pools of the previous lock with no node now, whose entries are kept."""


def lock_env(
    root: Path, env: str, nodes: dict[str, Node], previous: dict[str, Any] | None = None
) -> EnvLock:
    """Read every node of `env` (its rendered inventory, reached through `nodes`) and lock it."""
    from ringfleet.checks.inventory import load_inventory

    inv = load_inventory(root, env)
    facts = collect_all(inv, nodes)
    pools = inv.pools()
    venvs = {pool: node_venv(inv, members[0]) for pool, members in pools.items()}
    keep = {p: e for p, e in (previous or {}).get("pools", {}).items() if p not in pools}
    return EnvLock(
        lock=build_lock(env, facts, venvs, keep),
        drifts=peer_drift(facts),
        facts=facts,
        pools=pools,
        kept=sorted(keep),
    )


def dump_lock(lock: dict[str, Any]) -> str:
    env = lock["env"]
    header = (
        f"# Node software of env {env}, per pool; written by `ringfleet lock {env}`.\n"
        f"# `ringfleet verify {env}` reports every node that differs from it.\n"
    )
    body = yaml.safe_dump(
        lock, sort_keys=True, default_flow_style=False, width=1000, allow_unicode=True
    )
    return header + body


def write_lock(path: Path, lock: dict[str, Any]) -> Path:
    return write_atomic(path, dump_lock(lock))


def read_lock(path: Path, display: str | None = None) -> dict[str, Any] | None:
    """The lock at `path`, None when there is none; a malformed lock is a one-line error."""
    display = display or str(path)
    if not path.exists():
        return None
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{display}:{mark.line + 1}" if mark else display
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise RingfleetError(where, f"invalid YAML: {problem}") from None
    except UnicodeDecodeError:
        raise RingfleetError(display, "not UTF-8 text") from None
    if not isinstance(data, dict):
        raise RingfleetError(display, "must be a mapping with version, env and pools", data)
    if data.get("version") != LOCK_VERSION:
        raise RingfleetError(
            f"{display}: version",
            f"unsupported lock version (expected {LOCK_VERSION})",
            data.get("version"),
        )
    pools = data.get("pools")
    if not isinstance(pools, dict):
        raise RingfleetError(
            f"{display}: pools", "must be a mapping of pool name to entry", pools, show_got=True
        )
    for name, entry in pools.items():
        at = f"{display}: pools.{name}"
        if not isinstance(entry, dict):
            raise RingfleetError(at, "must be a mapping", entry)
        for key in ("os", "kernel"):
            if not isinstance(entry.get(key), str):
                raise RingfleetError(
                    f"{at}.{key}", "must be a string", entry.get(key), show_got=True
                )
        for part in ("debian", "python"):
            value = entry.get(part)
            if not isinstance(value, dict):
                raise RingfleetError(f"{at}.{part}", "must be a mapping", value, show_got=True)
            if not isinstance(value.get("sha256"), str):
                raise RingfleetError(
                    f"{at}.{part}.sha256", "must be a string", value.get("sha256"), show_got=True
                )
            listed = value.get("packages")
            if listed is not None and not isinstance(listed, dict):
                raise RingfleetError(f"{at}.{part}.packages", "must be a mapping", listed)
            for package, version in (listed or {}).items():
                if not isinstance(version, str):
                    raise RingfleetError(
                        f"{at}.{part}.packages.{package}", "must be a version string", version,
                        show_got=True,
                    )
        if not isinstance(entry.get("debian_version", ""), str):
            raise RingfleetError(
                f"{at}.debian_version", "must be a string", entry["debian_version"], show_got=True
            )
        files = entry.get("files")
        if files is not None and not (
            isinstance(files, dict) and all(isinstance(v, str) for v in files.values())
        ):
            raise RingfleetError(f"{at}.files", "must be a mapping of path to sha256", files)
        held = entry.get("held")
        if held is not None and not (
            isinstance(held, list) and all(isinstance(h, str) for h in held)
        ):
            raise RingfleetError(f"{at}.held", "must be a list of package names", held)
    return data


def drift_rows(drifts: list[Drift]) -> list[tuple[str, str, str, str]]:
    """(node, item, locked, found); a value from the pool's peers says so."""
    return [
        (d.node, d.item, d.locked if d.against == "lock" else f"{d.locked} (pool peers)", d.found)
        for d in drifts
    ]


def drift_markdown(drifts: list[Drift]) -> str:
    lines = ["| node | item | locked | found |", "|---|---|---|---|"]
    for row in drift_rows(drifts):
        lines.append("| " + " | ".join(_md_cell(c) for c in row) + " |")
    return "\n".join(lines) + "\n"


def _md_cell(text: str) -> str:
    return "`" + text.replace("|", "\\|").replace("`", "'") + "`"
