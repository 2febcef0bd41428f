"""A node container whose image was rebuilt or removed under its tag is recreated by `up`.

Node image tags are content hashes, so a rebuild (a cold CI on a machine whose images
were removed while stopped containers stayed) gives the same tag a new id. A container
left on the old id must be recreated, not started; `status` must still name it.

Uses a one-node cluster of its own (no converge, seconds) made from the session's node
image, which it re-tags and always restores.
"""

from __future__ import annotations

import subprocess

import docker
import pytest
from rich.console import Console

from ringfleet.providers.docker import cluster as local
from ringfleet.spec import load_spec_file
from tests.conftest import ROOT

pytestmark = pytest.mark.docker

QUIET = Console(stderr=True, quiet=True)
NODE = "rf-imgtest-cpu-1"


def _docker(*argv: str, stdin: str | None = None) -> str:
    proc = subprocess.run(
        ["docker", *argv], input=stdin, capture_output=True, text=True, timeout=300, check=True
    )
    return proc.stdout.strip()


@pytest.fixture(scope="module")
def lone_spec(tmp_path_factory, local_cluster):
    text = (ROOT / "Pulumi.local.yaml").read_text()
    changed = (
        text.replace("name: rf-local", "name: rf-imgtest", 1)
        .replace("count: 3", "count: 1", 1)
        .replace("10.213.0.0/24", "10.213.9.0/24", 1)
    )
    path = tmp_path_factory.mktemp("imgtest") / "Pulumi.imgtest.yaml"
    path.write_text(changed)
    return load_spec_file(path, "imgtest")


@pytest.fixture(scope="module")
def outcomes(lone_spec):
    """Up; rebuild the tag; up; remove that rebuilt image; up. Restores the tag."""
    client = docker.from_env()
    first = local.up(lone_spec, ROOT, console=QUIET, converge_nodes=False)
    tag = client.containers.get(NODE).image.tags[0]
    original = client.images.get(tag).id
    seen = {"first": first}
    try:
        # A rebuild: same tag, new id (a label is enough to change the id).
        _docker("build", "-q", "-t", tag, "-", stdin=f"FROM {tag}\nLABEL rf-test=rebuilt\n")
        rebuilt = client.images.get(tag).id
        seen["rebuilt"] = local.up(lone_spec, ROOT, console=QUIET, converge_nodes=False)
        seen["rebuilt id"] = (client.containers.get(NODE).attrs["Image"], rebuilt)
        # Back to the original id; the rebuilt one goes while the node is stopped on it.
        client.containers.get(NODE).stop(timeout=1)
        _docker("tag", original, tag)
        _docker("rmi", "-f", rebuilt)
        seen["status"] = local.status(lone_spec)
        seen["removed"] = local.up(lone_spec, ROOT, console=QUIET, converge_nodes=False)
        seen["removed id"] = (client.containers.get(NODE).attrs["Image"], original)
    finally:
        _docker("tag", original, tag)
        local.down(lone_spec, ROOT, console=QUIET)
    return seen


def test_first_up_creates_the_node(outcomes) -> None:
    assert outcomes["first"].created == [NODE]


@pytest.mark.parametrize("case", ["rebuilt", "removed"])
def test_container_on_a_stale_image_is_recreated(outcomes, case) -> None:
    assert outcomes[case].recreated == [NODE]


@pytest.mark.parametrize("case", ["rebuilt id", "removed id"])
def test_recreated_container_runs_the_tags_image(outcomes, case) -> None:
    running, wanted = outcomes[case]
    assert running == wanted


def test_status_names_a_container_whose_image_was_removed(outcomes) -> None:
    (row,) = outcomes["status"]
    assert row.image.endswith("(removed)")
