"""`ringfleet images build NAME`: an added profile's image, on top of its parent's image.

Only what the profile adds runs: its Debian packages (installed and held, as the roles
hold theirs) and its hashed lock (`profiles/<name>.txt`, installed `--require-hashes
--no-deps` into the node venv, whose parent packages stay as they are). The parent image
is baked first when it is not here. The tag hashes the parent's tag, the profile file and
its lock, so editing either makes a new image and an unchanged profile is never rebuilt.
"""

from __future__ import annotations

import hashlib
import io
import shlex
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from ringfleet.errors import RuntimeFailure
from ringfleet.images.lock import added_image_tag, lock_for
from ringfleet.images.record import (
    NODE_IMAGE_FILE,
    NODE_PYTHON,
    make_record,
    read_versions,
    write_record,
)
from ringfleet.spec import ResolvedPool

LABEL_ADDED = "ringfleet.added-profile"
LOCK_IN_CONTAINER = "/tmp/ringfleet-profile-lock.txt"
# The node venv's pip: only the files the lock names, by hash; the parent's packages stay.
PIP_INSTALL = [
    *(NODE_PYTHON, "-m", "pip", "install", "--require-hashes", "--no-deps", "--no-cache-dir"),
    *("--disable-pip-version-check", "-r", LOCK_IN_CONTAINER),
]
APT_INSTALL = (
    "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "
    "--no-install-recommends {packages} && apt-mark hold {names} && apt-get clean "
    "&& rm -rf /var/lib/apt/lists/*"
)
# The tag a node checks before a node-part converge (images.py), now this image's own.
RECORD_NODE_IMAGE = "echo {tag} > " + NODE_IMAGE_FILE + " && rm -f " + LOCK_IN_CONTAINER


@dataclass(frozen=True)
class Built:
    tag: str
    parent: str
    cached: bool
    seconds: float


def _exec(container, step: str, argv: list[str], profile: str) -> None:
    code, output = container.exec_run(argv)
    if code != 0:
        tail = output.decode(errors="replace").strip().splitlines()[-1:] or [""]
        raise RuntimeFailure(f"build {profile}", f"{step} failed (exit {code})", tail[0][-200:])


def _put(container, path: str, data: bytes) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(Path(path).name)
        info.size, info.mode, info.mtime = len(data), 0o644, int(time.time())
        tar.addfile(info, io.BytesIO(data))
    container.put_archive(str(Path(path).parent), buf.getvalue())


def build_added(client, pool: ResolvedPool, root: Path, parent: str) -> Built:
    """Build (or find) the image of `pool`'s added profile on its parent's image `parent`
    (the caller bakes the parent first: ensure_node_image in the docker provider)."""
    from ringfleet.providers.docker.baseimage import find_image

    started = time.monotonic()
    profile = pool.added
    if profile is None:
        raise ValueError(f"pool {pool.name} is not on an added profile")
    lock = lock_for(profile, root)
    tag = added_image_tag(parent, profile, lock)
    if find_image(client, tag) is not None:
        return Built(tag, parent, True, time.monotonic() - started)
    container = client.containers.run(
        parent, command=["sleep", "infinity"], detach=True, init=True, labels={LABEL_ADDED: tag}
    )
    try:
        if profile.apt:
            names = [p.split("=", 1)[0] for p in profile.apt]
            script = APT_INSTALL.format(packages=shlex.join(profile.apt), names=shlex.join(names))
            _exec(container, "apt-get install", ["/bin/sh", "-c", script], profile.name)
        _put(container, LOCK_IN_CONTAINER, lock.read_bytes())
        _exec(container, "pip install of the lock", PIP_INSTALL, profile.name)
        _exec(container, "recording the image tag", ["/bin/sh", "-c",
              RECORD_NODE_IMAGE.format(tag=shlex.quote(tag))], profile.name)  # fmt: skip
        versions = read_versions(container)
        versions["added"] = {"pip": list(profile.pip), "apt": list(profile.apt)}
        inputs = {"parent": parent, "profile": _digest(profile.path), "lock": _digest(lock)}
        write_record(container, make_record(tag, profile.name, inputs, _digest(lock), versions))
        repo, _, version = tag.rpartition(":")
        container.commit(repository=repo, tag=version, changes=[f"LABEL {LABEL_ADDED}={tag}"])
    finally:
        container.remove(force=True)
    return Built(tag, parent, False, time.monotonic() - started)


def _digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
