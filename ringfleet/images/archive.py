"""`ringfleet images export` and `import`: one node image and its record in one archive.

The archive is the image as `docker save` writes it (a tar `docker load` reads) with one
more member, ARCHIVE_RECORD: the profile, the tag (whose digest is the image's content
hash), the lock digest, the env whose inputs the tag hashes, the image id, and the
image's own record. `import` checks that member against the image in the archive before
anything is loaded, and the loaded image against it after, so a foreign or damaged
archive is refused and `up` uses an imported image exactly when it would have baked the
same one.
"""

from __future__ import annotations

import io
import json
import re
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

from ringfleet.errors import RingfleetError

ARCHIVE_RECORD = "ringfleet-image.json"
ARCHIVE_SCHEMA = 1
# What `docker save` names its index of images; its Config is the image id's digest.
DOCKER_MANIFEST = "manifest.json"
TAG_PATTERN = re.compile(r"ringfleet/node:(?P<profile>[A-Za-z0-9_.-]+)-(?P<digest>[0-9a-f]{16})")
CHUNK = 8 * 1024 * 1024


@dataclass(frozen=True)
class Moved:
    """What an export or import did, for the one summary line."""

    tag: str
    path: Path
    size_bytes: int
    seconds: float
    record: dict


def archive_record(spec, pool, root: Path, tag: str, image, image_record: dict | None) -> dict:
    """The archive's own record: what the image is, and which env's inputs its tag hashes."""
    from ringfleet.images.record import lock_digest
    from ringfleet.providers.docker.images import image_inputs

    return {
        "schema": ARCHIVE_SCHEMA,
        "profile": pool.profile.name,
        "tag": tag,
        "content_hash": tag.rsplit("-", 1)[-1],
        "image_id": image.id,
        "lock_digest": lock_digest(root, pool.profile.name, pool.gpu is not None),
        "env": spec.env,
        "inputs": image_inputs(spec, pool, root),
        "image_record": image_record,
        "exported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def export_image(client, record: dict, path: Path) -> Moved:
    """Write image record["tag"] with `docker save`, then append ARCHIVE_RECORD, to `path`."""
    started = time.monotonic()
    image = client.images.get(record["tag"])
    partial = path.with_name(path.name + ".partial")
    with open(partial, "wb") as out:
        for chunk in image.save(chunk_size=CHUNK, named=record["tag"]):
            out.write(chunk)
    data = (json.dumps(record, indent=2, sort_keys=True) + "\n").encode()
    with tarfile.open(partial, "a") as tar:
        info = tarfile.TarInfo(ARCHIVE_RECORD)
        info.size = len(data)
        info.mode = 0o644
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(data))
    partial.replace(path)
    return Moved(record["tag"], path, path.stat().st_size, time.monotonic() - started, record)


def check_archive(path: Path) -> dict:
    """The archive's record, checked against the image in it; a one-line error otherwise."""
    where = str(path)
    if not path.is_file():
        raise RingfleetError(where, "no such file")
    try:
        with tarfile.open(path, "r:") as tar:
            names = set(tar.getnames())
            if ARCHIVE_RECORD not in names:
                raise RingfleetError(
                    where,
                    f"not a ringfleet image archive, or truncated: it has no {ARCHIVE_RECORD}",
                )
            record = _json_member(tar, ARCHIVE_RECORD, where)
            manifest = (
                _json_member(tar, DOCKER_MANIFEST, where) if DOCKER_MANIFEST in names else None
            )
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise RingfleetError(
            where, "not a readable image archive (corrupt or truncated)", str(exc)
        ) from None
    _check_record(record, manifest, names, where)
    return record


def _json_member(tar: tarfile.TarFile, name: str, where: str):
    handle = tar.extractfile(name)
    try:
        return json.loads(handle.read()) if handle else None
    except (ValueError, UnicodeDecodeError):
        raise RingfleetError(where, f"{name}: not JSON (corrupt archive)") from None


def _check_record(record, manifest, names: set[str], where: str) -> None:
    if not isinstance(record, dict) or record.get("schema") != ARCHIVE_SCHEMA:
        got = record.get("schema") if isinstance(record, dict) else record
        raise RingfleetError(f"{where}: {ARCHIVE_RECORD}: schema", f"must be {ARCHIVE_SCHEMA}", got)
    tag = record.get("tag")
    match = TAG_PATTERN.fullmatch(tag) if isinstance(tag, str) else None
    if match is None:
        raise RingfleetError(f"{where}: {ARCHIVE_RECORD}: tag", "not a ringfleet node image", tag)
    for field, want in (("profile", match["profile"]), ("content_hash", match["digest"])):
        if record.get(field) != want:
            raise RingfleetError(
                f"{where}: {ARCHIVE_RECORD}: {field}",
                f"does not match the tag {tag}",
                record.get(field),
            )
    if not isinstance(manifest, list) or len(manifest) != 1:
        raise RingfleetError(where, f"{DOCKER_MANIFEST}: must name exactly one image (corrupt?)")
    entry = manifest[0]
    if tag not in (entry.get("RepoTags") or []):
        raise RingfleetError(
            f"{where}: {DOCKER_MANIFEST}", f"the image is not {tag}", entry.get("RepoTags")
        )
    config = str(entry.get("Config", ""))
    image_id = str(record.get("image_id", ""))
    if image_id.split(":")[-1] not in config:
        raise RingfleetError(f"{where}: {DOCKER_MANIFEST}", f"the image is not {image_id}", config)
    missing = [layer for layer in entry.get("Layers") or [] if layer not in names]
    if missing or config not in names:
        raise RingfleetError(
            where, "image layers are missing (truncated?)", (missing or [config])[0]
        )


def import_image(client, path: Path, record: dict) -> Moved:
    """`docker load` `path` (checked: `record` is its check_archive) and check the result."""
    import docker.errors

    started = time.monotonic()
    try:
        with open(path, "rb") as handle:
            client.images.load(handle)
        image = client.images.get(record["tag"])
    except docker.errors.DockerException as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RingfleetError(
            str(path), "docker load refused the image (corrupt?)", reason
        ) from None
    if image.id != record["image_id"]:
        raise RingfleetError(
            str(path), f"loaded {record['tag']} is not the recorded image", image.id
        )
    return Moved(record["tag"], path, path.stat().st_size, time.monotonic() - started, record)
