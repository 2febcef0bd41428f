"""`ringfleet images build reports`: the example added profile, built on tf2.15's image.

Uses the session's node image (conftest `local_cluster` bakes it); the build runs only
what profiles/reports.yaml adds, then a container of the new image imports the added
package and Horovod's TensorFlow binding.
"""

from __future__ import annotations

import json
import re
import subprocess

import docker
import pytest

from tests.conftest import report, run_cli

pytestmark = pytest.mark.docker

BUILT = re.compile(r"build reports: (ringfleet/node:reports-[0-9a-f]{16}) \((.*?)\), on (\S+),")
IMPORTS = "import tabulate, horovod.tensorflow as hvd; print(tabulate.__version__, hvd.__name__)"


@pytest.fixture(scope="module")
def builds(local_cluster, request):
    client = docker.from_env()
    found = [t for i in client.images.list("ringfleet/node") for t in i.tags]
    for tag in found:
        if tag.startswith("ringfleet/node:reports-"):
            client.images.remove(tag, force=True)  # a build of an earlier session
    first = run_cli("images", "build", "reports", timeout=900)
    again = run_cli("images", "build", "reports", timeout=300)
    for line in first.stdout.splitlines():
        if line.startswith("build reports:"):
            report(request, f"added profile: {line}")
    return first, again


@pytest.fixture(scope="module")
def built(builds):
    first, _ = builds
    match = BUILT.search(first.stdout + first.stderr)
    assert match, first.stdout + first.stderr
    return match.groups()


def run_in(tag: str, *argv: str) -> str:
    """stdout of argv in a container of `tag`; stderr (TensorFlow's banner) only on failure."""
    proc = subprocess.run(
        ["docker", "run", "--rm", tag, *argv], capture_output=True, text=True, timeout=300
    )
    return proc.stdout.strip() if proc.returncode == 0 else proc.stderr.strip()[-300:]


def test_build_is_on_the_parent_image(built) -> None:
    _, _, parent = built
    assert parent.startswith("ringfleet/node:tf2.15-")


def test_a_second_build_is_cached(builds, built) -> None:
    _, again = builds
    assert f"build reports: {built[0]} (cached)" in again.stdout + again.stderr


def test_the_image_imports_the_added_package_and_horovod(built) -> None:
    tag, _, _ = built
    assert run_in(tag, "/opt/ringfleet/venv/bin/python", "-c", IMPORTS) == (
        "0.9.0 horovod.tensorflow"
    )


def test_the_image_has_the_added_debian_package_held(built) -> None:
    tag, _, _ = built
    assert run_in(tag, "apt-mark", "showhold").split().count("jq") == 1


def test_the_image_record_names_what_was_added(built) -> None:
    tag, _, _ = built
    record = json.loads(run_in(tag, "cat", "/etc/ringfleet/image.json"))
    added = {"pip": ["tabulate==0.9.0"], "apt": ["jq=1.6-2.1+deb12u3"]}
    assert record["versions"]["added"] == added


def test_the_image_names_itself_for_the_converge(built) -> None:
    tag, _, _ = built
    assert run_in(tag, "cat", "/etc/ringfleet/node-image") == tag
