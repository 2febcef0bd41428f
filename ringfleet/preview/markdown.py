"""Markdown that a value cannot break: code spans, fences, tables and folded blocks.

Report values come from the repository under review (role variables, task names,
file contents), so any of them may hold backticks, pipes, newlines, `<!--` or
`</details>`. Code spans and fences are made longer than any backtick run inside;
table cells escape pipes; folded-block titles are HTML-escaped.
"""

from __future__ import annotations

import difflib
import html
import json
import re
from typing import Any

# Longer values (user data, scripts) are cut in tables and lists; the diffs hold them whole.
MAX_VALUE = 160
# A cell for a side that has no value.
NONE = "—"


def code(value: Any, cell: bool = True) -> str:
    """An inline code span of `value` on one line; `cell`: safe inside a table cell too."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > MAX_VALUE:
        text = text[: MAX_VALUE - 1] + "…"
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    if cell:
        text = text.replace("|", "\\|")
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def fenced(text: str, lang: str = "") -> str:
    """A fenced block longer than any backtick run in `text`, so nothing inside closes it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    body = text if text.endswith("\n") else text + "\n"
    return f"{fence}{lang}\n{body}{fence}"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def details(title: str, body: list[str]) -> list[str]:
    """A folded block; `title` is plain text (escaped here), `body` Markdown lines."""
    summary = html.escape(" ".join(title.split()))
    return [f"<details><summary>{summary}</summary>", "", *body, "", "</details>"]


def unified(base: str | None, head: str | None, name: str) -> str:
    """A unified diff of two texts; a missing side diffs as empty."""
    return "".join(
        difflib.unified_diff(
            (base or "").splitlines(keepends=True),
            (head or "").splitlines(keepends=True),
            fromfile=f"base/{name}",
            tofile=f"head/{name}",
        )
    )


def paragraphs(*parts: list[str]) -> list[str]:
    """Markdown blocks joined by one blank line."""
    lines: list[str] = []
    for part in parts:
        lines += [""] * bool(lines) + part
    return lines
