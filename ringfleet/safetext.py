"""Text that reaches shell scripts, hostfiles, YAML and one-line errors.

Spec and job values end up inside launch scripts, comments, hostfiles and
manifests. Quoting handles shell metacharacters; control characters are refused
at the door instead, because a newline ends a comment, adds a hostfile line or
starts a YAML document whatever the quoting of the line it was meant for.
"""

from __future__ import annotations

import re
from typing import Any

from ringfleet.errors import RingfleetError, dotted

# C0 controls (NUL, TAB, LF, CR, ESC, ...) and DEL.
CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
COMMENT_PREFIX = "# "


def find_control(data: Any, loc: tuple[object, ...] = ()) -> tuple[tuple[object, ...], str] | None:
    """The location and text of the first string (key or value) holding a control character."""
    if isinstance(data, str):
        return (loc, data) if CONTROL_CHARS.search(data) else None
    if isinstance(data, dict):
        for key, value in data.items():
            if isinstance(key, str) and CONTROL_CHARS.search(key):
                return (*loc, key), key
            found = find_control(value, (*loc, key))
            if found:
                return found
    if isinstance(data, list):
        for i, value in enumerate(data):
            found = find_control(value, (*loc, i))
            if found:
                return found
    return None


def refuse_control(data: Any, display: str, root: str) -> None:
    """One-line error naming the file and field of the first control character found."""
    found = find_control(data)
    if found:
        loc, text = found
        raise RingfleetError(
            f"{display}: {dotted(loc, root)}",
            "must not contain control characters (newline, carriage return, tab, NUL, ...)",
            text,
        )


def comment(text: str) -> str:
    """Every line of `text` as a shell/YAML comment line: a newline cannot end the comment."""
    lines = str(text).split("\n")
    return "\n".join(COMMENT_PREFIX + CONTROL_CHARS.sub("?", line) for line in lines)
