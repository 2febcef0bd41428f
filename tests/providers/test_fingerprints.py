"""Which nodes `up` converges: the per-node fingerprint rule (no Docker)."""

from __future__ import annotations

from ringfleet.converge.inventory import render_inventory
from ringfleet.providers.docker.cluster import _host_vars, touched_or_changed
from ringfleet.providers.outputs import static_outputs

PRINT = {"roles": "r1", "inventory vars": "v1", "image": "i1", "container": "c1", "host keys": "k1"}


def test_unchanged_node_needs_no_converge() -> None:
    assert touched_or_changed("n1", set(), dict(PRINT), dict(PRINT)) == ""


def test_created_or_started_node_is_converged() -> None:
    assert touched_or_changed("n1", {"n1"}, dict(PRINT), dict(PRINT)) == (
        "container created or started"
    )


def test_node_without_a_record_is_converged() -> None:
    assert touched_or_changed("n1", set(), None, dict(PRINT)) == "never converged"


def test_peer_host_key_change_is_named() -> None:
    now = {**PRINT, "host keys": "k2"}
    assert touched_or_changed("n1", set(), dict(PRINT), now) == "host keys changed"


def test_host_vars_of_a_node_include_its_pool_vars(local) -> None:
    inventory = render_inventory(static_outputs(local))
    merged = _host_vars(inventory, local.nodes[0].name)
    assert (
        merged["ringfleet_pool"],
        merged["ringfleet_ssh_user"],
        "tensorflow_version" in merged,
    ) == (
        "cpu",
        "rf",
        True,
    )
