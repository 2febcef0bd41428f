"""The record a node image carries: which versions are in it, read on the node at bake.

The record is written into the image (`/etc/ringfleet/image.json`) from what the baked
container itself reports, not from the profile table, so `images list` and an imported
archive show what is really inside. An image baked before records existed has none.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
import time
from pathlib import Path

RECORD_FILE = "/etc/ringfleet/image.json"
NODE_IMAGE_REPO = "ringfleet/node"
# Where a baked image names itself (its tag): the one fact `up` checks per node before it
# runs only the node part of the roles (playbooks/validate.yml reads it).
NODE_IMAGE_FILE = "/etc/ringfleet/node-image"
RECORD_SCHEMA = 1
# The node venv the roles install the Python stack into (roles/tensorflow defaults).
NODE_PYTHON = "/opt/ringfleet/venv/bin/python"
# Versions read on the node. importlib.metadata reads the installed distributions without
# importing TensorFlow (seconds, not a minute); tf_keras before keras because a tf2.21 node
# holds both and jobs run on tf_keras (TF_USE_LEGACY_KERAS=1).
COLLECT_SCRIPT = r"""
import importlib.metadata as md, json, platform, subprocess
def first(*names):
    for name in names:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            pass
    return None
release = {}
for line in open("/etc/os-release").read().splitlines():
    key, _, value = line.partition("=")
    release[key] = value.strip('"')
mpi = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "openmpi-bin"],
                     capture_output=True, text=True).stdout.strip()
print(json.dumps({
    "os": release.get("PRETTY_NAME"),
    "python": platform.python_version(),
    "openmpi": mpi or None,
    "tensorflow": first("tensorflow-cpu", "tensorflow"),
    "keras": first("tf-keras", "keras"),
    "horovod": first("horovod"),
    "mkl": first("mkl"),
    "python_packages": sum(1 for _ in md.distributions()),
}))
"""
# The fields `images list` shows, in order.
VERSION_FIELDS = ("os", "python", "openmpi", "tensorflow", "keras", "horovod", "mkl")


def read_versions(container) -> dict:
    """Run COLLECT_SCRIPT in a running container (docker-py) and return what it found."""
    from ringfleet.errors import RuntimeFailure

    code, output = container.exec_run([NODE_PYTHON, "-c", COLLECT_SCRIPT])
    text = output.decode(errors="replace")
    if code != 0:
        raise RuntimeFailure(
            f"node {container.name}", "reading the image's versions failed", text.strip()[-200:]
        )
    return json.loads(text.strip().splitlines()[-1])


def lock_file(root: Path, profile: str, gpu: bool) -> Path:
    """The hashed pip lock the tensorflow role installs for `profile` (pinning.md)."""
    kind = "cuda" if gpu else "cpu"
    return root / "roles" / "tensorflow" / "files" / f"requirements-{profile}-{kind}.txt"


def lock_digest(root: Path, profile: str, gpu: bool) -> str | None:
    path = lock_file(root, profile, gpu)
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def make_record(tag: str, profile: str, inputs: dict, lock: str | None, versions: dict) -> dict:
    """The record of one image: what it is (tag, inputs, lock) and what is in it."""
    return {
        "schema": RECORD_SCHEMA,
        "tag": tag,
        "profile": profile,
        "content_hash": tag.rsplit("-", 1)[-1],
        "inputs": inputs,
        "lock_digest": lock,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": versions,
    }


def write_record(container, record: dict) -> None:
    """Put `record` at RECORD_FILE in a container (its directory must exist)."""
    data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(Path(RECORD_FILE).name)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    container.put_archive(str(Path(RECORD_FILE).parent), buf.getvalue())


def image_files(client, tag: str, *paths: str) -> dict[str, bytes]:
    """The regular files at `paths` (files or directories) in image `tag`, by base name.

    Copied out of a created, never started, container: nothing runs. A missing path
    raises docker.errors.NotFound.
    """
    from pathlib import PurePosixPath

    container = client.containers.create(tag, command=["true"])
    found: dict[str, bytes] = {}
    try:
        for path in paths:
            stream, _ = container.get_archive(path)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        found[PurePosixPath(member.name).name] = tar.extractfile(member).read()
    finally:
        container.remove(force=True)
    return found


def read_record(client, tag: str) -> dict | None:
    """The record inside image `tag`, or None when it has none (baked before records)."""
    import docker.errors

    try:
        data = image_files(client, tag, RECORD_FILE).get(Path(RECORD_FILE).name)
    except docker.errors.NotFound:
        return None
    return json.loads(data) if data else None
