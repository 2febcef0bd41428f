"""Slurm's pieces that need no cluster: sacct parsing, exit codes, spec -> outputs -> inventory."""

from __future__ import annotations

import stat
from datetime import datetime

import pytest

from ringfleet.converge.inventory import SLURM_GROUP, render_inventory
from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.providers.outputs import OUT_SCHEDULER, static_outputs
from ringfleet.slurm.service import held_by_ended_jobs, release_held_nodes, slurmd_started
from ringfleet.slurm.submit import (
    EXIT_INTERRUPTED,
    EXIT_NODE_FAIL,
    EXIT_TIMEOUT,
    latency_seconds,
    outcome_of,
    parse_job_id,
    parse_sacct,
    partition_of,
    sbatch_argv,
)
from ringfleet.spec import load_spec
from ringfleet.state import munge_key
from tests.conftest import ROOT

DATA = ROOT / "tests" / "data" / "slurm"


@pytest.fixture(scope="module")
def spec():
    return load_spec("slurm", DATA)


@pytest.mark.parametrize(
    ("line", "state", "code"),
    [
        ("12|COMPLETED|0:0|n-[1-2]|2026-12-02T13:00:00|2026-12-02T13:00:01", 0, "completed"),
        ("12|FAILED|7:0|n-[1-2]|2026-12-02T13:00:00|2026-12-02T13:00:01", 7, "failed"),
        ("12|TIMEOUT|0:0|n-1|2026-12-02T13:00:00|2026-12-02T13:00:01", EXIT_TIMEOUT, "timeout"),
        ("12|NODE_FAIL|0:0|n-1|2026-12-02T13:00:00|2026-12-02T13:00:01", EXIT_NODE_FAIL, "node"),
        ("12|CANCELLED by 1000|0:15|n-1|2026-12-02T13:00:00|2026-12-02T13:00:01",
         EXIT_INTERRUPTED, "cancelled"),
    ],
)  # fmt: skip
def test_sacct_state_gives_the_exit_code(line, state, code):
    parsed = parse_sacct(line, "12")
    assert outcome_of(parsed, 60)[0] == state and outcome_of(parsed, 60)[1].startswith(code)


def test_sacct_line_of_another_job_is_not_taken():
    assert parse_sacct("13|RUNNING|0:0|n-1|2026-12-02T13:00:00|Unknown", "12") is None


def test_latency_is_start_minus_submit():
    parsed = parse_sacct("12|RUNNING|0:0|n-1|2026-12-02T13:00:00|2026-12-02T13:00:03", "12")
    assert latency_seconds(parsed) == 3.0


@pytest.mark.parametrize(("text", "job_id"), [("42\n", "42"), ("42;rf-slurm\n", "42")])
def test_sbatch_parsable_output_gives_the_job_id(text, job_id):
    assert parse_job_id(text) == job_id


def test_sbatch_without_a_job_id_is_a_runtime_failure():
    with pytest.raises(RuntimeFailure):
        parse_job_id("sbatch: error: Batch job submission failed")


def test_sbatch_writes_output_into_the_run_record():
    argv = sbatch_argv("/shared/runs/r1", "cpu")
    assert argv == [
        "sbatch", "--parsable", "--partition=cpu",
        "--output=/shared/runs/r1/output.log", "/shared/runs/r1/job.sbatch",
    ]  # fmt: skip


def test_a_job_across_pools_is_refused_with_one_line():
    with pytest.raises(RingfleetError, match="one pool"):
        partition_of(["cpu", "gpu"], "jobs/x.yaml")


def test_controller_defaults_to_the_first_cpu_node(spec):
    assert spec.slurm_controller == "rf-slurm-cpu-1"


def test_outputs_carry_the_scheduler(spec):
    assert static_outputs(spec)[OUT_SCHEDULER] == {
        "kind": "slurm", "controller": "rf-slurm-cpu-1", "memoryMb": {"cpu": 3072},
    }  # fmt: skip


def test_local_outputs_have_no_scheduler(local):
    assert OUT_SCHEDULER not in static_outputs(local)


def test_inventory_puts_every_node_in_the_slurm_group(spec):
    inventory = render_inventory(static_outputs(spec))
    assert inventory["all"]["children"][SLURM_GROUP] == {"children": {"pool_cpu": {}}}


@pytest.mark.parametrize(
    ("name", "value"),
    [("ringfleet_scheduler", "slurm"), ("ringfleet_slurm_controller", "rf-slurm-cpu-1")],
)
def test_inventory_names_the_controller(spec, name, value):
    assert render_inventory(static_outputs(spec))["all"]["vars"][name] == value


def test_inventory_gives_slurm_the_spec_memory(spec):
    pool = render_inventory(static_outputs(spec))["all"]["children"]["pool_cpu"]
    assert pool["vars"]["ringfleet_pool_memory_mb"] == 3072


def test_munge_key_is_made_once_and_private(tmp_path):
    first = munge_key(tmp_path, "slurm")
    text = first.read_bytes()
    assert (munge_key(tmp_path, "slurm").read_bytes(), stat.S_IMODE(first.stat().st_mode)) == (
        text, 0o600,
    )  # fmt: skip


# --- nodes a lost job still holds after up ----------------------------------------------


NODE_LINE = "NodeName=n-2 Arch=x86_64 SlurmdStartTime=2026-12-02T20:30:05 State=IDLE+COMPLETING"


def test_slurmd_start_time_is_read_from_the_node_line():
    assert slurmd_started(NODE_LINE) == datetime(2026, 12, 2, 20, 30, 5)


@pytest.mark.parametrize(
    ("ends", "held"),
    [
        (["2026-12-02T20:29:00"], True),
        (["2026-12-02T20:29:00", "2026-12-02T20:31:00"], False),
        (["2026-12-02T20:31:00"], False),
        ([], False),
        (["Unknown"], False),
    ],
)
def test_only_jobs_ended_before_slurmd_started_hold_a_node(ends, held):
    assert held_by_ended_jobs(slurmd_started(NODE_LINE), ends) is held


class FakeController:
    """A controller whose sinfo, scontrol and squeue answer from a script."""

    name = "n-1"

    def __init__(self, answers: dict[str, str]):
        self.answers, self.calls = answers, []

    def run(self, argv, user="root", check=True):
        self.calls.append(argv)
        return 0, self.answers.get(argv[0] + " " + argv[1], "")


def test_a_node_held_by_a_job_it_lost_is_set_down_then_resumed():
    fake = FakeController({
        "sinfo -h": "n-2\n", "scontrol show": NODE_LINE, "squeue -h": "2026-12-02T20:29:00\n",
    })  # fmt: skip
    assert release_held_nodes(fake) == ["n-2"] and [c[3] for c in fake.calls[-2:]] == [
        "state=down", "state=resume",
    ]  # fmt: skip


def test_a_node_whose_slurmd_kept_running_is_left_alone():
    fake = FakeController({
        "sinfo -h": "n-2\n", "scontrol show": NODE_LINE, "squeue -h": "2026-12-02T20:31:00\n",
    })  # fmt: skip
    assert release_held_nodes(fake) == [] and not [c for c in fake.calls if c[1] == "update"]
