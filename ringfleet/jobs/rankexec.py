"""The per-rank wrapper: set one rank's environment from its node and placement, then exec it.

Every launch render runs each rank as `python rankexec.py COMMAND...`; `ringfleet run`
copies this file into the run directory, a hand launch finds it in the job's workdir
(`ringfleet render ENV JOB --format wrapper` prints it). It runs on the nodes with
whatever Python is there, so it imports nothing but the standard library, and it
replaces itself with COMMAND (`exec`): signals, exit status and output stay the rank's.

It sizes a CPU rank's thread pools and, when asked (elastic runs), announces its rank
and node in one line first, so the launch's per-rank log prefixes follow ranks that
Horovod's elastic driver starts on nodes joining mid-run.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Mapping

# Set by the launch render on tuned CPU jobs: the pool's threads_per_rank, the least
# threads a rank gets. Without it the wrapper changes nothing.
THREADS_PER_RANK_VAR = "RINGFLEET_THREADS_PER_RANK"
# How many ranks of this job share the node, as each launcher tells its ranks:
# Open MPI's mpirun (also what `horovodrun --mpi` runs) and Horovod's Gloo launcher.
LOCAL_SIZE_VARS = ("OMPI_COMM_WORLD_LOCAL_SIZE", "HOROVOD_LOCAL_SIZE")
# OpenMP (and MKL through it) and TensorFlow's op-internal pool: the threads that do the math.
INTRA_OP_VARS = ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS")
# TensorFlow's pool that runs independent ops side by side. Unmeasured (#22): it gets the
# same count as the intra-op pool, which is what TensorFlow itself does with no setting
# (both pools sized to the visible cores), so a lone rank on a node is tuned exactly like
# an untuned hand launch, and ranks sharing a node split that default between them.
INTER_OP_VAR = "TF_NUM_INTEROP_THREADS"
# CPU pinning (KMP_AFFINITY, OMP_PROC_BIND) is deliberately not set: whether pinning helps
# inside CPU-quota containers, where the quota and not the cpuset limits a rank, is
# unmeasured, and a job that wants it sets it in its env.

# Set by elastic launches (ringfleet/jobs/elastic.py): print ANNOUNCE_PREFIX + `rank R on
# NODE` to stderr before exec. Horovod's Gloo driver tags the line with the rank, and
# ringfleet learns from it which node that rank's later lines come from.
ANNOUNCE_VAR = "RINGFLEET_ANNOUNCE_RANK"
ANNOUNCE_PREFIX = "ringfleet rankexec: "
# The rank as each launcher tells it: Open MPI's mpirun, then Horovod's Gloo launcher
# (elastic or not); the node as Horovod names it, else this host's name.
RANK_VARS = ("OMPI_COMM_WORLD_RANK", "HOROVOD_RANK")
HOSTNAME_VAR = "HOROVOD_HOSTNAME"

# cgroup v2 (`<quota> <period>` or `max <period>`) and cgroup v1 (two files, -1 = no quota).
CGROUP_V2_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_DIRS = ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct")
CGROUP_V1_QUOTA = "cpu.cfs_quota_us"
CGROUP_V1_PERIOD = "cpu.cfs_period_us"

USAGE = "usage: rankexec.py COMMAND [ARG...]"
EXIT_USAGE = 2
# What shells return for a command that cannot be found or run.
EXIT_NOT_RUN = 127


class WrapperError(Exception):
    """A setting the wrapper cannot use; names the variable."""


def quota_cores(quota: int, period: int) -> int | None:
    """Whole cores a CFS quota allows (at least 1); None when there is no quota."""
    if quota < 0 or period <= 0:
        return None
    # Rounded down: a quota of 1.5 CPUs runs 1 busy thread without throttling, 2 do not.
    return max(1, quota // period)


def parse_cpu_max(text: str) -> int | None:
    """cgroup v2 cpu.max (`200000 100000`, or `max 100000` for none) as whole cores."""
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    try:
        return quota_cores(int(fields[0]), int(fields[1]))
    except ValueError:
        return None


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except (OSError, UnicodeDecodeError):
        return None


def cgroup_cores() -> int | None:
    """The CPU quota of this process's cgroup in whole cores, or None when it has none."""
    text = _read(CGROUP_V2_CPU_MAX)
    if text is not None:
        return parse_cpu_max(text)
    for directory in CGROUP_V1_DIRS:
        quota = _read(f"{directory}/{CGROUP_V1_QUOTA}")
        period = _read(f"{directory}/{CGROUP_V1_PERIOD}")
        if quota is not None and period is not None:
            try:
                return quota_cores(int(quota), int(period))
            except ValueError:
                return None
    return None


def node_cores(affinity: int, quota: int | None) -> int:
    """The cores this node gives its ranks: the fewer of the CPU affinity and the quota.

    Both limit a container and neither shows the other: `docker --cpus` (and Kubernetes
    limits) set a CFS quota but leave the affinity at every host core, while a cpuset
    (`--cpuset-cpus`, Slurm, taskset) shrinks the affinity and sets no quota. Ranks are
    launched unbound (-bind-to none), so the affinity is the node's, not one rank's.
    """
    return max(1, min(affinity, quota) if quota is not None else affinity)


def local_size(env: Mapping[str, str]) -> int:
    """Ranks of this job on this node, from the launcher; 1 when run outside one."""
    for name in LOCAL_SIZE_VARS:
        value = env.get(name)
        if value is not None:
            return _positive(name, value)
    return 1


def rank_threads(threads_per_rank: int, cores: int, ranks_on_node: int) -> int:
    """max(threads_per_rank, cores // ranks on the node): a rank never gets less than the
    pool promises, and the node's cores are not left idle when fewer ranks share it."""
    return max(threads_per_rank, cores // ranks_on_node)


def thread_env(env: Mapping[str, str], cores: int) -> dict[str, str]:
    """The thread variables to add to `env`: none if untuned, never one the job set."""
    floor = env.get(THREADS_PER_RANK_VAR)
    if floor is None:
        return {}
    threads = str(rank_threads(_positive(THREADS_PER_RANK_VAR, floor), cores, local_size(env)))
    wanted = {name: threads for name in (*INTRA_OP_VARS, INTER_OP_VAR)}
    return {name: value for name, value in wanted.items() if name not in env}


def rank_of(env: Mapping[str, str]) -> int | None:
    """This rank's number, from the launcher; None when run outside one."""
    for name in RANK_VARS:
        value = env.get(name)
        if value is not None:
            return _whole(name, value)
    return None


def announcement(env: Mapping[str, str], hostname: str) -> str | None:
    """The line an elastic rank prints first, or None when the launch did not ask."""
    if env.get(ANNOUNCE_VAR) != "1":
        return None
    rank = rank_of(env)
    if rank is None:
        raise WrapperError(f"{ANNOUNCE_VAR}: set, but no launcher gave a rank ({RANK_VARS[-1]})")
    return f"{ANNOUNCE_PREFIX}rank {rank} on {env.get(HOSTNAME_VAR) or hostname}"


def _whole(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise WrapperError(f"{name}: must be a whole number (got {value!r})")
    return number


def _positive(name: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise WrapperError(f"{name}: must be a whole number of at least 1 (got {value!r})")
    return number


def main(argv: list[str]) -> int:
    if not argv:
        print(f"ringfleet rankexec: {USAGE}", file=sys.stderr)
        return EXIT_USAGE
    env = dict(os.environ)
    try:
        env.update(thread_env(env, node_cores(len(os.sched_getaffinity(0)), cgroup_cores())))
        line = announcement(env, socket.gethostname())
    except WrapperError as exc:
        print(f"ringfleet rankexec: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if line is not None:
        print(line, file=sys.stderr, flush=True)
    try:
        os.execvpe(argv[0], argv, env)
    except OSError as exc:
        print(f"ringfleet rankexec: cannot run {argv[0]}: {exc.strerror}", file=sys.stderr)
        return EXIT_NOT_RUN
    return 0  # not reached: exec replaces this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
