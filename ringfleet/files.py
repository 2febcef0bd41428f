"""Small file helpers shared by the modules that write state users read."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

# State files can hold cluster addresses and paths to keys: owner only.
STATE_FILE_MODE = 0o600
STATE_DIR_MODE = 0o700


def write_atomic(path: Path, text: str | bytes, mode: int = STATE_FILE_MODE) -> Path:
    """Write via a unique temporary file, fsync and rename: a reader never sees half a
    file, and two writers never share a temporary name (the last rename wins whole)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = text.encode("utf-8") if isinstance(text, str) else text
    # mkstemp opens O_EXCL with mode 0600 in the target's directory, so the rename
    # stays on one filesystem and the file is never readable by others, even briefly.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable: a crash after it must not bring the old file back."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def private_dir(path: Path) -> Path:
    """Create `path` (and parents) and make it 0700, also when it already existed."""
    path.mkdir(parents=True, exist_ok=True)
    if path.stat().st_mode & 0o777 != STATE_DIR_MODE:
        path.chmod(STATE_DIR_MODE)
    return path
