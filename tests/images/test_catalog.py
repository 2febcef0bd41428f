"""The catalog against the real engine: `images list` and the record an image carries."""

from __future__ import annotations

import json

import pytest

from ringfleet import compat
from ringfleet.images.record import make_record, read_record, read_versions, write_record
from ringfleet.providers.docker.baseimage import find_image
from ringfleet.providers.docker.engine import docker_client
from ringfleet.providers.docker.images import node_image_tag
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.docker

RECORD_REPO = "ringfleet/test-record"
TF215 = compat.PROFILES[0]


@pytest.fixture(scope="module")
def client():
    return docker_client()


@pytest.fixture(scope="module")
def tag(local_cluster):
    return node_image_tag(local_cluster, local_cluster.pools["cpu"], ROOT)


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
