"""Elastic jobs (#18) without a cluster: the job field, the elastic launch, the discovery
list, the wrapper's rank announcement and the launcher tags `run` reads."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ringfleet.jobs import rankexec
from ringfleet.jobs.elastic import (
    ElasticRun,
    announced,
    discovery_script,
    hosts_path,
    hosts_text,
)
from ringfleet.jobs.rankexec import ANNOUNCE_VAR, WrapperError, announcement
from ringfleet.jobs.render import RenderedJob, render_job
from ringfleet.jobs.run import TAG_RE
from ringfleet.jobs.spec import Job, load_job
from ringfleet.spec import ClusterSpec
from tests.conftest import ROOT
from tests.jobs.test_render import launcher_argv

ELASTIC_JOB = ROOT / "jobs" / "digits-elastic.yaml"


@pytest.fixture(scope="module")
def elastic_job(local: ClusterSpec) -> Job:
    return load_job(ELASTIC_JOB, local, ROOT)


@pytest.fixture(scope="module")
def rendered(local: ClusterSpec, elastic_job: Job) -> RenderedJob:
    return render_job(local, elastic_job, ROOT, discovery="/shared/runs/r1/discover-hosts.sh")


def test_elastic_job_keeps_its_range(elastic_job: Job) -> None:
    assert (elastic_job.processes, elastic_job.elastic.min_processes,
            elastic_job.elastic.max_processes) == (4, 2, 4)  # fmt: skip


def test_elastic_launch_argv(rendered: RenderedJob) -> None:
    assert launcher_argv(rendered) == [
        "/opt/ringfleet/venv/bin/horovodrun",
        "-np", "4", "--min-np", "2", "--max-np", "4",
        "--host-discovery-script", "/shared/runs/r1/discover-hosts.sh",
        "--blacklist-cooldown-range", "2", "30",
        "--network-interface", "eth0", "--log-level", "INFO",
        "--gloo",
        "/opt/ringfleet/venv/bin/python", "/shared/jobs/digits-elastic/rankexec.py",
        "/opt/ringfleet/venv/bin/python", "/shared/jobs/digits-elastic/digits_elastic.py",
        "--epochs", "100",
    ]  # fmt: skip


def test_elastic_ranks_are_asked_to_announce(rendered: RenderedJob) -> None:
    assert rendered.env[ANNOUNCE_VAR] == "1"


def test_plain_jobs_do_not_announce(local: ClusterSpec, digits: Job) -> None:
    assert ANNOUNCE_VAR not in render_job(local, digits, ROOT).env


def test_elastic_launch_has_no_mpirun_equivalent(rendered: RenderedJob) -> None:
    assert rendered.mpirun_equivalent is None


def test_discovery_script_prints_the_hosts_beside_it(rendered: RenderedJob) -> None:
    assert rendered.discovery == discovery_script("/shared/runs/r1/hosts")


def test_discovery_script_runs_and_prints_the_list(tmp_path) -> None:
    hosts = tmp_path / "it's hosts"
    hosts.write_text(hosts_text({"n1": 2, "n2": 2}, ["n1", "n2"]))
    script = tmp_path / "discover.sh"
    script.write_text(discovery_script(str(hosts)))
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True)
    assert out.stdout == "n1:2\nn2:2\n"


def test_hosts_path_is_beside_the_script() -> None:
    assert hosts_path("/shared/runs/r1/discover-hosts.sh") == "/shared/runs/r1/hosts"


@pytest.mark.parametrize(
    ("live", "text"),
    [
        pytest.param(["n1", "n2", "n3"], "n1:2\nn2:2\nn3:1\n", id="all"),
        pytest.param(["n1", "n3"], "n1:2\nn3:1\n", id="one-lost"),
        pytest.param(["n3", "n1"], "n1:2\nn3:1\n", id="rejoined-keeps-placement-order"),
    ],
)
def test_hosts_text(live: list[str], text: str) -> None:
    assert hosts_text({"n1": 2, "n2": 2, "n3": 1}, live) == text


# --- the wrapper's announcement and the tags `run` reads ------------------------------------


@pytest.mark.parametrize(
    ("env", "line"),
    [
        pytest.param({ANNOUNCE_VAR: "1", "HOROVOD_RANK": "3", "HOROVOD_HOSTNAME": "n2"},
                     "ringfleet rankexec: rank 3 on n2", id="gloo"),  # fmt: skip
        pytest.param({ANNOUNCE_VAR: "1", "OMPI_COMM_WORLD_RANK": "1"},
                     "ringfleet rankexec: rank 1 on here", id="mpirun-hostname"),  # fmt: skip
        pytest.param({"HOROVOD_RANK": "3"}, None, id="not-asked"),
    ],
)
def test_announcement(env: dict[str, str], line: str | None) -> None:
    assert announcement(env, "here") == line


def test_announcement_without_a_rank_is_named() -> None:
    with pytest.raises(WrapperError, match=ANNOUNCE_VAR):
        announcement({ANNOUNCE_VAR: "1"}, "here")


def test_wrapper_announces_before_the_rank_runs() -> None:
    env = {**os.environ, ANNOUNCE_VAR: "1", "HOROVOD_RANK": "2", "HOROVOD_HOSTNAME": "n2"}
    proc = subprocess.run(
        [sys.executable, rankexec.__file__, sys.executable, "-c", "print('trained')"],
        capture_output=True, text=True, env=env, timeout=60,
    )  # fmt: skip
    assert (proc.stderr, proc.stdout) == ("ringfleet rankexec: rank 2 on n2\n", "trained\n")


def test_announcement_is_read_back() -> None:
    assert announced("ringfleet rankexec: rank 2 on rf-local-cpu-2") == (2, "rf-local-cpu-2")


@pytest.mark.parametrize(
    ("line", "rank", "text"),
    [
        pytest.param("[1,3]<stdout>:hello", "3", "hello", id="mpirun"),
        pytest.param("[3]<stderr>:hello", "3", "hello", id="gloo"),
    ],
)
def test_launcher_tags(line: str, rank: str, text: str) -> None:
    match = TAG_RE.match(line)
    assert (match.group(2), match.group(4)) == (rank, text)


# --- the live list's events: lost, returned (back on the list), rejoined (ranks started) ----


class ListNode:
    """Stands in for the launch node: keeps the files ElasticRun writes through it."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def put_file(self, path: str, data: bytes, owner, mode: int = 0o644) -> None:
        self.files[path] = data

    def run(self, argv: list[str], user: str | None = None):
        if argv[:2] == ["mv", "-f"]:
            self.files[argv[3]] = self.files.pop(argv[2])
        return 0, ""


def healed_run(check=lambda name: None) -> tuple[ElasticRun, ListNode]:
    """A run that lost n2 and healed it (the heal returns at once; `check` is the gate)."""
    node = ListNode()
    run = ElasticRun(
        {"n1": 2, "n2": 2}, "n1", "/shared/runs/r1/hosts", 2, 4, {"n1": node},
        heal=lambda name: None, say=lambda line: None, owner=(1000, 1000), user="rf",
        check=check,
    )  # fmt: skip
    run.tolerate(["n2"])
    run.finish(10)
    return run, node


def test_healed_node_is_back_on_the_list() -> None:
    _, node = healed_run()
    assert node.files["/shared/runs/r1/hosts"] == b"n1:2\nn2:2\n"


def test_healed_node_is_recorded_as_returned_not_rejoined() -> None:
    run, _ = healed_run()
    assert [(e.event, e.node) for e in run.events] == [("lost", "n2"), ("returned", "n2")]


def test_a_rank_announced_on_the_returned_node_records_the_rejoin() -> None:
    run, _ = healed_run()
    run.rank_started(2, "n2")
    assert [(e.event, e.detail) for e in run.events][-1] == ("rejoined", "rank 2 started on it")


def test_the_rejoin_is_recorded_once_per_return() -> None:
    run, _ = healed_run()
    run.rank_started(2, "n2")
    run.rank_started(3, "n2")
    assert run.rejoins == 1


def test_ranks_of_a_node_that_never_left_record_nothing() -> None:
    run, _ = healed_run()
    run.rank_started(0, "n1")
    assert [e.event for e in run.events] == ["lost", "returned"]


def test_a_healed_node_failing_the_gate_stays_off_the_list() -> None:
    _, node = healed_run(check=lambda name: f"health gate: {name}: ssh: refused")
    assert node.files["/shared/runs/r1/hosts"] == b"n1:2\n"


def test_a_healed_node_failing_the_gate_is_recorded_with_the_reason() -> None:
    run, _ = healed_run(check=lambda name: f"health gate: {name}: ssh: refused")
    assert [(e.event, e.detail) for e in run.events][-1] == (
        "heal failed", "health gate: n2: ssh: refused"
    )
