"""`ringfleet images export PROFILE --wheels -o DIR`: a node image's Horovod build, for
hosts that are not made from the image (bare metal, AWS).

Hosts the roles converge over SSH build Horovod from source, unless their cluster's shared
storage already holds a wheel of the same build record: roles/horovod looks in
`<shared mount>/.ringfleet/horovod/<sha256 of the record>[:16]/` for the wheel and its
SHA256SUMS, and copies it instead of compiling. This writes exactly that directory from
the image: the wheel its bake built and the record it was built with (the record names
Horovod, the sdist's sha256, the patches, the build flags and the TensorFlow pin, so a
wheel lands only where the roles would have built the same one). Beside it go the
image's hashed Python lock and every wheel that lock pins (fetched by a container of the
image, so for its platform), and a SHA256SUMS of the whole directory: a wheelhouse a site
without PyPI names as `software.wheelhouse` (ringfleet.images.offline).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ringfleet.errors import RingfleetError
from ringfleet.files import write_atomic
from ringfleet.images.offline import SUMS_FILE, fetch_wheels, write_sums
from ringfleet.images.record import image_files

# Where the roles keep them on a node (roles/horovod and roles/tensorflow defaults).
WHEEL_DIR = "/opt/ringfleet/wheels"
BUILD_MARKER = "/opt/ringfleet/venv/ringfleet-horovod-build.json"
PYTHON_LOCK = "/opt/ringfleet/venv/ringfleet-requirements.txt"
# Under the shared mount: roles/horovod's horovod_shared_dir.
SHARED_SUBDIR = ".ringfleet/horovod"
LOCK_FILE = "requirements.txt"


@dataclass(frozen=True)
class Wheels:
    tag: str
    record_dir: Path
    """DIR/horovod/<record hash>: copy it under `<shared mount>/.ringfleet/horovod/`."""
    wheel: Path
    sha256: str
    lock: Path
    wheels: int
    """Wheels of the lock beside the Horovod one."""
    size_bytes: int
    seconds: float


def record_hash(marker: bytes) -> str:
    """The directory name roles/horovod gives a build record on shared storage."""
    return hashlib.sha256(marker).hexdigest()[:16]


def export_wheels(client, tag: str, out: Path) -> Wheels:
    """Write image `tag`'s Horovod wheel, its SHA256SUMS and the Python lock under `out`."""
    import docker.errors

    started = time.monotonic()
    try:
        files = image_files(client, tag, WHEEL_DIR, BUILD_MARKER, PYTHON_LOCK)
    except docker.errors.NotFound as e:
        raise RingfleetError(tag, "has no Horovod build to export (baked before wheels were kept)",
                             str(e.explanation)) from e  # fmt: skip
    wheels = sorted(n for n in files if n.startswith("horovod-") and n.endswith(".whl"))
    if len(wheels) != 1:
        raise RingfleetError(tag, f"expected one Horovod wheel in {WHEEL_DIR}", str(wheels))
    name, marker = wheels[0], files[PurePosixPath(BUILD_MARKER).name]
    data = files[name]
    digest = hashlib.sha256(data).hexdigest()
    record_dir = out / "horovod" / record_hash(marker)
    wheel = write_atomic(record_dir / name, data, 0o644)
    # The sums file last, as the building host writes it: a host waits for it, never for a
    # partial wheel.
    write_atomic(record_dir / SUMS_FILE, f"{digest}  {name}\n", 0o644)
    write_atomic(out / "horovod-build.json", marker, 0o644)
    lock = write_atomic(out / LOCK_FILE, files[PurePosixPath(PYTHON_LOCK).name], 0o644)
    count = fetch_wheels(client, tag, PYTHON_LOCK, out)
    write_sums(out)
    size = sum(p.stat().st_size for p in out.rglob("*.whl"))
    return Wheels(tag, record_dir, wheel, digest, lock, count, size, time.monotonic() - started)
