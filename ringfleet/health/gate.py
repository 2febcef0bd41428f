"""The health gate: every placed node is checked, in parallel, before any rank starts.

A node broken before a job starts is otherwise found only when ranks hang or die.
The gate goes through the Node protocol, so it is the same on local containers and
on SSH hosts. Checks, in the order a failure is reported:

  reachable  the node answers a command
  ssh        the job user reaches it from the launch node with strict host keys
  storage    shared storage is mounted, the same as on the launch node, and writable
  horovod    the node venv imports `horovod` (not the TF binding: that takes seconds)
  disk       free space on / and the shared mount is above FREE_DISK_FLOOR_MB
  lock       with a ringfleet.lock, the node's entry as `ringfleet lock` would write it
             has the locked entry's sha256
"""

from __future__ import annotations

import hashlib
import json
import secrets
import shlex
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringfleet import paths
from ringfleet.errors import one_line
from ringfleet.nodes import RUNNING, Node
from ringfleet.spec import ClusterSpec

CHECKS = ("reachable", "ssh", "storage", "horovod", "disk", "lock")
# Below this many MiB free on / or the shared mount a rank may die writing a checkpoint,
# a log or a model; found here it costs nothing.
FREE_DISK_FLOOR_MB = 1024
# The job user's SSH probe: never prompt (BatchMode), never accept an unknown host key
# (what mpirun's ssh would then hang on or refuse), and give up fast on a dead host.
SSH_CONNECT_TIMEOUT = 5
SSH_PROBE_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=yes",
    "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT}",
)  # fmt: skip
# The token every node must read back, under the shared mount (removed after the gate).
HEALTH_DIRNAME = ".ringfleet-health"
# Python the gate runs in the node venv: the core package only, fast to import.
HOROVOD_PROBE = "import horovod"
# Most nodes checked at once: each check is an exec or a short ssh, mostly waiting.
MAX_PARALLEL = 16


@dataclass(frozen=True)
class Failure:
    """One failed check of one node."""

    node: str
    check: str
    detail: str

    @property
    def reason(self) -> str:
        """The run record's reason: `health gate: NODE: CHECK`."""
        return f"health gate: {self.node}: {self.check}"

    def line(self) -> str:
        return f"health gate: {self.node}: {self.check}: {one_line(self.detail)[:300]}"


@dataclass
class GateReport:
    nodes: list[str]
    failures: list[Failure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return not self.failures

    def first_failed_node(self) -> str | None:
        return self.failures[0].node if self.failures else None


def _fail(node: str, check: str, detail: str) -> Failure:
    return Failure(node, check, detail.strip() or "failed")


def check_reachable(node: Node) -> Failure | None:
    state = node.state()
    if state != RUNNING:
        return _fail(node.name, "reachable", f"node is {state}")
    code, out = node.run(["true"], check=False)
    return None if code == 0 else _fail(node.name, "reachable", f"`true` exited {code}: {out}")


def ssh_probe_argv(target: str, port: int) -> list[str]:
    """What the launch node runs as the job user to reach `target`, as mpirun's ssh would."""
    return ["ssh", *SSH_PROBE_OPTIONS, "-p", str(port), target, "true"]


def check_ssh(launch: Node, target: str, user: str, port: int) -> Failure | None:
    code, out = launch.run(ssh_probe_argv(target, port), user=user, check=False)
    if code == 0:
        return None
    return _fail(target, "ssh", f"{user}@{launch.name} -> {target} exited {code}: {out[-200:]}")


def storage_script(mount: str, token_path: str, token: str, node: str) -> str:
    m, t = shlex.quote(mount), shlex.quote(token_path)
    mine = shlex.quote(f"{token_path}.{node}")
    return (
        f"mountpoint -q {m} || {{ echo 'shared storage {mount} is not mounted'; exit 1; }}; "
        f'[ "$(cat {t} 2>/dev/null)" = {shlex.quote(token)} ] || '
        f"{{ echo 'the launch node token is not in {mount} here: not the same storage'; "
        "exit 1; }; "
        f"echo ok > {mine} 2>/dev/null && rm -f {mine} || "
        f"{{ echo 'not writable by '$(id -un); exit 1; }}"
    )


def check_storage(node: Node, user: str, mount: str, token_path: str, token: str) -> Failure | None:
    script = storage_script(mount, token_path, token, node.name)
    code, out = node.run(["/bin/sh", "-c", script], user=user, check=False)
    return None if code == 0 else _fail(node.name, "storage", out)


def check_horovod(node: Node, user: str, venv: str) -> Failure | None:
    code, out = node.run([f"{venv}/bin/python", "-c", HOROVOD_PROBE], user=user, check=False)
    return None if code == 0 else _fail(node.name, "horovod", f"{HOROVOD_PROBE}: {out[-200:]}")


def parse_df(text: str) -> dict[str, int]:
    """MiB available per mount point, from `df -Pk` output."""
    free = {}
    for line in text.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 6 and cols[3].isdigit():
            free[cols[5]] = int(cols[3]) // 1024
    return free


def check_disk(node: Node, mount: str, floor_mb: int = FREE_DISK_FLOOR_MB) -> Failure | None:
    code, out = node.run(["df", "-Pk", "/", mount], check=False)
    if code != 0:
        return _fail(node.name, "disk", f"df exited {code}: {out}")
    low = [f"{where} {mb} MiB" for where, mb in sorted(parse_df(out).items()) if mb < floor_mb]
    if low:
        return _fail(node.name, "disk", f"free below {floor_mb} MiB: {', '.join(low)}")
    return None


def entry_sha256(entry: dict[str, Any]) -> str:
    """A lock entry's sha256, over its canonical JSON (the same for YAML-read and fresh)."""
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()


def lock_mismatch(locked: dict[str, Any], found: dict[str, Any]) -> str | None:
    """None when the entries agree; else their digests and the first item that differs."""
    from ringfleet.checks.lock import ABSENT, entry_items

    if entry_sha256(locked) == entry_sha256(found):
        return None
    want, have = entry_items(locked), entry_items(found)
    diff = sorted(k for k in want.keys() | have.keys() if want.get(k) != have.get(k))
    first = (
        f"; first: {diff[0]} {want.get(diff[0], ABSENT)} -> {have.get(diff[0], ABSENT)}"
        if diff
        else ""
    )
    return (
        f"entry sha256 {entry_sha256(found)[:12]} != locked {entry_sha256(locked)[:12]} "
        f"({len(diff)} item(s) differ{first})"
    )


def check_lock(node: Node, pool: str, lock: dict[str, Any] | None) -> Failure | None:
    from ringfleet.checks.lock import collect, pool_entry

    entry = ((lock or {}).get("pools") or {}).get(pool)
    if entry is None:
        return None
    venv = (entry.get("python") or {}).get("venv") or paths.NODE_VENV
    mismatch = lock_mismatch(entry, pool_entry(collect(node, pool, venv), venv))
    return None if mismatch is None else _fail(node.name, "lock", mismatch)


def _guard(node: str, check: str, probe: Callable[[], Failure | None]) -> Failure | None:
    """A check that raises (a node gone mid-check, a broken exec) fails that check."""
    try:
        return probe()
    except Exception as exc:  # noqa: BLE001 - any error is this node's failure, named
        return _fail(node, check, f"{type(exc).__name__}: {exc}")


def _node_checks(
    spec: ClusterSpec, nodes: dict[str, Node], name: str, launch: str,
    token: tuple[str, str] | None, lock: dict[str, Any] | None,
) -> list[Failure]:  # fmt: skip
    node, user, mount = nodes[name], spec.cluster.ssh.user, spec.cluster.storage.mount
    pools = {n.name: n.pool for n in spec.nodes}
    probes: list[tuple[str, Callable[[], Failure | None]]] = []
    if name != launch:
        port = spec.cluster.ssh.port
        probes.append(("ssh", lambda: check_ssh(nodes[launch], name, user, port)))
    if token is not None:
        path, value = token
        probes.append(("storage", lambda: check_storage(node, user, mount, path, value)))
    probes += [
        ("horovod", lambda: check_horovod(node, user, paths.NODE_VENV)),
        ("disk", lambda: check_disk(node, mount)),
        ("lock", lambda: check_lock(node, pools.get(name, ""), lock)),
    ]
    return [f for check, probe in probes if (f := _guard(name, check, probe))]


Token = tuple[str, str]
"""The token file's path on shared storage, and its content."""


def _write_token(launch: Node, user: str, mount: str) -> tuple[Token | None, Failure | None]:
    """The launch node writes a random token on shared storage, as the job user."""
    token = secrets.token_hex(8)
    folder = f"{mount.rstrip('/')}/{HEALTH_DIRNAME}"
    path = f"{folder}/{token}"
    script = f"mkdir -p {shlex.quote(folder)} && echo {token} > {shlex.quote(path)}"
    code, out = launch.run(["/bin/sh", "-c", script], user=user, check=False)
    if code != 0:
        return None, _fail(launch.name, "storage", f"cannot write {path} as {user}: {out}")
    return (path, token), None


def run_gate(
    spec: ClusterSpec, nodes: dict[str, Node], launch: str, lock: dict[str, Any] | None = None
) -> GateReport:
    """Check `nodes` (the placed ones; `launch` among them) in parallel; failures in node order.

    `lock` is the env's ringfleet.lock as read (None: no lock, no lock check).
    """
    started = time.monotonic()
    names = list(nodes)
    report = GateReport(names)
    user, mount = spec.cluster.ssh.user, spec.cluster.storage.mount
    workers = max(1, min(MAX_PARALLEL, len(names)))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        reach = dict(zip(names, pool.map(
            lambda n: _guard(n, "reachable", lambda: check_reachable(nodes[n])), names
        ), strict=True))  # fmt: skip
        report.failures += [f for f in reach.values() if f]
        alive = [n for n in names if reach[n] is None]
        token = failed = None
        if launch in alive:
            token, failed = _write_token(nodes[launch], user, mount)
        else:
            # Without the launch node nothing else can be probed from it.
            alive = []
        if failed:
            report.failures.append(failed)
        found = pool.map(lambda n: _node_checks(spec, nodes, n, launch, token, lock), alive)
        report.failures += [f for per_node in found for f in per_node]
    if token is not None:
        nodes[launch].run(["rm", "-f", token[0]], user=user, check=False)
    order = {n: i for i, n in enumerate(names)}
    report.failures.sort(key=lambda f: (order.get(f.node, len(order)), CHECKS.index(f.check)))
    report.seconds = time.monotonic() - started
    return report


def read_env_lock(root: Path, env: str) -> dict[str, Any] | None:
    """The env's ringfleet.lock when there is one (a broken lock is a one-line error)."""
    from ringfleet.checks.lock import read_lock

    path = paths.lock_path(root, env)
    return read_lock(path)


def say_gate(report: GateReport, say: Callable[..., None]) -> GateReport:
    """One line per failure, then the verdict and the gate's time; returns the report."""
    for failure in report.failures:
        say(failure.line(), markup=False, highlight=False)
    verdict = "passed" if report.passed else "failed; no rank started"
    say(f"health gate: {verdict} in {report.seconds:.1f} s", markup=False, highlight=False)
    return report
