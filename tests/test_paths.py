"""ringfleet.paths: each on-disk location is where the README and docs say it is."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringfleet import paths
from ringfleet.envlock import lock_file
from ringfleet.state import cluster_keypair, stack_key_path, write_outputs

ROOT = Path("/project")


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (paths.inventory_path(ROOT, "e"), "inventories/e/hosts.yml"),
        (paths.lock_path(ROOT, "e"), "inventories/e/ringfleet.lock"),
        (paths.baseline_path(ROOT, "e"), "inventories/e/perf-baseline.json"),
        (paths.env_lock_path(ROOT, "e"), ".ringfleet/e.lock"),
        (paths.outputs_path(ROOT, "e"), ".ringfleet/e/outputs.json"),
        (paths.fingerprints_path(ROOT, "e"), ".ringfleet/e/fingerprints.json"),
        (paths.cluster_key_path(ROOT, "e"), ".ringfleet/e/ssh/id_ed25519"),
        (paths.stack_key_path(ROOT, "e"), ".ringfleet/e/ssh/stack_key"),
        (paths.bake_state_dir(ROOT, "e", "cpu"), ".ringfleet/e-bake-cpu"),
    ],
)
def test_controller_location(built, expected) -> None:
    assert built.relative_to(ROOT).as_posix() == expected


@pytest.mark.parametrize(
    ("built", "expected"),
    [
        (paths.runs_dir("/shared/"), "/shared/runs"),
        (paths.run_dir("/shared", "digits-1"), "/shared/runs/digits-1"),
        (paths.NODE_VENV, "/opt/ringfleet/venv"),
    ],
)
def test_node_location(built, expected) -> None:
    assert built == expected


def test_outputs_are_written_where_paths_says(tmp_path) -> None:
    assert write_outputs(tmp_path, "e", {}) == paths.outputs_path(tmp_path, "e")


def test_cluster_key_is_made_where_paths_says(tmp_path) -> None:
    assert cluster_keypair(tmp_path, "e")[0] == paths.cluster_key_path(tmp_path, "e")


def test_stack_key_is_read_where_paths_says(tmp_path) -> None:
    assert stack_key_path(tmp_path, "e") == paths.stack_key_path(tmp_path, "e")


def test_env_lock_is_taken_where_paths_says(tmp_path) -> None:
    assert lock_file(tmp_path, "e") == paths.env_lock_path(tmp_path, "e")
