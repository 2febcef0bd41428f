"""The tf2.21 profile end to end: its own cached node image, Horovod's build, digits training.

Slower tier: it bakes a second node image (TensorFlow 2.21 and a patched Horovod
build) the first time; later runs reuse the image by its content hash.
"""

from __future__ import annotations

import io
import json
import re

import pytest
from rich.console import Console

from ringfleet.jobs.run import run_job
from ringfleet.nodes.docker import DockerNode
from ringfleet.providers.docker import cluster as local
from ringfleet.providers.docker.engine import docker_client
from ringfleet.providers.docker.images import node_image_tag
from ringfleet.spec import load_spec
from tests.conftest import ROOT, report

pytestmark = [pytest.mark.docker, pytest.mark.slow]

SPECS = ROOT / "tests" / "data" / "tf221"
QUIET = Console(file=io.StringIO())


# Lines of `up` and of the run worth keeping in the test log: bake time and image size,
# time to ready, and the job's result.
REPORTED = re.compile(r"baked in|: cached|ready in|val_accuracy=|completed \(exit|failed \(exit")


def _report(request, text: str) -> None:
    for line in text.splitlines():
        if REPORTED.search(line):
            report(request, f"tf2.21: {line.strip()}")


@pytest.fixture(scope="module")
def cluster(request):
    spec = load_spec("tf221", SPECS)
    console = Console(file=io.StringIO(), width=200)
    report = local.up(spec, ROOT, console=console)
    _report(request, console.file.getvalue())
    yield spec, report
    local.down(spec, ROOT, purge=True, console=QUIET)


@pytest.fixture(scope="module")
def digits(cluster, request):
    spec, _ = cluster
    console = Console(file=io.StringIO(), width=200)
    result = run_job(spec, ROOT / "jobs" / "digits.yaml", console=console)
    _report(request, console.file.getvalue())
    return result


def node(spec, index: int = 0) -> DockerNode:
    return DockerNode(docker_client(), spec.nodes[index].name)


def test_pool_uses_the_tf221_profile_image(cluster) -> None:
    spec, _ = cluster
    tag = node_image_tag(spec, spec.pool("cpu"), ROOT)
    assert tag.startswith("ringfleet/node:tf2.21-")


def test_second_up_reuses_the_cached_image(cluster) -> None:
    spec, _ = cluster
    console = Console(file=io.StringIO())
    local.up(spec, ROOT, console=console, converge_nodes=False)
    assert ": cached" in console.file.getvalue()


@pytest.mark.parametrize("part", ["TensorFlow", "MPI", "Gloo"])
def test_horovod_check_build_lists(cluster, part: str) -> None:
    spec, _ = cluster
    _, out = node(spec).run(["/opt/ringfleet/venv/bin/horovodrun", "--check-build"])
    assert f"[X] {part}" in [line.strip() for line in out.splitlines()]


@pytest.mark.parametrize(("module", "version"), [("tensorflow", "2.21.0"), ("tf_keras", "2.21.0")])
def test_node_venv_version(cluster, module: str, version: str) -> None:
    spec, _ = cluster
    _, out = node(spec).run(
        ["/opt/ringfleet/venv/bin/python", "-c", f"import {module}; print({module}.__version__)"]
    )
    assert out.strip().splitlines()[-1] == version


def test_digits_trains_on_tf221(digits) -> None:
    assert digits.exit_code == 0, digits.reason


def test_digits_reaches_target_accuracy_on_tf221(cluster, digits) -> None:
    spec, _ = cluster
    _, text = node(spec).run(["cat", f"{digits.run_dir}/metrics.json"])
    metrics = json.loads(text)
    assert (metrics["ranks"], metrics["val_accuracy"] >= 0.9) == (4, True), metrics
