"""The docker stack under Pulumi's mocks, and its contract with `ringfleet.container`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pulumi  # noqa: E402
import pytest

from ringfleet.providers import outputs as out  # noqa: E402
from ringfleet.providers.docker.container import (  # noqa: E402
    LABEL_POOL,
    ContainerDef,
    container_definitions,
    network_name,
    volume_name,
)
from ringfleet.providers.docker.images import node_image_tag  # noqa: E402
from ringfleet.spec import load_spec  # noqa: E402
from stacks import docker_cluster  # noqa: E402
from stacks.mocks import ProgramRun, run_program, set_ringfleet_mocks  # noqa: E402
from tests.conftest import ROOT

SPEC = load_spec("local", ROOT)
POOLS = sorted(SPEC.pools)
POOLS_WITH_NODES = [p for p in POOLS if SPEC.pools[p].nodes]
NODES = [n.name for n in SPEC.nodes]
MIB = 1024**2


def definitions() -> dict[str, ContainerDef]:
    """The definitions as of now: image tags follow the roles, which may change between runs."""
    images = {name: node_image_tag(SPEC, pool, ROOT) for name, pool in SPEC.pools.items()}
    return {d.name: d for d in container_definitions(SPEC, images)}


A_DEFINITION = next(iter(definitions().values()))

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"

# How each ContainerDef field shows in the registered docker.Container inputs:
# field -> (value read from the inputs, value expected from the definition).
Check = tuple[Callable[[dict], object], Callable[[ContainerDef], object]]
FIELD_CHECKS: dict[str, Check] = {
    "name": (lambda i: i["name"], lambda d: d.name),
    "hostname": (lambda i: i["hostname"], lambda d: d.hostname),
    "image": (lambda i: i["image"], lambda d: d.image),
    "labels": (lambda i: {x["label"]: x["value"] for x in i["labels"]}, lambda d: d.labels),
    "network": (lambda i: [n["name"] for n in i["networksAdvanced"]], lambda d: [d.network]),
    "volume": (lambda i: [m["source"] for m in i["mounts"]], lambda d: [d.volume]),
    "mount": (
        lambda i: [(m["type"], m["target"]) for m in i["mounts"]],
        lambda d: [("volume", d.mount)],
    ),
    "nano_cpus": (lambda i: round(float(i.get("cpus", 0)) * 10**9), lambda d: d.nano_cpus),
    "cpuset": (lambda i: i.get("cpuSet"), lambda d: d.cpuset),
    "mem_bytes": (lambda i: i["memory"] * MIB, lambda d: d.mem_bytes),
    "gpus": (lambda i: sum(r["count"] for r in i.get("deviceRequests", [])), lambda d: d.gpus),
    "command": (lambda i: i["command"], lambda d: list(d.command)),
    "shm_bytes": (lambda i: i["shmSize"] * MIB, lambda d: d.shm_bytes),
    "ulimits": (
        lambda i: [(u["name"], u["soft"], u["hard"]) for u in i["ulimits"]],
        lambda d: [tuple(u) for u in d.ulimits],
    ),
    "init": (lambda i: i["init"], lambda d: d.init),
}


@pytest.fixture(scope="module")
def snapshot() -> tuple[ProgramRun, dict[str, ContainerDef]]:
    # Definitions and run from the same moment, so both see the same roles tree.
    defs = definitions()
    return run_program(SPEC, ROOT), defs


@pytest.fixture(scope="module")
def run(snapshot) -> ProgramRun:
    return snapshot[0]


@pytest.fixture(scope="module")
def defs(snapshot) -> dict[str, ContainerDef]:
    return snapshot[1]


def registered(run: ProgramRun, name: str):
    (reg,) = [r for r in run.of_type(CONTAINER) if r.name == name]
    return reg


# --- the contract: registered containers == container_definitions -------------


def test_every_definition_field_is_checked():
    assert {f.name for f in dataclasses.fields(ContainerDef)} == set(FIELD_CHECKS)


@pytest.mark.parametrize("field", sorted(FIELD_CHECKS))
@pytest.mark.parametrize("node", NODES)
def test_container_matches_its_definition(run, defs, node, field):
    read, expected = FIELD_CHECKS[field]
    assert read(registered(run, node).inputs) == expected(defs[node])


def test_one_container_per_definition(run, defs):
    assert sorted(r.name for r in run.of_type(CONTAINER)) == sorted(defs)


@pytest.mark.parametrize("pool", POOLS)
def test_containers_per_pool(run, pool):
    names = [
        r.name
        for r in run.of_type(CONTAINER)
        if {x["label"]: x["value"] for x in r.inputs["labels"]}[LABEL_POOL] == pool
    ]
    assert sorted(names) == sorted(n.name for n in SPEC.pools[pool].nodes)


@pytest.mark.parametrize("pool", POOLS_WITH_NODES)
def test_image_is_the_baked_node_image(run, defs, pool):
    images = {registered(run, n.name).inputs["image"] for n in SPEC.pools[pool].nodes}
    assert images == {defs[n.name].image for n in SPEC.pools[pool].nodes}


@pytest.mark.parametrize("pool", POOLS_WITH_NODES)
def test_definition_image_is_the_node_image_tag(pool):
    tag = node_image_tag(SPEC, SPEC.pools[pool], ROOT)
    assert {d.image for d in definitions().values() if d.pool == pool} == {tag}


def test_gpus_become_an_nvidia_device_request():
    defn = dataclasses.replace(A_DEFINITION, gpus=2)
    (request,) = docker_cluster.container_args(defn)["device_requests"]
    assert (request.driver, request.count, request.capabilities) == ("nvidia", 2, ["gpu"])


def test_no_device_request_without_gpus():
    assert "device_requests" not in docker_cluster.container_args(
        dataclasses.replace(A_DEFINITION, gpus=0)
    )


def test_memory_rounds_down_to_whole_mib():
    # The provider takes MiB; rounding down never raises the limit above the spec's.
    defn = dataclasses.replace(A_DEFINITION, mem_bytes=3 * 10**9)
    assert docker_cluster.container_args(defn)["memory"] == 2861


# --- network, volume, wiring --------------------------------------------------


def test_network_is_named_as_the_definitions_say(run):
    assert [r.inputs["name"] for r in run.of_type(NETWORK)] == [network_name(SPEC)]


def test_network_has_the_spec_subnet(run):
    (net,) = run.of_type(NETWORK)
    assert [c["subnet"] for c in net.inputs["ipamConfigs"]] == [SPEC.cluster.network.subnet]


def test_volume_is_named_as_the_definitions_say(run):
    assert [r.inputs["name"] for r in run.of_type(VOLUME)] == [volume_name(SPEC)]


@pytest.mark.parametrize("node", NODES)
def test_container_depends_on_network_and_volume(run, node):
    (net,) = run.of_type(NETWORK)
    (vol,) = run.of_type(VOLUME)
    assert {net.urn, vol.urn} <= set(registered(run, node).dependencies)


@pytest.mark.parametrize("typ", [CONTAINER, NETWORK, VOLUME])
def test_every_resource_is_a_child_of_a_component(run, typ):
    parents = {run.by_urn(r.parent).typ for r in run.of_type(typ)}
    assert all(p.startswith("ringfleet:docker:") for p in parents), parents


def test_nothing_is_protected(run):
    # A local cluster is disposable: `ringfleet down local` must remove all of it.
    assert [r.name for r in run.registrations if r.protect] == []


# --- outputs ------------------------------------------------------------------


def test_exports_exactly_the_shared_keys(run):
    assert set(run.outputs) == set(out.REQUIRED_KEYS)


def test_no_output_is_secret(run):
    assert run.secret_keys == set()


@pytest.mark.parametrize("key", out.REQUIRED_KEYS)
def test_outputs_are_static_outputs_with_container_addresses(run, key):
    assert run.outputs[key] == out.static_outputs(SPEC, run.addresses)[key]


@pytest.mark.parametrize("node", NODES)
def test_node_address_is_the_containers(run, defs, node):
    exported = run.outputs[out.OUT_POOLS][defs[node].pool]["nodes"]
    (entry,) = [n for n in exported if n["name"] == node]
    assert entry["privateIp"] == run.addresses[node]["privateIp"]


# --- a component on its own ---------------------------------------------------


@pytest.mark.parametrize("pool", POOLS_WITH_NODES)
@pulumi.runtime.test
def test_node_pool_component_images(pool):
    set_ringfleet_mocks("local")
    defs = [d for d in definitions().values() if d.pool == pool]
    node_pool = docker_cluster.NodePool(f"t-{pool}", docker_cluster.NodePoolArgs(definitions=defs))

    def check(images):
        assert images == [d.image for d in defs]

    return pulumi.Output.all(*[c.image for c in node_pool.containers.values()]).apply(check)
