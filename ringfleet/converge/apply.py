"""Outputs -> inventory -> converge: the one sequence every way of making nodes ends with.

The docker cluster's `up`, the aws and static `up`, and the node-image bake all hand
their stack outputs here. What differs is said by arguments: where the inventory goes
(the env's, or a bake's own), and a `plan` that may narrow the converge to some nodes
and tags (the docker cluster's fingerprints) or skip it when nothing changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringfleet import paths
from ringfleet.converge.ansible import ConvergeResult
from ringfleet.converge.ansible import converge as run_converge
from ringfleet.converge.inventory import load_outputs, render_inventory, write_inventory_file

if TYPE_CHECKING:
    from rich.console import Console


@dataclass(frozen=True)
class ConvergePlan:
    """What to converge: all of site.yml on every node unless narrowed."""

    limit: str | None = None
    tags: str | None = None
    label: str | None = None


@dataclass(frozen=True)
class Applied:
    inventory: dict[str, Any]
    path: Path
    result: ConvergeResult | None
    """None when no converge ran (not asked for, or the plan said nothing to do)."""


Plan = Callable[[dict[str, Any]], ConvergePlan | None]
ExtraVars = dict[str, Any] | Callable[[], dict[str, Any]]


def apply(
    root: Path,
    env: str,
    outputs: dict[str, Any],
    *,
    where: str,
    label: str,
    console: Console | None = None,
    converge: bool = True,
    extravars: ExtraVars | None = None,
    plan: Plan | None = None,
    inventory_file: Path | None = None,
    state: Path | None = None,
    on_written: Callable[[dict[str, Any], Path], None] | None = None,
    connection: dict[str, dict[str, Any]] | None = None,
    check: bool = False,
) -> Applied:
    """Render the inventory from `outputs` (errors name `where`), write it, converge.

    `inventory_file` and `state` default to the env's (`inventories/<env>/hosts.yml`,
    `.ringfleet/<env>/`); `extravars` may be a function, called only once the inventory
    is written (it may make keys); `plan` returning None skips the converge;
    `connection` adds per-host connection variables (SSH-reached nodes); `check` runs
    the converge in check mode with diffs (nothing on the nodes changes).
    """
    from ringfleet.state import state_dir

    inventory = render_inventory(outputs, where, connection)
    path = write_inventory_file(inventory_file or paths.inventory_path(root, env), inventory)
    if on_written is not None:
        on_written(inventory, path)
    if not converge:
        return Applied(inventory, path, None)
    chosen = plan(inventory) if plan is not None else ConvergePlan()
    if chosen is None:
        return Applied(inventory, path, None)
    values = extravars() if callable(extravars) else dict(extravars or {})
    result = run_converge(
        root,
        path,
        state if state is not None else state_dir(root, env),
        extravars=values,
        limit=chosen.limit,
        tags=chosen.tags,
        label=chosen.label or label,
        console=console,
        check=check,
    )
    return Applied(inventory, path, result)


def inventory_from_outputs(env: str, outputs_file: Path | None = None) -> dict[str, Any]:
    """The Ansible inventory of ENV from an outputs JSON file, else from its provider
    (the docker cluster's saved outputs, the aws stack's, or a static env's spec)."""
    if outputs_file is not None:
        return render_inventory(load_outputs(outputs_file), str(outputs_file))
    from ringfleet.providers import for_spec
    from ringfleet.spec import load_spec, project_root

    spec = load_spec(env)
    made = for_spec(spec).outputs(project_root())
    return render_inventory(made.values, made.where)
