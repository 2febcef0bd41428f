"""Converge nodes with `site.yml` through ansible-runner, with live progress.

The same call converges a running cluster and bakes a node image; only the
inventory and the extra variables differ.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from ringfleet.errors import RuntimeFailure

SITE_PLAYBOOK = "site.yml"
# A Docker exec now and then returns no output under load (seen here as the docker_api
# connection's "Error while determining user and group ID ... Got value: b''"), which
# Ansible reports as an unreachable host. One more run of the idempotent play is cheap.
CONVERGE_ATTEMPTS = 2
# The tag of every role task that depends on the node's identity or its peers (host
# keys, known_hosts, the job user's keys, the shared mount); the rest is the image part.
NODE_PART_TAG = "ringfleet_node"


@dataclass
class ConvergeResult:
    """Per-host counts from Ansible's final stats, and every failure seen."""

    status: str
    rc: int
    seconds: float
    changed: dict[str, int] = field(default_factory=dict)
    ok: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def total_changed(self) -> int:
        return sum(self.changed.values())


class _Progress:
    """Turn runner events into a status line and permanent lines for plays and failures."""

    def __init__(self, console: Console, label: str):
        self.console = console
        self.label = label
        self.play = ""
        self.task = ""
        self.counts: Counter[str] = Counter()
        self.failures: list[str] = []
        self.unreachable: set[str] = set()
        self.failed: set[str] = set()
        self.stats: dict[str, Any] = {}
        self.status = console.status(f"{label}: starting")

    def line(self) -> str:
        c = self.counts
        return (
            f"{self.label}: [bold]{self.play}[/] / {self.task}  "
            f"ok={c['ok']} changed={c['changed']} failed={c['failed']}"
        )

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        if kind == "playbook_on_play_start":
            self.play = data.get("play", "")
            self.console.print(f"  play: {self.play}", highlight=False)
        elif kind == "playbook_on_task_start":
            self.task = data.get("task", "")
        elif kind == "runner_on_ok":
            self.counts["changed" if data.get("res", {}).get("changed") else "ok"] += 1
        elif kind in ("runner_on_failed", "runner_on_unreachable"):
            if kind == "runner_on_failed" and data.get("ignore_errors"):
                return True
            self.counts["failed"] += 1
            (self.unreachable if kind == "runner_on_unreachable" else self.failed).add(
                str(data.get("host"))
            )
            res = data.get("res", {})
            msg = str(res.get("msg") or res.get("stderr") or res.get("reason") or "failed")
            msg = " ".join(msg.split())[:300]
            text = f"{data.get('host')}: task '{data.get('task')}': {msg}"
            self.failures.append(text)
            self.console.print(f"  [red]failed[/] {text}", highlight=False)
        elif kind == "playbook_on_stats":
            self.stats = data
        self.status.update(self.line())
        return True


HOST_KEY_CHECKING = "ANSIBLE_HOST_KEY_CHECKING"


def ansible_env(root: Path) -> dict[str, str]:
    """Environment for ansible-playbook: our ansible.cfg and this venv's executables."""
    bindir = str(Path(sys.executable).parent)
    return {
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(root / "roles"),
        "ANSIBLE_FORCE_COLOR": "0",
        "ANSIBLE_NOCOLOR": "1",
        # ansible-runner turns host key checking off unless told otherwise, and Ansible
        # then puts `-o StrictHostKeyChecking=no` before the inventory's own ssh options;
        # ssh keeps the first value it reads, so the known_hosts of the spec would not bind.
        HOST_KEY_CHECKING: "True",
        "PATH": bindir + os.pathsep + os.environ.get("PATH", ""),
    }


# Ansible's check mode, showing what each task would change.
CHECK_ARGS = "--check --diff"


def converge(
    root: Path,
    inventory: Path,
    state_dir: Path,
    *,
    extravars: dict[str, Any] | None = None,
    limit: str | None = None,
    tags: str | None = None,
    label: str = "converge",
    console: Console | None = None,
    timeout: int = 3600,
    check: bool = False,
) -> ConvergeResult:
    """Run site.yml against `inventory`; raise RingfleetError naming host and task on failure.

    `check` runs it in Ansible's check mode with diffs: nothing on the nodes changes,
    and `changed` counts what a real run would change.

    `tags` selects part of the roles: NODE_PART_TAG runs only the node part (what depends
    on a node's identity or its peers), for nodes made from the baked image.
    """
    import ansible_runner

    console = console or Console(stderr=True)
    private = state_dir / "runner"
    if private.exists():
        # Artifacts of earlier runs are not needed and would grow without end.
        shutil.rmtree(private / "artifacts", ignore_errors=True)
    private.mkdir(parents=True, exist_ok=True)
    env = ansible_env(root)
    # ansible-runner finds ansible-playbook on this process's PATH.
    os.environ["PATH"] = env["PATH"]
    started = time.monotonic()
    for attempt in range(1, CONVERGE_ATTEMPTS + 1):
        progress = _Progress(console, label)
        with progress.status:
            result = ansible_runner.run(
                private_data_dir=str(private),
                playbook=str(root / SITE_PLAYBOOK),
                inventory=str(inventory),
                extravars=extravars or {},
                limit=limit,
                tags=tags,
                cmdline=CHECK_ARGS if check else None,
                envvars=env,
                event_handler=progress,
                quiet=True,
                timeout=timeout,
                suppress_env_files=True,
            )
        # Only a run whose every failure is a lost connection is tried again: the roles
        # are idempotent, and a task that failed on its own would fail the same way.
        if result.status == "successful" or progress.failed or not progress.unreachable:
            break
        if attempt < CONVERGE_ATTEMPTS:
            console.print(
                f"  {label}: {', '.join(sorted(progress.unreachable))} unreachable; "
                f"converging once more (attempt {attempt + 1} of {CONVERGE_ATTEMPTS})",
                highlight=False,
            )
    seconds = time.monotonic() - started
    stats = progress.stats or (result.stats or {})
    outcome = ConvergeResult(
        status=result.status,
        rc=result.rc,
        seconds=seconds,
        changed=dict(stats.get("changed", {})),
        ok=dict(stats.get("ok", {})),
        failures=progress.failures,
    )
    if result.status != "successful":
        first = progress.failures[0] if progress.failures else _tail(result)
        raise RuntimeFailure(label, f"Ansible failed ({result.status})", first)
    console.print(
        f"  {label}: ok in {seconds:.0f} s, changed={outcome.total_changed} "
        f"({', '.join(f'{h}={n}' for h, n in sorted(outcome.changed.items())) or 'none'})",
        highlight=False,
    )
    return outcome


def _tail(result: Any) -> str:
    try:
        lines = result.stdout.read().strip().splitlines()
    except Exception:  # noqa: BLE001 - best effort for an error message
        return "no output"
    return lines[-1] if lines else "no output"
