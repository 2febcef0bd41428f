"""One command at a time changes an env: an exclusive lock file per env.

`up`, `down` and `lock` hold `.ringfleet/<env>.lock` while they run, so two
`up`s, or an `up` and a `down`, cannot interleave their changes. The lock is an
advisory `flock`, released by the kernel when its holder exits, however it exits:
a crashed holder never leaves a stale lock behind. The file also names the
holder (pid and command) so the one that waits can say whom it waits for.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ringfleet.errors import RingfleetError, one_line
from ringfleet.files import private_dir
from ringfleet.paths import STATE_DIRNAME, env_lock_path, state_root

# `ringfleet` exits with this when the env stays busy: EX_TEMPFAIL, "try again later".
EXIT_BUSY = 75
# How long a second command waits by default: a cold `up` takes about ten minutes.
DEFAULT_LOCK_TIMEOUT = 1800.0
# How often a waiting command tries the lock again.
POLL_SECONDS = 0.2


class EnvBusy(RingfleetError):
    """Another ringfleet command holds the env's lock."""

    exit_code = EXIT_BUSY


def lock_file(root: Path, env: str) -> Path:
    # Beside `.ringfleet/<env>/`, not in it: `down --purge` removes that directory.
    private_dir(state_root(root))
    return env_lock_path(root, env)


def holder(path: Path) -> str:
    """`pid N (`command`)` of the current holder, as it wrote itself into the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {int(data['pid'])} (`{one_line(str(data['command']))}`)"
    except (OSError, ValueError, KeyError, TypeError):
        return "another ringfleet command (holder unknown)"


def this_command() -> str:
    return " ".join(["ringfleet", *sys.argv[1:]])


@contextmanager
def env_lock(
    root: Path,
    env: str,
    timeout: float = DEFAULT_LOCK_TIMEOUT,
    command: str | None = None,
    say: Callable[[str], None] = lambda line: None,
) -> Iterator[Path]:
    """Hold the env's lock for the block; wait up to `timeout` s (0: refuse at once)."""
    path = lock_file(root, env)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, path, env, timeout, say)
        record = json.dumps({"pid": os.getpid(), "command": command or this_command()})
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.encode() + b"\n", 0)
        try:
            yield path
        finally:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, path: Path, env: str, timeout: float, say: Callable[[str], None]) -> None:
    deadline = time.monotonic() + max(0.0, timeout)
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        who = holder(path)
        if timeout <= 0:
            raise EnvBusy(
                f"env {env}",
                f"busy: {who} holds {STATE_DIRNAME}/{path.name}; "
                "wait for it, or give --lock-timeout SECONDS to wait",
            )
        if time.monotonic() >= deadline:
            raise EnvBusy(
                f"env {env}",
                f"still busy after {timeout:g} s: {who} holds {STATE_DIRNAME}/{path.name}",
            )
        if not told:
            say(f"env {env} is busy: {who}; waiting up to {timeout:g} s (--lock-timeout)")
            told = True
        time.sleep(POLL_SECONDS)
