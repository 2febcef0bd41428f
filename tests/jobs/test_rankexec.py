"""The per-rank wrapper: thread counts from the node's cores and the ranks placed on it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ringfleet.jobs import rankexec
from ringfleet.jobs.rankexec import (
    THREADS_PER_RANK_VAR,
    WrapperError,
    local_size,
    node_cores,
    parse_cpu_max,
    quota_cores,
    rank_threads,
    thread_env,
)

THREAD_VARS = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


@pytest.mark.parametrize(
    ("threads_per_rank", "cores", "ranks", "expected"),
    [
        pytest.param(1, 2, 1, 2, id="lone-rank-gets-its-2-cpu-node"),
        pytest.param(1, 2, 2, 1, id="two-ranks-split-2-cpus"),
        pytest.param(1, 32, 1, 32, id="lone-rank-gets-its-32-core-host"),
        pytest.param(1, 32, 4, 8, id="four-ranks-split-32-cores"),
        pytest.param(1, 32, 3, 10, id="uneven-split-rounds-down"),
        pytest.param(4, 2, 1, 4, id="threads-per-rank-is-a-floor"),
        pytest.param(2, 8, 8, 2, id="floor-over-a-crowded-node"),
        pytest.param(1, 1, 2, 1, id="never-zero"),
    ],
)
def test_rank_threads(threads_per_rank: int, cores: int, ranks: int, expected: int) -> None:
    assert rank_threads(threads_per_rank, cores, ranks) == expected


@pytest.mark.parametrize(
    ("affinity", "quota", "expected"),
    [
        pytest.param(16, 2, 2, id="docker-cpus-quota-under-all-host-cores"),
        pytest.param(4, None, 4, id="cpuset-without-quota"),
        pytest.param(2, 8, 2, id="cpuset-smaller-than-quota"),
        pytest.param(2, 2, 2, id="both-agree"),
    ],
)
def test_node_cores_is_the_smaller_limit(affinity: int, quota: int | None, expected: int) -> None:
    assert node_cores(affinity, quota) == expected


@pytest.mark.parametrize(
    ("quota", "period", "expected"),
    [
        pytest.param(200000, 100000, 2, id="two-cpus"),
        pytest.param(150000, 100000, 1, id="fraction-rounds-down"),
        pytest.param(50000, 100000, 1, id="under-one-cpu-is-one"),
        pytest.param(-1, 100000, None, id="v1-no-quota"),
    ],
)
def test_quota_cores(quota: int, period: int, expected: int | None) -> None:
    assert quota_cores(quota, period) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("200000 100000\n", 2, id="two-cpus"),
        pytest.param("max 100000\n", None, id="no-quota"),
        pytest.param("garbage\n", None, id="unreadable"),
    ],
)
def test_parse_cpu_max(text: str, expected: int | None) -> None:
    assert parse_cpu_max(text) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param({"OMPI_COMM_WORLD_LOCAL_SIZE": "2"}, 2, id="mpirun"),
        pytest.param({"HOROVOD_LOCAL_SIZE": "3"}, 3, id="gloo"),
        pytest.param({}, 1, id="outside-a-launcher"),
    ],
)
def test_local_size(env: dict[str, str], expected: int) -> None:
    assert local_size(env) == expected


@pytest.mark.parametrize(
    ("env", "cores", "expected"),
    [
        pytest.param(
            {THREADS_PER_RANK_VAR: "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "1"},
            2,
            dict.fromkeys(THREAD_VARS, "2"),
            id="one-rank-on-a-2-cpu-node",
        ),
        pytest.param(
            {THREADS_PER_RANK_VAR: "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "2"},
            2,
            dict.fromkeys(THREAD_VARS, "1"),
            id="two-ranks-on-a-2-cpu-node",
        ),
        pytest.param(
            {THREADS_PER_RANK_VAR: "1", "HOROVOD_LOCAL_SIZE": "2"},
            8,
            dict.fromkeys(THREAD_VARS, "4"),
            id="gloo-two-ranks-on-8-cores",
        ),
        pytest.param(
            {THREADS_PER_RANK_VAR: "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "1", "OMP_NUM_THREADS": "3"},
            2,
            {"TF_NUM_INTRAOP_THREADS": "2", "TF_NUM_INTEROP_THREADS": "2"},
            id="job-set-omp-is-kept",
        ),
        pytest.param(
            {
                THREADS_PER_RANK_VAR: "1",
                "OMPI_COMM_WORLD_LOCAL_SIZE": "1",
                "TF_NUM_INTEROP_THREADS": "1",
            },
            2,
            {"OMP_NUM_THREADS": "2", "TF_NUM_INTRAOP_THREADS": "2"},
            id="job-set-interop-is-kept",
        ),
        pytest.param({"OMPI_COMM_WORLD_LOCAL_SIZE": "1"}, 2, {}, id="untuned-job-untouched"),
    ],
)
def test_thread_env(env: dict[str, str], cores: int, expected: dict[str, str]) -> None:
    assert thread_env(env, cores) == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {THREADS_PER_RANK_VAR: "two"},
            f"{THREADS_PER_RANK_VAR}: must be a whole number of at least 1 (got 'two')",
            id="threads-not-a-number",
        ),
        pytest.param(
            {THREADS_PER_RANK_VAR: "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "0"},
            "OMPI_COMM_WORLD_LOCAL_SIZE: must be a whole number of at least 1 (got '0')",
            id="local-size-zero",
        ),
    ],
)
def test_bad_setting_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(WrapperError) as info:
        thread_env(env, 2)
    assert str(info.value) == message


def _wrap(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in (*THREAD_VARS, THREADS_PER_RANK_VAR)}
    return subprocess.run(
        [sys.executable, rankexec.__file__, *argv],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


PRINT_THREADS = "import os; print(os.environ['OMP_NUM_THREADS'])"


def test_wrapper_execs_the_command_with_the_threads_set() -> None:
    cores = node_cores(len(os.sched_getaffinity(0)), rankexec.cgroup_cores())
    proc = _wrap(
        {THREADS_PER_RANK_VAR: "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "1"},
        sys.executable, "-c", PRINT_THREADS,
    )  # fmt: skip
    assert (proc.returncode, proc.stdout.strip()) == (0, str(cores))


def test_wrapper_passes_on_the_exit_status() -> None:
    proc = _wrap({}, sys.executable, "-c", "raise SystemExit(7)")
    assert proc.returncode == 7


def test_wrapper_without_a_command_is_a_usage_error() -> None:
    proc = _wrap({})
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        "ringfleet rankexec: usage: rankexec.py COMMAND [ARG...]",
    )


def test_wrapper_bad_setting_is_one_line() -> None:
    proc = _wrap({THREADS_PER_RANK_VAR: "0"}, "true")
    assert (proc.returncode, proc.stderr.strip()) == (
        2,
        f"ringfleet rankexec: error: {THREADS_PER_RANK_VAR}: must be a whole number of at "
        "least 1 (got '0')",
    )


def test_wrapper_missing_command_is_127() -> None:
    proc = _wrap({}, "/nonexistent/ringfleet-no-such-command")
    assert proc.returncode == 127
