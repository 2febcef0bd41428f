"""The catalog against the real engine: `images list`, the image record, export -> import -> up.

Shares the local cluster; the export/import round trip runs once per module (the tf2.15
image is ~3 GB, so it is the expensive part: its times go to the test log).
"""

from __future__ import annotations

import json
import re

import pytest

from ringfleet import compat
from ringfleet.images.record import make_record, read_record, read_versions, write_record
from ringfleet.providers.docker.baseimage import find_image
from tests.conftest import report, run_cli

pytestmark = pytest.mark.docker

# A second name for the image while its real tag is removed: it keeps the image (the
# running nodes use it anyway) and lets the fixture put the tag back if the import fails.
KEEP_REPO = "ringfleet/test-keep"
RECORD_REPO = "ringfleet/test-record"
TF215 = compat.PROFILES[0]


@pytest.fixture(scope="module")
def listed(local_cluster):
    proc = run_cli("images", "list", "--env", "local", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {row["profile"]: row for row in json.loads(proc.stdout)}


@pytest.mark.parametrize("profile", [p.name for p in compat.PROFILES])
def test_list_shows_every_profile(listed, profile) -> None:
    assert listed[profile]["tag"].startswith(f"ringfleet/node:{profile}-")


def test_list_names_the_image_up_uses_as_built(listed, tag) -> None:
    assert (listed[TF215.name]["tag"], listed[TF215.name]["built"]) == (tag, True)


@pytest.fixture(scope="module")
def record_round_trip(client, tag):
    """Versions read in a container of the tf2.15 image, written and read back as a record."""
    container = client.containers.run(
        tag, ["sleep", "infinity"], detach=True, init=True, labels={"ringfleet.test": "record"}
    )
    probe = f"{RECORD_REPO}:{tag.rsplit('-', 1)[-1]}"
    try:
        versions = read_versions(container)
        written = make_record(tag, TF215.name, {"probe": "test"}, None, versions)
        write_record(container, written)
        container.commit(*probe.split(":"))
        read = read_record(client, probe)
    finally:
        container.remove(force=True)
        if find_image(client, probe) is not None:
            client.images.remove(probe)
    return versions, written, read


# What the image reports against the profile table: (field, expected prefix).
EXPECTED = [
    ("os", "Debian GNU/Linux 12"),
    ("python", TF215.python + "."),
    ("openmpi", TF215.openmpi_debian),
    ("tensorflow", TF215.tensorflow),
    ("keras", "2.15"),
    ("horovod", TF215.horovod),
    ("mkl", TF215.mkl),
]


@pytest.mark.parametrize(("field", "prefix"), EXPECTED)
def test_image_reports_its_versions(record_round_trip, field, prefix) -> None:
    versions, _, _ = record_round_trip
    assert str(versions[field]).startswith(prefix), versions


def test_record_reads_back_from_the_image(record_round_trip) -> None:
    _, written, read = record_round_trip
    assert read == written


SECONDS = re.compile(r"(\d+\.\d+) GB in (\d+) s")


@pytest.fixture(scope="module")
def round_trip(request, client, tag, tmp_path_factory):
    """Export tf2.15, remove its tag, import the archive, then `up`: once for every fact."""
    path = tmp_path_factory.mktemp("images") / "tf2.15.tar"
    image = client.images.get(tag)
    repo, _, version = tag.rpartition(":")
    exported = run_cli("images", "export", TF215.name, "-o", str(path), "--env", "local")
    image.tag(KEEP_REPO, version)
    try:
        client.images.remove(tag)
        removed = find_image(client, tag) is None
        imported = run_cli("images", "import", str(path))
        after = find_image(client, tag)
    finally:
        if find_image(client, tag) is None:
            image.tag(repo, version)
        client.images.remove(f"{KEEP_REPO}:{version}")
        path.unlink(missing_ok=True)
    up = run_cli("up", "local", timeout=1800)
    for what, proc in (("export", exported), ("import", imported)):
        report(request, f"images {what}: {proc.stdout.strip().splitlines()[-1:]}")
    return {
        "exported": exported,
        "removed": removed,
        "imported": imported,
        "same image": after is not None and after.id == image.id,
        "up": up,
    }


def test_export_writes_the_archive(round_trip) -> None:
    proc = round_trip["exported"]
    assert (proc.returncode, bool(SECONDS.search(proc.stdout))) == (0, True), proc.stderr[-2000:]


def test_removing_the_tag_leaves_no_image_to_use(round_trip) -> None:
    assert round_trip["removed"]


def test_import_loads_the_same_image(round_trip) -> None:
    proc = round_trip["imported"]
    assert (proc.returncode, round_trip["same image"]) == (0, True), proc.stderr[-2000:]


def test_up_uses_the_imported_image_without_baking(round_trip, tag) -> None:
    proc = round_trip["up"]
    assert (proc.returncode, f"image {tag}: cached" in proc.stderr, "baking" in proc.stderr) == (
        0,
        True,
        False,
    ), proc.stderr[-2000:]
