"""`ringfleet run` bookkeeping that needs no cluster: run ids and the per-run hostfile."""

from __future__ import annotations

import re
import shlex

from ringfleet.jobs import run
from ringfleet.jobs.render import render_job
from ringfleet.jobs.spec import load_job
from tests.conftest import ROOT

RUN_DIR = "/shared/runs/digits-20260101T000000Z-0a1b2c"


def test_run_ids_made_in_one_second_differ(monkeypatch):
    monkeypatch.setattr(run, "_stamp", lambda: "20260101T000000Z")
    ids = {run.new_run_id("digits") for _ in range(200)}
    assert len(ids) == 200


def test_run_id_is_job_time_and_random_hex():
    assert re.fullmatch(r"digits-\d{8}T\d{6}Z-[0-9a-f]{6}", run.new_run_id("digits"))


def test_mpirun_reads_the_hostfile_of_the_run(local):
    job = load_job(ROOT / "jobs" / "digits.yaml", local, ROOT)
    rendered = render_job(local, job, ROOT, hostfile=f"{RUN_DIR}/hostfile")
    argv = shlex.split(rendered.mpirun_equivalent)
    assert argv[argv.index("--hostfile") + 1] == f"{RUN_DIR}/hostfile"


def test_launch_script_names_the_hostfile_of_the_run(local):
    job = load_job(ROOT / "jobs" / "digits.yaml", local, ROOT)
    rendered = render_job(local, job, ROOT, hostfile=f"{RUN_DIR}/hostfile")
    assert f"# The same launch with plain mpirun, which reads {RUN_DIR}/hostfile:" in (
        rendered.script.splitlines()
    )


class RecordingNode:
    """A running node that records the commands run on it (kill_run_processes' only API)."""

    name = "n1"

    def __init__(self):
        self.calls: list[tuple[list[str], str]] = []

    def state(self) -> str:
        return "running"

    def run(self, argv, user="root", check=True):
        self.calls.append((argv, user))
        return 0, ""


def test_ranks_are_stopped_as_the_user_they_run_as():
    # root in a container lacks CAP_SYS_PTRACE, so it cannot read the ranks' environ.
    node = RecordingNode()
    run.kill_run_processes(node, "hang-1", "rf")
    assert [user for _, user in node.calls] == ["rf"]
