"""Reproducible-build tier: the cluster built from nothing twice locks byte-identically.

Each build removes everything a build could reuse (the env's containers and volume,
its SSH keys, the base image and the node image), then runs `up` and reads the
lock (`ringfleet lock`'s code path) from the nodes. Two cold builds cost about
twice a first `up`, so this tier runs on its own, first, in `make test`
(`pytest -m repro`); the node image its second build leaves behind is the one the
rest of the suite uses.

The env has its own name, network and volume (tests/data/repro), so the tier never
touches the `local` cluster or its data.
"""

from __future__ import annotations

import difflib
import io
import time
from dataclasses import dataclass

import docker
import pytest
import yaml
from rich.console import Console

from ringfleet import local
from ringfleet.engine import docker_client
from ringfleet.images import base_image, node_image_tag
from ringfleet.lock import Drift, dump_lock, lock_env
from ringfleet.spec import ClusterSpec, load_spec
from tests.conftest import ROOT, report

pytestmark = [pytest.mark.docker, pytest.mark.repro]

ENV = "repro"
SPECS = ROOT / "tests" / "data" / "repro"
BUILDS = 2


@dataclass(frozen=True)
class ColdBuild:
    removed: list[str]
    log: str
    up_seconds: float
    lock_text: str
    drifts: list[Drift]


def _images(spec: ClusterSpec) -> list[str]:
    pools = [p for p in spec.pools.values() if p.nodes]
    return sorted({base_image(p) for p in pools} | {node_image_tag(spec, p, ROOT) for p in pools})


def cold_build(spec: ClusterSpec) -> ColdBuild:
    console = Console(file=io.StringIO(), width=200)
    local.down(spec, ROOT, purge=True, console=console)
    client = docker_client()
    removed = []
    for tag in _images(spec):
        try:
            # force: untag even when an image of another env was built on top of it;
            # the build looks images up by tag, so an untagged one is not reused.
            client.images.remove(tag, force=True)
            removed.append(tag)
        except docker.errors.ImageNotFound:
            pass
    started = time.monotonic()
    local.up(spec, ROOT, console=console)
    up_seconds = time.monotonic() - started
    read = lock_env(ROOT, ENV)
    return ColdBuild(
        removed, console.file.getvalue(), up_seconds, dump_lock(read.lock), read.drifts
    )


@pytest.fixture(scope="module")
def spec() -> ClusterSpec:
    return load_spec(ENV, SPECS)


@pytest.fixture(scope="module")
def builds(spec, request, tmp_path_factory) -> list[ColdBuild]:
    out = tmp_path_factory.mktemp("repro")
    done = []
    try:
        for n in range(1, BUILDS + 1):
            build = cold_build(spec)
            (out / f"ringfleet.lock.{n}").write_text(build.lock_text)
            done.append(build)
            report(
                request,
                f"repro: cold build {n}: up {build.up_seconds:.0f} s "
                f"(removed {', '.join(build.removed) or 'nothing'}); lock in {out}",
            )
        yield done
    finally:
        # The images stay: the rest of the suite uses the node image of the last build.
        local.down(spec, ROOT, purge=True, console=Console(file=io.StringIO()))


@pytest.mark.parametrize("n", range(BUILDS))
def test_cold_build_made_the_base_image(builds, n) -> None:
    assert "building base image" in builds[n].log, builds[n].log[-2000:]


@pytest.mark.parametrize("n", range(BUILDS))
def test_cold_build_baked_the_node_image(builds, n) -> None:
    assert ": baking from" in builds[n].log, builds[n].log[-2000:]


@pytest.mark.parametrize("n", range(BUILDS))
def test_nodes_of_a_cold_build_agree(builds, n) -> None:
    assert builds[n].drifts == []


def test_two_cold_builds_lock_byte_identically(builds) -> None:
    first, second = builds[0].lock_text, builds[-1].lock_text
    diff = difflib.unified_diff(
        first.splitlines(), second.splitlines(), "build 1", f"build {BUILDS}", lineterm=""
    )
    assert first == second, "\n".join(list(diff)[:80])


@pytest.mark.parametrize("part", ["debian", "python"])
def test_lock_of_a_cold_build_lists_packages(builds, part) -> None:
    # An empty package list would make any two locks equal.
    lock = yaml.safe_load(builds[-1].lock_text)
    assert lock["pools"]["cpu"][part]["count"] > 10, lock["pools"]["cpu"][part]
