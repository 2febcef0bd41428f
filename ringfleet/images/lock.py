"""`ringfleet images lock NAME`: an added profile's pip list as a hashed lock on its parent's.

The added packages are resolved by pip itself (`pip install --dry-run --report`) with every
pin of the parent's lock as a constraint, so nothing the parent pins can move; what the
resolution adds beyond the parent (the packages and their new dependencies) is written to
`profiles/<name>.txt`, each pinned with the sha256 of the file pip chose. The nodes install
it with `--require-hashes --no-deps` on top of the parent's venv, as the tensorflow role
installs the parent's own lock (docs/pinning.md).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ringfleet.errors import RingfleetError
from ringfleet.files import write_atomic
from ringfleet.images.profiles import LOCK_PIN, PROFILES_DIR, AddedProfile, parent_pins
from ringfleet.images.record import NODE_IMAGE_REPO

# pip resolves environment markers and picks wheels for the interpreter it runs on, which
# must be the nodes': CPython 3.11 on Linux x86_64 (Debian bookworm), as scripts/compile-pins.sh.
NODE_PLATFORM = "3.11-Linux-x86_64"
# Only PyPI, as scripts/compile-pins.sh: a machine's own indexes or find-links would put
# files in the lock that the nodes cannot fetch.
PIP_ENV = {
    "PIP_CONFIG_FILE": os.devnull,
    "PIP_FIND_LINKS": "",
    "PIP_EXTRA_INDEX_URL": "",
    "PIP_INDEX_URL": "https://pypi.org/simple",
}
RESOLVE_TIMEOUT = 600
# A lock is committed with the project and read by everyone: not a private state file.
LOCK_FILE_MODE = 0o644


@dataclass(frozen=True)
class Pinned:
    name: str
    version: str
    sha256: str


@dataclass(frozen=True)
class LockResult:
    path: Path
    added: list[Pinned]
    seconds: float


def profile_lock_path(root: Path, name: str) -> Path:
    return root / PROFILES_DIR / f"{name}.txt"


def _platform() -> str:
    major, minor = sys.version_info[:2]
    return f"{major}.{minor}-{platform.system()}-{platform.machine()}"


def resolve(profile: AddedProfile, pins: dict[str, str]) -> list[Pinned]:
    """What pip installs for the profile's pip list on top of `pins` (name -> version)."""
    where = f"{PROFILES_DIR}/{profile.path.name}: pip"
    if _platform() != NODE_PLATFORM:
        raise RingfleetError(
            where, f"locks are resolved on the nodes' platform {NODE_PLATFORM}", _platform()
        )
    with tempfile.TemporaryDirectory(prefix="ringfleet-lock-") as tmp:
        constraints = Path(tmp) / "parent.txt"
        constraints.write_text("".join(f"{n}=={v}\n" for n, v in sorted(pins.items())))
        report = Path(tmp) / "report.json"
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--quiet", "--disable-pip-version-check", "--report", str(report),
             "-c", str(constraints), *profile.pip],
            env={**os.environ, **PIP_ENV}, capture_output=True, text=True,
            timeout=RESOLVE_TIMEOUT, check=False,
        )  # fmt: skip
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("ERROR")]
            why = (lines or proc.stderr.strip().splitlines() or ["pip failed"])[-1]
            raise RingfleetError(where, f"pip cannot resolve it on the parent's pins: {why}")
        installs = json.loads(report.read_text(encoding="utf-8"))["install"]
    return [
        Pinned(i["metadata"]["name"], i["metadata"]["version"],
               i["download_info"]["archive_info"]["hashes"]["sha256"])
        for i in installs
    ]  # fmt: skip


def lock_text(profile: AddedProfile, added: list[Pinned]) -> str:
    head = [
        f"# {PROFILES_DIR}/{profile.name}.txt: what {PROFILES_DIR}/{profile.path.name} adds to "
        f"{profile.extends}'s lock, each file by its sha256.",
        f"# Written by `ringfleet images lock {profile.name}`; nodes install it with "
        "pip --require-hashes --no-deps on the parent's venv.",
    ]
    body = [f"{p.name}=={p.version} \\\n    --hash=sha256:{p.sha256}" for p in added]
    return "\n".join(head + body) + "\n"


def lock_profile(profile: AddedProfile, root: Path) -> LockResult:
    """Resolve and write `profiles/<name>.txt`; the parent's lock is only read."""
    started = time.monotonic()
    pins = parent_pins(root, profile.extends)
    resolved = resolve(profile, pins)
    # The parent's packages are in its venv already, at the versions the constraints held.
    added = sorted(
        (p for p in resolved if canonicalize_name(p.name) not in pins),
        key=lambda p: canonicalize_name(p.name),
    )
    text = lock_text(profile, added)
    path = write_atomic(profile_lock_path(root, profile.name), text, LOCK_FILE_MODE)
    return LockResult(path, added, time.monotonic() - started)


def lock_for(profile: AddedProfile, root: Path) -> Path:
    """The profile's lock, refused when missing or when it does not cover the pip list."""
    path = profile_lock_path(root, profile.name)
    where = f"{PROFILES_DIR}/{path.name}"
    if not path.is_file():
        raise RingfleetError(where, f"missing; run `ringfleet images lock {profile.name}` first")
    locked = {canonicalize_name(n) for n, _ in LOCK_PIN.findall(path.read_text())}
    pinned = set(parent_pins(root, profile.extends))
    for text in profile.pip:
        name = canonicalize_name(Requirement(text).name)
        if name not in locked | pinned:
            raise RingfleetError(
                where, f"does not lock {name}; run `ringfleet images lock {profile.name}` again"
            )
    return path


def added_image_tag(parent_tag: str, profile: AddedProfile, lock: Path) -> str:
    h = hashlib.sha256(parent_tag.encode() + b"\0")
    h.update(profile.path.read_bytes() + b"\0" + lock.read_bytes())
    return f"{NODE_IMAGE_REPO}:{profile.name}-{h.hexdigest()[:16]}"
