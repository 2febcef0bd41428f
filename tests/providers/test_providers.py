"""ringfleet.providers: one interface, picked in one place, each provider with its own rules."""

from __future__ import annotations

import re

import pytest

from ringfleet.converge.inventory import render_inventory
from ringfleet.errors import RingfleetError
from ringfleet.providers import IMPLEMENTATIONS, Provider, for_spec, provider_class
from ringfleet.providers.outputs import static_outputs
from ringfleet.spec import load_spec
from tests.conftest import ROOT

ENVS = {"local": "docker", "aws-dev": "aws", "onprem": "static"}
# `provider ==`, `!=` or `in`: a choice between providers made outside ringfleet/providers/.
COMPARISON = re.compile(r"provider (==|!=|in) ")
MAX_COMPARISONS_OUTSIDE = 2


@pytest.mark.parametrize(("env", "name"), ENVS.items())
def test_for_spec_picks_the_env_s_provider(env, name) -> None:
    assert for_spec(load_spec(env, ROOT)).name == name


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_every_implementation_is_a_provider(name) -> None:
    spec = load_spec({v: k for k, v in ENVS.items()}[name], ROOT)
    assert isinstance(provider_class(name)(spec), Provider)


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_implementation_is_registered_under_its_name(name) -> None:
    assert provider_class(name).name == name


@pytest.mark.parametrize("name", IMPLEMENTATIONS)
def test_every_provider_runs_jobs(name) -> None:
    # aws nodes are SshNodes like static ones (tests/providers/test_aws_nodes.py).
    assert provider_class(name).runs_jobs


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ("local", {"ansible_connection", "ansible_host", "ansible_user"}),
        ("aws-dev", {"ansible_host", "ansible_user"}),
        ("onprem", {"ansible_host"}),
    ],
)
def test_inventory_reaches_nodes_the_provider_s_way(env, expected) -> None:
    spec = load_spec(env, ROOT)
    addresses = {n.name: {"privateIp": "10.0.0.9"} for n in spec.nodes}
    hosts = render_inventory(static_outputs(spec, addresses))["all"]["children"]
    first = next(h for g in hosts.values() for h in (g.get("hosts") or {}).values())
    assert {k for k in first if k.startswith("ansible_")} == expected


def test_unknown_provider_in_outputs_is_one_line() -> None:
    outputs = static_outputs(load_spec("onprem", ROOT))
    outputs["provider"] = "gcp"
    with pytest.raises(RingfleetError) as refused:
        render_inventory(outputs, "outputs.json")
    assert refused.value.line() == (
        "ringfleet: error: outputs.json: provider: must be one of docker, aws, static (got 'gcp')"
    )


def test_provider_is_chosen_in_at_most_two_places_outside_providers() -> None:
    found = [
        f"{path.relative_to(ROOT)}:{n}"
        for top in ("ringfleet", "stacks")
        for path in sorted((ROOT / top).rglob("*.py"))
        if "providers" not in path.relative_to(ROOT / top).parts
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if COMPARISON.search(line)
    ]
    assert len(found) <= MAX_COMPARISONS_OUTSIDE, found
