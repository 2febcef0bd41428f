"""`python -m ringfleet.preview.record`: each revision recorded by its own code only."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ringfleet.preview.revision import record_command
from tests.preview.test_old_layout import write_current_tree


def record(root: Path, *envs: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*record_command(root), str(root), *envs],
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("record")
    write_current_tree(path)
    return path


def test_record_prints_one_entry_per_env(tree):
    proc = record(tree, "local", "onprem")
    assert list(json.loads(proc.stdout)) == ["local", "onprem"]


def test_record_refuses_a_subpackage_the_revision_lacks(tree, tmp_path):
    # The editable install of the running ringfleet would lend its `ringfleet/jobs`.
    shutil.copytree(tree, tmp_path / "rev")
    shutil.rmtree(tmp_path / "rev/ringfleet/jobs")
    proc = record(tmp_path / "rev", "local")
    assert (proc.returncode, proc.stderr.splitlines()[-1].split(":")[0]) == (
        1,
        "modules from outside the revision",
    )
