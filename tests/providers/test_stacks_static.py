"""The static stack creates nothing; the entry point runs for every env as `pulumi up` runs it."""

from __future__ import annotations

import json
import runpy

import pulumi  # noqa: E402
import pytest

from ringfleet.providers import outputs as out  # noqa: E402
from ringfleet.spec import CONFIG_KEY, load_spec  # noqa: E402
from ringfleet.yamlio import read_yaml  # noqa: E402
from stacks.mocks import ProgramRun, run_program, set_ringfleet_mocks  # noqa: E402
from tests.conftest import ROOT

SPEC = load_spec("onprem", ROOT)
HOSTS = [(pool.name, host) for pool in SPEC.cluster.pools for host in pool.hosts or []]
ENVS = ["local", "aws-dev", "onprem"]


@pytest.fixture(scope="module")
def run() -> ProgramRun:
    return run_program(SPEC, ROOT)


def test_creates_no_resources(run):
    assert run.registrations == []


def test_exports_exactly_the_shared_keys(run):
    assert set(run.outputs) == set(out.REQUIRED_KEYS)


@pytest.mark.parametrize("key", out.REQUIRED_KEYS)
def test_outputs_are_the_static_outputs(run, key):
    assert run.outputs[key] == out.static_outputs(SPEC)[key]


@pytest.mark.parametrize(("pool", "host"), HOSTS, ids=[h.name for _, h in HOSTS])
def test_host_address_comes_from_the_spec(run, pool, host):
    nodes = {n["name"]: n for n in run.outputs[out.OUT_POOLS][pool]["nodes"]}
    assert nodes[host.name]["privateIp"] == host.address


def test_no_output_is_secret(run):
    assert run.secret_keys == set()


# --- the entry point ------------------------------------------------------------


def expected_keys(env: str) -> set[str]:
    keys = set(out.REQUIRED_KEYS)
    if load_spec(env, ROOT).cluster.provider == "aws":
        keys.add(out.OUT_SSH_PRIVATE_KEY)
    return keys


@pytest.mark.parametrize("env", ENVS)
def test_entry_point_exports_every_key_from_stack_config(env, monkeypatch):
    # Pulumi hands the program the stack's config; the env is the stack name.
    raw = read_yaml(ROOT / f"Pulumi.{env}.yaml", env)["config"][CONFIG_KEY]
    set_ringfleet_mocks(env)
    pulumi.runtime.set_all_config({CONFIG_KEY: json.dumps(raw)})
    exported: dict[str, object] = {}
    monkeypatch.setattr(pulumi, "export", lambda key, value: exported.__setitem__(key, value))

    @pulumi.runtime.test
    def main():
        runpy.run_path(str(ROOT / "stacks"), run_name="__main__")

    try:
        main()
    finally:
        pulumi.runtime.set_all_config({})
    assert set(exported) == expected_keys(env)
