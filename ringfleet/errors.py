"""User-facing errors: one line, naming where and what.

Bad input (a spec, a job, a file, a missing tool) is a RingfleetError and exits 2;
something that failed while running against machines (a node, Pulumi, Ansible, an
image bake) is a RuntimeFailure and exits 3, so a script can tell "fix your input"
from "look at the cluster" without reading the message.
"""

from __future__ import annotations

import re

USAGE_EXIT = 2
RUNTIME_EXIT = 3
# C0 controls, DEL and the Unicode line separators: any of them would break the one line.
_LINE_BREAKERS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")


class RingfleetError(Exception):
    """An error caused by the user's input or environment, shown as one line."""

    exit_code = USAGE_EXIT

    def __init__(self, where: str, what: str, got: object = None, *, show_got: bool = False):
        self.where = where
        self.what = what
        self.got = got
        self.show_got = show_got or got is not None
        super().__init__(self.line())

    def line(self) -> str:
        text = f"ringfleet: error: {one_line(self.where)}: {one_line(self.what)}"
        if self.show_got:
            text += f" (got {format_got(self.got)})"
        return text


class RuntimeFailure(RingfleetError):
    """A step that failed on the machines (node, Pulumi, Ansible, bake): `where` names
    the node or the step; the same one-line form as input errors, exit code 3."""

    exit_code = RUNTIME_EXIT


def one_line(text: str) -> str:
    """Control characters as escapes (a newline as \\n), so a message stays one line."""
    return _LINE_BREAKERS.sub(lambda m: repr(m.group())[1:-1], str(text))


def format_got(value: object) -> str:
    """Render an offending value briefly, so the error stays on one line."""
    if isinstance(value, str):
        text = repr(value)
    elif value is None:
        text = "nothing"
    else:
        text = repr(value)
    text = one_line(text)
    return text if len(text) <= 80 else text[:77] + "..."


def dotted(loc: tuple[object, ...] | list[object], root: str = "") -> str:
    """Turn a pydantic location tuple into `root.pools[1].count`."""
    out = root
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out
