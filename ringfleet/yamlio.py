"""Strict YAML reading: syntax errors and duplicate keys become one-line errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ringfleet.errors import RingfleetError


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys, which YAML would otherwise silently merge."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[object] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            mark = key_node.start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", mark
            )
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping
)


def read_yaml(path: Path, display: str | None = None) -> Any:
    """Read one YAML document; any problem is a RingfleetError naming the file."""
    where = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise RingfleetError(where, "no such file") from None
    except IsADirectoryError:
        raise RingfleetError(where, "is a directory, expected a YAML file") from None
    except UnicodeDecodeError:
        raise RingfleetError(where, "not UTF-8 text") from None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        pos = f"{mark.line + 1}:{mark.column + 1}" if mark else "?"
        problem = exc.problem or exc.context or "invalid YAML"
        raise RingfleetError(f"{where}:{pos}", f"invalid YAML: {problem}") from None
    except yaml.YAMLError as exc:
        raise RingfleetError(where, f"invalid YAML: {exc}".splitlines()[0]) from None
