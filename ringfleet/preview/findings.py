"""What the report's sections share: the findings that decide the exit code, and value cells."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from ringfleet.preview import graph
from ringfleet.preview.markdown import NONE, code


@dataclass
class Findings:
    """What decides the exit code, gathered while the sections are written."""

    flagged: list[str] = field(default_factory=list)
    """Protected or stateful resources replaced or removed."""
    unchecked: list[str] = field(default_factory=list)
    """Envs whose head could not be evaluated, so nothing rules out a replacement."""
    summary: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))


def value(v: Any) -> str:
    """A compared value as a table cell; a side without it shows as `—`."""
    return NONE if v is graph.MISSING else code(v)
