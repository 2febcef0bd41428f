"""`images import` refuses a foreign or damaged archive in one line, before Docker is asked.

The archives here are built by hand in `docker save`'s layout (manifest.json, config and
layer blobs) plus ringfleet's record, so no engine is needed.
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from ringfleet.images.archive import ARCHIVE_RECORD, ARCHIVE_SCHEMA, check_archive
from tests.conftest import run_cli

CONFIG = b'{"architecture": "amd64"}'
LAYER = b"layer bytes " * 512
CONFIG_HEX = hashlib.sha256(CONFIG).hexdigest()
LAYER_HEX = hashlib.sha256(LAYER).hexdigest()
TAG = "ringfleet/node:tf2.15-0123456789abcdef"


def record(**change) -> dict:
    base = {
        "schema": ARCHIVE_SCHEMA,
        "profile": "tf2.15",
        "tag": TAG,
        "content_hash": "0123456789abcdef",
        "image_id": f"sha256:{CONFIG_HEX}",
        "lock_digest": "sha256:" + "0" * 64,
        "env": "local",
    }
    return {**base, **change}


def write_archive(path: Path, members: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def image_members(tags=(TAG,)) -> dict[str, bytes]:
    manifest = [
        {
            "Config": f"blobs/sha256/{CONFIG_HEX}",
            "RepoTags": list(tags),
            "Layers": [f"blobs/sha256/{LAYER_HEX}"],
        }
    ]
    return {
        "manifest.json": json.dumps(manifest).encode(),
        f"blobs/sha256/{CONFIG_HEX}": CONFIG,
        f"blobs/sha256/{LAYER_HEX}": LAYER,
    }


def good(path: Path) -> Path:
    return write_archive(path, {**image_members(), ARCHIVE_RECORD: json.dumps(record()).encode()})


def truncated(path: Path) -> Path:
    data = good(path).read_bytes()
    # Cut inside the layer: manifest.json and the config are two 512-byte blocks each.
    path.write_bytes(data[: 4 * 512 + 512 + len(LAYER) // 2])
    return path


def not_a_tar(path: Path) -> Path:
    path.write_bytes(b"\x89PNG not an archive" * 64)
    return path


# Each broken archive and the words its one-line refusal must contain.
BROKEN = {
    "not a tar": (not_a_tar, "not a readable"),
    "foreign tar": (lambda p: write_archive(p, image_members()), "not a ringfleet image archive"),
    "truncated": (truncated, "truncated"),
    "record not JSON": (
        lambda p: write_archive(p, {**image_members(), ARCHIVE_RECORD: b"{nope"}),
        "not JSON",
    ),
    "not a node image": (
        lambda p: write_archive(
            p, {**image_members(), ARCHIVE_RECORD: json.dumps(record(tag="busybox:1")).encode()}
        ),
        "not a ringfleet node image",
    ),
    "another image inside": (
        lambda p: write_archive(
            p,
            {
                **image_members(tags=("ringfleet/node:tf2.15-fedcba9876543210",)),
                ARCHIVE_RECORD: json.dumps(record()).encode(),
            },
        ),
        f"the image is not {TAG}",
    ),
    "hash not the tag's": (
        lambda p: write_archive(
            p,
            {**image_members(), ARCHIVE_RECORD: json.dumps(record(content_hash="f" * 16)).encode()},
        ),
        "does not match the tag",
    ),
}


def test_well_formed_archive_passes_the_check(tmp_path) -> None:
    assert check_archive(good(tmp_path / "a.tar"))["tag"] == TAG


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_archive_is_refused_in_one_line(tmp_path, case) -> None:
    make, words = BROKEN[case]
    path = make(tmp_path / "image.tar")
    proc = run_cli("images", "import", str(path))
    lines = proc.stderr.strip().splitlines()
    first = lines[0] if lines else ""
    assert (
        proc.returncode,
        len(lines),
        first.startswith(f"ringfleet: error: {path}"),
        words in first,
    ) == (2, 1, True, True), proc.stderr
