"""Job specs: loading, defaults, placement and the one-line refusals."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from ringfleet.errors import USAGE_EXIT, RingfleetError
from ringfleet.jobs.spec import Job, duration_seconds, load_job, place, require_script
from ringfleet.spec import ClusterSpec, cluster_from_mapping, load_spec
from tests.conftest import ROOT

BROKEN = ROOT / "tests" / "data" / "jobs"
ENTRY = {"script": "scripts/digits.py"}






def job_from(tmp_path: Path, spec: ClusterSpec, **fields: object) -> Job:
    """A job file written from `fields`, loaded against `spec`."""
    doc = {"name": "probe", "entry": ENTRY, **fields}
    path = tmp_path / "probe.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    return load_job(path, spec, ROOT)


# --- the shipped job specs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("name", "digits"),
        ("display", "jobs/digits.yaml"),
        ("pools", ("cpu",)),
        ("processes", 4),
        ("slots_per_node", 2),
        ("workdir", "/shared/jobs/digits"),
        ("remote_script", "/shared/jobs/digits/digits.py"),
        ("timeout_seconds", 1200),
        ("launcher", "horovodrun"),
        ("interface", "eth0"),
        ("tuning", True),
        ("args", ()),
        ("env", {}),
    ],
)
def test_digits_job(digits: Job, attribute: str, expected: object) -> None:
    assert getattr(digits, attribute) == expected


def test_entry_path_is_absolute_for_a_relative_job_path(local: ClusterSpec) -> None:
    relative = Path(os.path.relpath(ROOT / "jobs" / "digits.yaml"))
    assert load_job(relative, local, ROOT).entry_path.is_absolute()


def test_digits_script_is_looked_for_beside_the_job_file(digits: Job) -> None:
    assert digits.entry_path == ROOT / "jobs" / "scripts" / "digits.py"


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("name", "synthetic"),
        ("processes", 2),
        ("slots_per_node", 1),
        ("args", ("--batch-size", "32", "--num-iters", "10")),
        ("remote_script", "/shared/jobs/synthetic/synthetic.py"),
    ],
)
def test_synthetic_job(local: ClusterSpec, attribute: str, expected: object) -> None:
    job = load_job(ROOT / "jobs" / "synthetic.yaml", local, ROOT)
    assert getattr(job, attribute) == expected


# --- defaults and overrides ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attribute", "expected"),
    [
        ("workdir", "/shared/jobs/probe"),
        ("timeout_seconds", 3600),
        ("launcher", "horovodrun"),
        ("interface", "eth0"),
        ("tuning", True),
        ("env", {}),
        ("restarts", 0),
        ("restart_on_failure", False),
    ],
)
def test_default(tmp_path: Path, local: ClusterSpec, attribute: str, expected: object) -> None:
    job = job_from(tmp_path, local, pool="cpu", processes=2)
    assert getattr(job, attribute) == expected


def test_interface_defaults_to_the_clusters(tmp_path: Path, aws: ClusterSpec) -> None:
    assert job_from(tmp_path, aws, pool="cpu", processes=2).interface == "ens5"


def test_interface_override(tmp_path: Path, local: ClusterSpec) -> None:
    assert job_from(tmp_path, local, pool="cpu", processes=2, interface="eth1").interface == "eth1"


def test_workdir_override_is_normalised(tmp_path: Path, local: ClusterSpec) -> None:
    job = job_from(tmp_path, local, pool="cpu", processes=2, workdir="/shared/runs//a/./b/")
    assert job.workdir == "/shared/runs/a/b"


def test_processes_default_to_slots_per_node_on_every_node(
    tmp_path: Path, local: ClusterSpec
) -> None:
    assert job_from(tmp_path, local, pool="cpu", slots_per_node=1).processes == 3


def test_a_single_pool_name_becomes_a_list(tmp_path: Path, local: ClusterSpec) -> None:
    assert job_from(tmp_path, local, pool="cpu", processes=1).pools == ("cpu",)


@pytest.mark.parametrize(
    ("given", "seconds"),
    [(45, 45), ("45", 45), ("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400)],
)
def test_duration_seconds(given: object, seconds: int) -> None:
    assert duration_seconds(given) == seconds


@pytest.mark.parametrize("given", ["soon", "1h30m", "-5m", "2w", True, 1.5, None])
def test_duration_seconds_refuses(given: object) -> None:
    with pytest.raises(ValueError, match="must be seconds or a duration"):
        duration_seconds(given)


def test_script_falls_back_to_the_project_root(tmp_path: Path, local: ClusterSpec) -> None:
    job = job_from(tmp_path, local, pool="cpu", processes=1, entry={"script": "pyproject.toml"})
    assert job.entry_path == ROOT / "pyproject.toml"


def test_script_beside_the_job_file_wins(tmp_path: Path, local: ClusterSpec) -> None:
    (tmp_path / "pyproject.toml").write_text("", encoding="utf-8")
    job = job_from(tmp_path, local, pool="cpu", processes=1, entry={"script": "pyproject.toml"})
    assert job.entry_path == (tmp_path / "pyproject.toml").resolve()


def test_require_script_refuses_a_missing_script(tmp_path: Path, local: ClusterSpec) -> None:
    job = job_from(tmp_path, local, pool="cpu", processes=1, entry={"script": "nope.py"})
    with pytest.raises(RingfleetError) as err:
        require_script(job)
    assert err.value.line() == (
        f"ringfleet: error: {tmp_path / 'probe.yaml'}: job.entry.script: "
        f"no such file (looked for {(tmp_path / 'nope.py').resolve()})"
    )


# --- placement -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "fields", "expected"),
    [
        pytest.param(
            "local", {"pool": "cpu", "processes": 4, "slots_per_node": 2},
            [("rf-local-cpu-1", 2), ("rf-local-cpu-2", 2)], id="local-4-at-2",
        ),
        pytest.param(
            "local", {"pool": "cpu", "processes": 5},
            [("rf-local-cpu-1", 2), ("rf-local-cpu-2", 2), ("rf-local-cpu-3", 1)],
            id="local-5-fills-in-order",
        ),
        pytest.param(
            "local", {"pool": "cpu", "processes": 1}, [("rf-local-cpu-1", 1)], id="local-1",
        ),
        pytest.param(
            "local", {"pool": "cpu", "slots_per_node": 1},
            [("rf-local-cpu-1", 1), ("rf-local-cpu-2", 1), ("rf-local-cpu-3", 1)],
            id="local-one-per-node",
        ),
        pytest.param(
            "aws-dev", {"pool": "cpu", "processes": 10},
            [("rf-dev-cpu-1", 4), ("rf-dev-cpu-2", 4), ("rf-dev-cpu-3", 2)],
            id="aws-cpu-4-slots-per-node",
        ),
        pytest.param(
            "aws-dev", {"pool": "gpu", "processes": 8},
            [("rf-dev-gpu-1", 4), ("rf-dev-gpu-2", 4)], id="aws-gpu-one-rank-per-gpu",
        ),
        pytest.param(
            "onprem", {"pool": "gpu", "processes": 12, "slots_per_node": 6},
            [("gpu01", 6), ("gpu02", 6)], id="onprem-static-hosts",
        ),
    ],
)
def test_place(
    tmp_path: Path, env: str, fields: dict, expected: list[tuple[str, int]]
) -> None:
    spec = load_spec(env, ROOT)
    assert place(spec, job_from(tmp_path, spec, **fields)) == expected


def docker_cluster(*pools: dict) -> ClusterSpec:
    """A one-node-per-pool docker cluster, for placement across pools."""
    return cluster_from_mapping(
        {
            "name": "rf-two",
            "provider": "docker",
            "pools": [{"count": 1, "memory": "1GiB", **pool} for pool in pools],
            "storage": {"kind": "volume"},
            "software": {"profile": "tf2.15"},
        },
        "Pulumi.two.yaml",
    )


def test_place_follows_the_order_of_listed_pools(tmp_path: Path) -> None:
    spec = docker_cluster({"name": "big", "cpus": 4}, {"name": "small", "cpus": 1})
    job = job_from(tmp_path, spec, pool=["small", "big"], processes=5)
    assert place(spec, job) == [("rf-two-small-1", 1), ("rf-two-big-1", 4)]


def test_pools_with_different_threads_per_rank_are_refused_when_tuned(tmp_path: Path) -> None:
    spec = docker_cluster(
        {"name": "one", "cpus": 2}, {"name": "two", "cpus": 2, "threads_per_rank": 2}
    )
    with pytest.raises(RingfleetError) as err:
        job_from(tmp_path, spec, pool=["one", "two"], processes=2)
    assert err.value.what == (
        "pools give ranks different threads_per_rank (1, 2); use one pool or set tuning: false"
    )


def test_pools_with_different_threads_per_rank_load_untuned(tmp_path: Path) -> None:
    spec = docker_cluster(
        {"name": "one", "cpus": 2}, {"name": "two", "cpus": 2, "threads_per_rank": 2}
    )
    job = job_from(tmp_path, spec, pool=["one", "two"], processes=3, tuning=False)
    assert place(spec, job) == [("rf-two-one-1", 2), ("rf-two-two-1", 1)]


def test_mixing_cpu_and_gpu_pools_with_nodes_is_refused(tmp_path: Path, aws: ClusterSpec) -> None:
    with pytest.raises(RingfleetError) as err:
        job_from(tmp_path, aws, pool=["cpu", "gpu"], processes=2)
    assert err.value.what.startswith("cannot mix CPU and GPU pools")


# --- refusals: one line each, exit code 2 ------------------------------------------------------

REFUSALS = {
    "unknown-pool": "job.pool: unknown pool; Pulumi.local.yaml has pools cpu, gpu (got 'tpu')",
    "too-many-processes": "job.processes: only 6 slot(s) in pool cpu (3 node(s) x 2) (got 7)",
    "too-many-at-one-per-node": (
        "job.processes: only 3 slot(s) in pool cpu (3 node(s) x 1) (got 4)"
    ),
    "mixed-pools": (
        "job.pool: cannot mix CPU and GPU pools in one launch: "
        "Horovod ranks are all CPU or all GPU (got ['cpu', 'gpu'])"
    ),
    "zero-processes": "job.processes: must be >= 1 (got 0)",
    "empty-pool": "job.pool: pool gpu has 0 nodes in Pulumi.local.yaml; give it nodes first",
    "workdir-outside-mount": (
        "job.workdir: must be a directory under the shared mount /shared, "
        "the one path every node sees (got '/tmp/digits')"
    ),
    "workdir-escapes-mount": (
        "job.workdir: must be a directory under the shared mount /shared, "
        "the one path every node sees (got '/shared/../etc')"
    ),
    "workdir-is-mount": (
        "job.workdir: must be a directory under the shared mount /shared, "
        "the one path every node sees (got '/shared')"
    ),
    "workdir-relative": "job.workdir: must be an absolute path (got 'jobs/digits')",
    "unknown-key": "job.proceses: unknown key; did you mean 'processes'?",
    "bad-name": (
        "job.name: must be lowercase letters, digits and dashes, starting with a letter, "
        "at most 31 characters (got 'Digits')"
    ),
    "bad-timeout": (
        "job.timeout: must be seconds or a duration such as 90s, 30m, 2h or 1d (got 'soon')"
    ),
    "zero-timeout": "job.timeout: must be >= 1 (got '0s')",
    "bad-launcher": "job.launcher: must be one of 'horovodrun' or 'mpirun' (got 'srun')",
    "slots-per-node-above-slots": (
        "job.slots_per_node: more than the 2 slot(s) of a node in pool cpu (got 3)"
    ),
    "no-size": "job: set processes, slots_per_node or both",
    "bad-env-name": (
        "job.env.BAD-NAME: must be a shell variable name: letters, digits and _, "
        "not starting with a digit (got 'BAD-NAME')"
    ),
    "env-not-string": "job.env.OMP_NUM_THREADS: must be a string (got 2)",
    "absolute-script": (
        "job.entry.script: must be relative to the job file's directory or the project root "
        "(got '/home/rf/digits.py')"
    ),
    "duplicate-pool": "job.pool: a pool is listed more than once (got ['cpu', 'cpu'])",
    "pool-not-a-name": "job.pool: must be a pool name or a list of pool names (got 5)",
    "missing-entry": "job.entry: required",
    "elastic-with-mpirun": (
        "job.elastic: needs launcher: horovodrun (Horovod's elastic driver; mpirun has none) "
        "(got 'mpirun')"
    ),
    "elastic-min-above-max": (
        "job.elastic.min_processes: must be <= elastic.max_processes (4) (got 5)"
    ),
    "elastic-processes-outside-range": (
        "job.processes: must be within elastic [1, 3]: it is the starting size (got 4)"
    ),
    "elastic-zero-min": "job.elastic.min_processes: must be >= 1 (got 0)",
    "elastic-missing-max": "job.elastic.max_processes: required",
    "bad-interface": "job.interface: must be a network interface name such as eth0 (got 'eth 0')",
    "tuning-not-bool": "job.tuning: must be true or false (got 'yes')",
    "args-not-strings": "job.entry.args[1]: must be a string (got 2)",
    "negative-restarts": "job.restarts: must be >= 0 (got -1)",
    "restarts-not-int": "job.restarts: must be an integer (got 'many')",
    "restart-on-failure-without-restarts": (
        "job.restart_on_failure: needs restarts >= 1 to restart at all (got True)"
    ),
}

# Refusals before the job fields are read: the location is the file itself.
FILE_REFUSALS = {
    "duplicate-key": ":4:1: invalid YAML: duplicate key 'processes'",
    "empty": ": file is empty; expected a job spec (name, pool, entry)",
    "not-a-mapping": ": top level must be a mapping of job fields (got [{'name': 'digits'}])",
}


def _refusal(name: str, local: ClusterSpec) -> RingfleetError:
    with pytest.raises(RingfleetError) as err:
        load_job(BROKEN / f"{name}.yaml", local, ROOT)
    return err.value


@pytest.mark.parametrize(("name", "message"), sorted(REFUSALS.items()))
def test_refusal_line(local: ClusterSpec, name: str, message: str) -> None:
    line = _refusal(name, local).line()
    assert line == f"ringfleet: error: tests/data/jobs/{name}.yaml: {message}"


@pytest.mark.parametrize(("name", "message"), sorted(FILE_REFUSALS.items()))
def test_file_refusal_line(local: ClusterSpec, name: str, message: str) -> None:
    line = _refusal(name, local).line()
    assert line == f"ringfleet: error: tests/data/jobs/{name}.yaml{message}"


@pytest.mark.parametrize("name", sorted(REFUSALS) + sorted(FILE_REFUSALS))
def test_refusal_exits_2(local: ClusterSpec, name: str) -> None:
    assert _refusal(name, local).exit_code == USAGE_EXIT == 2


@pytest.mark.parametrize("name", sorted(REFUSALS) + sorted(FILE_REFUSALS))
def test_refusal_is_one_line(local: ClusterSpec, name: str) -> None:
    assert "\n" not in _refusal(name, local).line()


def test_every_broken_file_has_an_expected_line() -> None:
    on_disk = {p.stem for p in BROKEN.glob("*.yaml")}
    assert on_disk == set(REFUSALS) | set(FILE_REFUSALS)


def test_missing_job_file(local: ClusterSpec) -> None:
    with pytest.raises(RingfleetError) as err:
        load_job(ROOT / "jobs" / "nope.yaml", local, ROOT)
    assert err.value.line() == "ringfleet: error: jobs/nope.yaml: no such file"
