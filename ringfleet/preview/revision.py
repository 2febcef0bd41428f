"""The two revisions a preview compares: where their files are and what their code made of them.

The base is a git revision exported into a temporary directory; the head is the
working tree. Each is evaluated by its own code in its own interpreter (`start_record`):
`python -m ringfleet.preview.record` inside the revision, or, for a revision from before
`ringfleet/preview/record.py` existed, the frozen program `record_flat.py` run there.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringfleet.errors import RingfleetError
from ringfleet.paths import lock_path

RECORD_TIMEOUT = 600
RECORD_MODULE = "ringfleet.preview.record"
# A revision has this file from the layout change of #14 on; older ones get FLAT_RECORD.
RECORD_FILE = "ringfleet/preview/record.py"
FLAT_RECORD = Path(__file__).with_name("record_flat.py")


def lockfile_path(env: str) -> str:
    return lock_path(Path(), env).as_posix()


def _git(root: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=not binary, check=False
        )
    except FileNotFoundError:
        raise RingfleetError("--base", "git is not installed") from None


def resolve_base(root: Path, ref: str) -> str:
    """The commit `ref` names, or a one-line error."""
    if ref.startswith("-"):
        raise RingfleetError("--base", "not a git revision", ref)
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0:
        raise RingfleetError("--base", f"{root} is not in a git repository")
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if found.returncode != 0:
        raise RingfleetError("--base", "not a commit in this repository", ref)
    return found.stdout.strip()


def export_revision(root: Path, commit: str, dest: Path) -> None:
    """Write the files of `commit` under the project root (not the whole repo) into `dest`."""
    prefix = _git(root, "rev-parse", "--show-prefix").stdout.strip()
    tree = f"{commit}:{prefix}" if prefix else commit
    archive = _git(root, "archive", "--format=tar", tree, binary=True)
    if archive.returncode != 0:
        raise RingfleetError("--base", "git archive failed", archive.stderr.decode().strip())
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")


def record_command(root: Path) -> list[str]:
    """The interpreter arguments that record the revision at `root` with its own code."""
    if (root / RECORD_FILE).is_file():
        return [sys.executable, "-m", RECORD_MODULE]
    return [sys.executable, str(FLAT_RECORD)]


def start_record(root: Path, envs: list[str]) -> subprocess.Popen:
    """Start the record of `root` in `root`'s own code: its directory comes first on sys.path."""
    env = {**os.environ, "RINGFLEET_ROOT": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    # Safe-path mode would keep the revision's directory off sys.path under `-m`.
    env.pop("PYTHONSAFEPATH", None)
    return subprocess.Popen(
        [*record_command(root), str(root), *envs],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_record(proc: subprocess.Popen, label: str) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=RECORD_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RingfleetError(
            f"preview: {label}", f"evaluation took over {RECORD_TIMEOUT} s"
        ) from None
    if proc.returncode != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        raise RingfleetError(
            f"preview: {label}",
            "could not evaluate the revision",
            lines[-1] if lines else f"exit {proc.returncode}",
        )
    return json.loads(out)


@dataclass
class Revision:
    """One side of the comparison: where its files are and what its code made of them."""

    side: str
    """`base` or `head`, as diff labels name it."""
    title: str
    root: Path
    envs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def env(self, name: str) -> dict[str, Any]:
        return self.envs.get(name, {"missing": True})

    def lockfile(self, env: str) -> str | None:
        path = self.root / lockfile_path(env)
        return path.read_text(encoding="utf-8") if path.is_file() else None
