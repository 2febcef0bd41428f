"""Reproducible-build tier: a cluster built from nothing locks exactly as the committed lock.

The build removes everything it could reuse (the env's containers and volume, its
SSH keys, the base image and the node image), runs `up`, and reads the lock
(`ringfleet lock`'s code path) from the nodes. The lock must equal the one committed
in tests/data/repro/ringfleet.lock: a stronger promise than two builds on one machine
agreeing, since any machine must reproduce the committed lock, and it costs one cold
build, not two. The kernel is left out of the comparison: containers run the host's.

`make repro-lock` rebuilds from cold and rewrites the committed lock (docs/pinning.md);
review its diff and commit it when a pin moved on purpose. The tier runs on its own,
first, in `make test` (`pytest -m repro`); the node image it leaves behind is the one
the rest of the suite uses.

The env has its own name, network and volume (tests/data/repro), so the tier never
touches the `local` cluster or its data.
"""

from __future__ import annotations

import difflib
import io
import os
import time
from dataclasses import dataclass

import docker
import pytest
import yaml
from rich.console import Console

from ringfleet.checks.lock import Drift, dump_lock, lock_env
from ringfleet.providers import for_spec
from ringfleet.providers.docker import cluster as local
from ringfleet.providers.docker.engine import docker_client
from ringfleet.providers.docker.images import base_image, node_image_tag
from ringfleet.spec import ClusterSpec, load_spec
from tests.conftest import ROOT, report

pytestmark = [pytest.mark.docker, pytest.mark.repro]

ENV = "repro"
SPECS = ROOT / "tests" / "data" / "repro"
COMMITTED_LOCK = SPECS / "ringfleet.lock"
# `make repro-lock` sets it: the build rewrites the committed lock instead of comparing.
UPDATE_ENV = "RINGFLEET_REPRO_UPDATE"
# Per pool, what the host decides rather than the build: containers run its kernel.
HOST_KEYS = ("kernel",)
REGENERATE = (
    "If the change is meant (a pin or the mirror moved), regenerate "
    f"{COMMITTED_LOCK.relative_to(ROOT)} with `make repro-lock` (a cold build, ~8 min), "
    "review its diff and commit it; see docs/pinning.md."
)


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
    read = lock_env(ROOT, ENV, for_spec(spec).nodes())
    return ColdBuild(
        removed, console.file.getvalue(), up_seconds, dump_lock(read.lock), read.drifts
    )


@pytest.fixture(scope="module")
def spec() -> ClusterSpec:
    return load_spec(ENV, SPECS)


@pytest.fixture(scope="module")
def build(spec, request, tmp_path_factory) -> ColdBuild:
    out = tmp_path_factory.mktemp("repro")
    try:
        done = cold_build(spec)
        (out / "ringfleet.lock").write_text(done.lock_text)
        if os.environ.get(UPDATE_ENV):
            COMMITTED_LOCK.write_text(done.lock_text)
        report(
            request,
            f"repro: cold build: up {done.up_seconds:.0f} s "
            f"(removed {', '.join(done.removed) or 'nothing'}); lock in {out}",
        )
        yield done
    finally:
        # The images stay: the rest of the suite uses the node image of this build.
        local.down(spec, ROOT, purge=True, console=Console(file=io.StringIO()))


def comparable(lock_text: str) -> list[str]:
    """The lock's lines without what the host decides (HOST_KEYS of each pool)."""
    lock = yaml.safe_load(lock_text)
    for entry in lock.get("pools", {}).values():
        for key in HOST_KEYS:
            entry.pop(key, None)
    return yaml.safe_dump(lock, sort_keys=True, width=1000).splitlines()


def lock_difference(committed: str, built: str) -> str:
    """A readable diff of the committed lock and a build's, and how to regenerate; "" if equal."""
    diff = list(
        difflib.unified_diff(
            comparable(committed),
            comparable(built),
            str(COMMITTED_LOCK.relative_to(ROOT)),
            "this cold build",
            lineterm="",
        )
    )
    if not diff:
        return ""
    return "\n".join(["the cold build differs from the committed lock:", *diff[:120], REGENERATE])


def test_cold_build_made_the_base_image(build) -> None:
    assert "building base image" in build.log, build.log[-2000:]


def test_cold_build_baked_the_node_image(build) -> None:
    assert ": baking from" in build.log, build.log[-2000:]


def test_nodes_of_a_cold_build_agree(build) -> None:
    assert build.drifts == []


def test_cold_build_locks_as_the_committed_lock(build) -> None:
    message = lock_difference(COMMITTED_LOCK.read_text(encoding="utf-8"), build.lock_text)
    assert message == "", message


@pytest.mark.parametrize("part", ["debian", "python"])
def test_lock_of_a_cold_build_lists_packages(build, part) -> None:
    # An empty package list would make any two locks equal.
    lock = yaml.safe_load(build.lock_text)
    assert lock["pools"]["cpu"][part]["count"] > 10, lock["pools"]["cpu"][part]
