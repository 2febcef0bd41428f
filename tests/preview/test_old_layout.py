"""`ringfleet preview --base REF` where REF is from before `ringfleet/preview/record.py`.

The pull request of the layout change (#14) compares the new layout with a base in the
old one, whose code has no record module to run: the frozen `record_flat.py` records
it. Each fixture repository has a base taken from this repository's own history
(d872216: the last flat-layout commit; 2d40e32: the first step of #14, packages but no
record.py) and a head of the current files plus one change (a pool added to aws-dev,
the digits job from 4 to 6 ranks, the EFS performance mode). A control repository
makes the same change on a base of the current files. The old base must give the same
report as the control: same summary, same infrastructure and jobs parts.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from ringfleet.preview.report import preview
from ringfleet.preview.revision import FLAT_RECORD, RECORD_MODULE, record_command
from tests.conftest import ROOT
from tests.preview.test_preview import BIG_POOL, edit, git, section

# What the preview reads: specs, jobs, the program, the code and the node inputs.
PATHS = [
    "Pulumi.yaml",
    "Pulumi.aws-dev.yaml",
    "Pulumi.local.yaml",
    "Pulumi.onprem.yaml",
    "jobs",
    "templates",
    "ringfleet",
    "stacks",
    "roles",
    "playbooks",
    "site.yml",
    "ansible.cfg",
]
ENVS = ["aws-dev", "local", "onprem"]
# Taken from the working tree even for an old base.
NODE_INPUTS = ["roles", "playbooks", "site.yml", "ansible.cfg"]
# Old layouts, by a commit of this repository's history that has each.
OLD_BASES = {
    "flat": "d872216",
    "packages": "2d40e32",
}
COLUMNS = ["infrastructure", "node software", "jobs"]
# What the head change leaves alone: (env, summary column).
UNCHANGED = [
    ("local", "infrastructure"),
    ("local", "node software"),
    ("onprem", "infrastructure"),
    ("onprem", "node software"),
    ("onprem", "jobs"),
]


def has_commit(commit: str) -> bool:
    found = subprocess.run(
        ["git", "rev-parse", "--verify", "--quiet", f"{commit}^{{commit}}"],
        cwd=ROOT,
        capture_output=True,
        check=False,
    )
    return found.returncode == 0


def write_old_tree(commit: str, dest: Path) -> None:
    """The files of PATHS at `commit` of this repository (the old layout) into `dest`."""
    if not has_commit(commit):
        pytest.skip(f"{commit} is not in this clone's history (shallow clone?)")
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "--", *PATHS],
        cwd=ROOT,
        capture_output=True,
        check=True,
    )
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")
    # The node inputs as they are now: what is compared is how the old layout's code is
    # recorded, not how the roles changed since that commit (which would rebake images).
    for name in NODE_INPUTS:
        target = dest / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, target)


def old_base_jobs() -> set[str] | None:
    """The job files every old base has; None when a base is not in this clone's history."""
    if not all(has_commit(commit) for commit in OLD_BASES.values()):
        return None
    listed = [
        git(ROOT, "ls-tree", "--name-only", f"{commit}:jobs").split()
        for commit in OLD_BASES.values()
    ]
    return set.intersection(*(set(names) for names in listed))


def write_current_tree(dest: Path) -> None:
    """The files of PATHS as they are in the working tree, with only the old bases' jobs:
    a job file added since would count as a change against the old bases alone."""
    for name in PATHS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dest / name)
    jobs = old_base_jobs()
    for job in (dest / "jobs").glob("*.yaml") if jobs is not None else []:
        if job.name not in jobs:
            job.unlink()


def change(repo: Path) -> None:
    """The head's change, on top of the current files."""
    edit(repo / "Pulumi.aws-dev.yaml", "    storage:\n", BIG_POOL + "    storage:\n")
    edit(repo / "jobs/digits.yaml", "processes: 4", "processes: 6")
    edit(
        repo / "stacks/aws_cluster.py",
        'performance_mode="generalPurpose"',
        'performance_mode="maxIO"',
    )


def make_repo(path: Path, write_base) -> Path:
    write_base(path)
    git(path, "init", "-q")
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "base")
    for name in PATHS:
        target = path / name
        shutil.rmtree(target) if target.is_dir() else target.unlink(missing_ok=True)
    write_current_tree(path)
    change(path)
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "head")
    return path


@pytest.fixture(scope="module")
def control(tmp_path_factory):
    repo = make_repo(tmp_path_factory.mktemp("preview-control"), write_current_tree)
    return preview(repo, "HEAD~1", []).text


@pytest.fixture(scope="module", params=sorted(OLD_BASES))
def old(request, tmp_path_factory):
    commit = OLD_BASES[request.param]
    repo = make_repo(
        tmp_path_factory.mktemp(f"preview-{request.param}"),
        lambda dest: write_old_tree(commit, dest),
    )
    return preview(repo, "HEAD~1", []).text


def summary_row(text: str, env: str) -> dict[str, str]:
    """`env`'s row of the summary table, by column."""
    row = next(line for line in text.splitlines() if line.startswith(f"| `{env}` |"))
    return dict(zip(COLUMNS, row.rstrip(" |").split(" | ")[1:], strict=True))


def part(text: str, heading: str) -> list[str]:
    """The lines of `## heading` up to the next `## `."""
    lines = text.splitlines()
    begin = lines.index(heading) + 1
    end = next((i for i in range(begin, len(lines)) if lines[i].startswith("## ")), len(lines))
    return lines[begin:end]


def test_revision_with_record_py_is_run_as_its_module(tmp_path):
    (tmp_path / "ringfleet/preview").mkdir(parents=True)
    (tmp_path / "ringfleet/preview/record.py").write_text("", encoding="utf-8")
    assert record_command(tmp_path) == [sys.executable, "-m", RECORD_MODULE]


def test_revision_without_record_py_runs_the_frozen_program(tmp_path):
    assert record_command(tmp_path) == [sys.executable, str(FLAT_RECORD)]


def test_frozen_program_does_not_borrow_a_module_the_revision_lacks(tmp_path):
    # The editable install of the running ringfleet would find `ringfleet/jobs` in the
    # running tree: the jobs would render with the head's code, not the revision's.
    write_old_tree(OLD_BASES["packages"], tmp_path)
    shutil.rmtree(tmp_path / "ringfleet/jobs")
    proc = subprocess.run(
        [*record_command(tmp_path), str(tmp_path), "local"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    digits = json.loads(proc.stdout)["local"]["jobs"]["jobs/digits.yaml"]
    # Not rendered: either nothing finds the module, or the guard refuses the one found.
    assert list(digits) == ["error"], digits


@pytest.mark.parametrize("env", ENVS)
def test_old_base_summary_is_the_current_base_summary(old, control, env):
    assert summary_row(old, env) == summary_row(control, env)


@pytest.mark.parametrize("column", COLUMNS)
def test_control_summary_of_aws_dev_shows_the_change(control, column):
    # The comparisons with the control are worth something only where the change shows.
    assert summary_row(control, "aws-dev")[column] != "no changes"


@pytest.mark.parametrize(("env", "column"), UNCHANGED)
def test_old_base_says_no_changes_where_nothing_changed(old, env, column):
    assert summary_row(old, env)[column] == "no changes"


def test_old_base_infrastructure_part_is_the_current_base_one(old, control):
    assert part(old, "## 1. Infrastructure") == part(control, "## 1. Infrastructure")


def test_old_base_jobs_part_is_the_current_base_one(old, control):
    assert part(old, "## 3. Jobs") == part(control, "## 3. Jobs")


@pytest.mark.parametrize("env", ENVS)
def test_old_base_software_of_each_env_is_the_current_base_one(old, control, env):
    assert section(old, "Node software", env) == section(control, "Node software", env)
