"""Small file helpers shared by the modules that write state users read."""

from __future__ import annotations

from pathlib import Path


def write_atomic(path: Path, text: str) -> Path:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
