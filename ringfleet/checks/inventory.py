"""Where the checks find an env's nodes: its rendered inventory.

`verify` and `lock` both start here, so neither imports the other.
"""

from __future__ import annotations

from pathlib import Path

from ringfleet.checks.suite.targets import Inventory, read_inventory
from ringfleet.converge.inventory import inventory_path
from ringfleet.errors import RingfleetError


def rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def require_inventory(root: Path, env: str) -> Path:
    path = inventory_path(root, env)
    if not path.is_file():
        raise RingfleetError(
            rel(path, root),
            f"no inventory; run `ringfleet up {env}` or `ringfleet inventory {env} --write`",
            str(path),
        )
    return path


def load_inventory(root: Path, env: str) -> Inventory:
    path = require_inventory(root, env)
    return read_inventory(path, rel(path, root))
