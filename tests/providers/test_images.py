"""The node image tag: a digest of what can change a node, and nothing else (no Docker)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ringfleet.converge.nodefiles import IMAGE_INPUTS
from ringfleet.providers.docker.images import node_image_tag
from tests.conftest import ROOT


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the image inputs, free to edit."""
    for name in IMAGE_INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, tmp_path / name)
    return tmp_path


def _tag(local, root: Path) -> str:
    return node_image_tag(local, local.pools["cpu"], root)


def test_copy_of_the_inputs_has_the_project_tag(local, project) -> None:
    assert _tag(local, project) == _tag(local, ROOT)


@pytest.mark.parametrize(
    "doc", ["roles/common/README.md", "roles/new_role/README.md", "playbooks/NOTES.md"]
)
def test_documentation_edit_keeps_the_tag(local, project, doc) -> None:
    before = _tag(local, project)
    path = project / doc
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as fh:
        fh.write("\nA sentence no node ever reads.\n")
    assert _tag(local, project) == before


@pytest.mark.parametrize(
    "task_file", ["roles/common/tasks/main.yml", "site.yml", "roles/common/defaults/main.yml"]
)
def test_edit_that_reaches_a_node_changes_the_tag(local, project, task_file) -> None:
    before = _tag(local, project)
    with (project / task_file).open("a", encoding="utf-8") as fh:
        fh.write("\n# a change Ansible reads\n")
    assert _tag(local, project) != before
