"""Render a job into what launches it: hostfile, launch script, Slurm batch script, MPIJob.

Every render is built from the same placement and the same flags, so a job
behaves alike under horovodrun, mpirun, Slurm and Kubeflow.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, StrictUndefined, TemplateNotFound

from ringfleet.errors import RingfleetError
from ringfleet.jobs import elastic, rankexec
from ringfleet.jobs.spec import Job, place
from ringfleet.paths import NODE_VENV
from ringfleet.safetext import comment
from ringfleet.spec import ClusterSpec, ResolvedPool, project_root

NODE_PYTHON = f"{NODE_VENV}/bin/python"
HOROVODRUN = f"{NODE_VENV}/bin/horovodrun"
# Debian's openmpi-bin puts mpirun on every node's default PATH.
MPIRUN = "mpirun"
# mpirun's hostfile when rendering by hand (relative to the workdir the script cds to);
# `ringfleet run` writes one per run in the run's directory and passes its path.
HOSTFILE = "hostfile"
DEFAULT_SSH_PORT = 22

# Horovod runs a background communication thread beside TensorFlow's thread pools; OpenMPI's
# default binding pins each rank to one core and starves them, so ranks float and fill by slot.
NO_BINDING_ARGS = ["-bind-to", "none", "-map-by", "slot"]
# Plain TCP (ob1 PML, TCP BTL): cloud and container nodes have no InfiniBand, and probing
# for it (openib) warns or stalls at startup.
TCP_ONLY_ARGS = ["-mca", "pml", "ob1", "-mca", "btl", "^openib"]
# `[jobid,rank]<stdout>:` before every line, so `ringfleet run` can tell which rank printed it.
TAG_OUTPUT_ARGS = ["--tag-output"]
# Without it horovodrun silently falls back to Gloo when MPI is missing, which changes the
# transport and drops the rank tags; with it, horovodrun runs the mpirun line shown beside it.
HOROVOD_MPI_ARGS = ["--mpi"]
# Elastic jobs (ringfleet/jobs/elastic.py): Horovod's elastic driver runs on Gloo only.
HOROVOD_GLOO_ARGS = ["--gloo"]
# Horovod blacklists a host whose ranks failed (a lost node); without a range it never takes
# it back, and a healed node would not rejoin. The cooldown starts when the survivors reset
# (measured: 30 s after the loss, the Gloo timeout) and lasts lower*2^n + U(0, lower) s,
# clamped to the range: with 10 30 the first was 20-30 s, which held a node healed in 13-37 s
# out until the run had ended. ringfleet's list already keeps a node off until it is healed
# and gated, so the first cooldown is short (4-6 s) and repeated failures back off to 30 s.
BLACKLIST_COOLDOWN_ARGS = ["--blacklist-cooldown-range", "2", "30"]
# The elastic driver's decisions (a host blacklisted, its cooldown, workers started on a
# host) are logged only at INFO; they are the record's one trace of why ranks came and went.
# It also sets the ranks' HOROVOD_LOG_LEVEL=INFO: one `Horovod initialized` line per start.
DRIVER_LOG_ARGS = ["--log-level", "INFO"]
# Elastic ranks announce their node (rankexec.py), since the placement no longer says it.
ANNOUNCE_VAR = rankexec.ANNOUNCE_VAR

# Thread tuning for CPU ranks. Several ranks may share a node, and OpenMP, MKL and
# TensorFlow each size their pools to every core of it, which oversubscribes the node
# ranks-fold; one rank alone on a node with one thread would leave its other cores idle.
# So the thread counts are not rendered: each rank's wrapper (ringfleet/jobs/rankexec.py) sets
# them to max(threads_per_rank, node cores // ranks on the node), from its own node, unless
# the job sets them. The render only passes the pool's floor.
THREADS_PER_RANK_VAR = rankexec.THREADS_PER_RANK_VAR
# Intel OpenMP: spin 1 ms, not 200 ms, after a parallel region, so idle threads hand the
# cores back to Horovod's allreduce between ops.
KMP_BLOCKTIME = "1"
# KMP_AFFINITY pinning is left to the job (see rankexec.py): unmeasured in CPU-quota containers.
# Where the wrapper is on the nodes when a launch is rendered by hand: the job's workdir.
# `ringfleet run` copies it into each run's directory and passes that path instead.
WRAPPER_NAME = "rankexec.py"
WRAPPER_SOURCE = Path(rankexec.__file__)
# GPU ranks: NCCL otherwise picks its own socket interface, often docker0 or an unrouted one.
NCCL_SOCKET_IFNAME = "NCCL_SOCKET_IFNAME"
# Pools whose profile has tf_keras (TF >= 2.16): tf.keras must be it (Keras 2), not Keras 3,
# which Horovod's Keras API cannot drive.
TF_USE_LEGACY_KERAS = "TF_USE_LEGACY_KERAS"

# At the deadline `timeout` sends SIGTERM so the launcher can stop every rank, then
# SIGKILL if it has not finished this much later. Exit status 124 means timed out.
TIMEOUT_KILL_AFTER = "30s"

MPIJOB_API_VERSION = "kubeflow.org/v2beta1"
# Site-specific; `.invalid` never resolves, so a manifest applied unedited fails at the pull.
MPIJOB_IMAGE = "registry.invalid/ringfleet/horovod:set-me"
# A ReadWriteMany claim holding the cluster's shared storage, mounted at the same path.
MPIJOB_SHARED_CLAIM = "ringfleet-shared"
GPU_RESOURCE = "nvidia.com/gpu"

RENDER_FORMATS = ("script", "hostfile", "sbatch", "mpijob", "wrapper")
TEMPLATES = {
    "hostfile": "hostfile.j2",
    "script": "launch.sh.j2",
    "sbatch": "sbatch.j2",
    "mpijob": "mpijob.yaml.j2",
}


@dataclass(frozen=True)
class RenderedJob:
    """Everything needed to launch one job, rendered once from one placement."""

    job: Job
    placement: tuple[tuple[str, int], ...]
    ranks: tuple[str, ...]
    """ranks[i] is the node of rank i, in mpirun's by-slot order."""
    launch_node: str
    """The first node of the placement: `script` runs there."""
    env: dict[str, str]
    command: tuple[str, ...]
    """The launcher's argv, as the script runs it."""
    hostfile: str
    script: str
    mpirun_equivalent: str | None
    """For horovodrun jobs, the mpirun line it amounts to; None for mpirun jobs."""
    sbatch: str
    mpijob: str
    wrapper: str
    """The per-rank wrapper's source, which must be at `wrapper_path` on the nodes."""
    wrapper_path: str
    discovery: str | None = None
    """Elastic jobs: the discovery script's source, to be at `discovery_path` on the nodes."""
    discovery_path: str | None = None

    def text(self, fmt: str) -> str:
        """One of RENDER_FORMATS, for `ringfleet render --format`."""
        if fmt not in RENDER_FORMATS:
            raise RingfleetError("--format", f"must be one of {', '.join(RENDER_FORMATS)}", fmt)
        return getattr(self, fmt)


def tuning_env(threads_per_rank: int) -> dict[str, str]:
    """Thread settings for CPU ranks; the wrapper turns the floor into thread counts."""
    return {
        THREADS_PER_RANK_VAR: str(threads_per_rank),
        "KMP_BLOCKTIME": KMP_BLOCKTIME,
    }


def cores_per_rank(pool: ResolvedPool) -> int:
    """CPU pools: threads_per_rank; GPU pools: the node's cores shared among its GPUs."""
    if pool.is_gpu:
        return max(1, pool.cores // pool.slots)
    return pool.pool.threads_per_rank


def job_env(spec: ClusterSpec, job: Job) -> dict[str, str]:
    """Variables exported to every rank; the job's own env wins over ringfleet's."""
    first = spec.pools[job.pools[0]]
    env: dict[str, str] = {}
    if first.is_gpu:
        env[NCCL_SOCKET_IFNAME] = job.interface
    elif job.tuning:
        env.update(tuning_env(first.pool.threads_per_rank))
    if any(spec.pools[name].profile.legacy_keras for name in job.pools):
        env[TF_USE_LEGACY_KERAS] = "1"
    if job.elastic:
        env[ANNOUNCE_VAR] = "1"
    env.update(job.env)
    return env


def interface_args(interface: str) -> list[str]:
    """MPI data (btl) and control (oob) traffic on the cluster network, not docker0 or lo."""
    return ["-mca", "btl_tcp_if_include", interface, "-mca", "oob_tcp_if_include", interface]


def ssh_port_args(port: int) -> list[str]:
    """OpenMPI starts its remote daemons over ssh, which needs a non-default port spelled out."""
    return [] if port == DEFAULT_SSH_PORT else ["-mca", "plm_rsh_args", f"-p {port}"]


def export_args(env: dict[str, str]) -> list[str]:
    """`-x NAME` forwards the launcher's value of NAME to every rank."""
    return [arg for name in env for arg in ("-x", name)]


def default_wrapper(job: Job) -> str:
    """Where a hand launch finds the per-rank wrapper: the job's workdir."""
    return f"{job.workdir.rstrip('/')}/{WRAPPER_NAME}"


def rank_command(job: Job, wrapper: str) -> list[str]:
    """What every rank runs: the node venv's python on the script copied to the workdir,
    through the per-rank wrapper, which sets the rank's environment and execs it."""
    return [NODE_PYTHON, wrapper, NODE_PYTHON, job.remote_script, *job.args]


def host_slots(placement: list[tuple[str, int]]) -> str:
    """horovodrun's -H form: host1:2,host2:2."""
    return ",".join(f"{node}:{ranks}" for node, ranks in placement)


def horovodrun_command(
    spec: ClusterSpec, job: Job, placement: list[tuple[str, int]], wrapper: str
) -> list[str]:
    """The horovodrun argv: hosts and slots inline, so it needs no hostfile."""
    port = spec.cluster.ssh.port
    cmd = [HOROVODRUN, "-np", str(job.processes), "-H", host_slots(placement)]
    if len(placement) > 1:
        # On one node horovodrun resolves itself to 127.0.0.1 and then finds no NIC of
        # that name with an address there ("No interface is found for address 127.0.0.1").
        cmd += ["--network-interface", job.interface]
    if port != DEFAULT_SSH_PORT:
        cmd += ["--ssh-port", str(port)]
    return [*cmd, *HOROVOD_MPI_ARGS, *rank_command(job, wrapper)]


def elastic_command(spec: ClusterSpec, job: Job, discovery: str, wrapper: str) -> list[str]:
    """horovodrun in elastic mode: the hosts come from `discovery`, run every second.

    `--network-interface` always: it spares the driver probing interfaces, which needs
    two live hosts, and the run may go on with one.
    """
    assert job.elastic is not None
    port = spec.cluster.ssh.port
    cmd = [
        HOROVODRUN, "-np", str(job.processes),
        "--min-np", str(job.elastic.min_processes), "--max-np", str(job.elastic.max_processes),
        "--host-discovery-script", discovery, *BLACKLIST_COOLDOWN_ARGS,
        "--network-interface", job.interface, *DRIVER_LOG_ARGS,
    ]  # fmt: skip
    if port != DEFAULT_SSH_PORT:
        cmd += ["--ssh-port", str(port)]
    return [*cmd, *HOROVOD_GLOO_ARGS, *rank_command(job, wrapper)]


def mpirun_command(
    spec: ClusterSpec, job: Job, env: dict[str, str], wrapper: str, hostfile: str = HOSTFILE
) -> list[str]:
    """The mpirun argv, reading `hostfile`; also what a horovodrun job amounts to."""
    return [
        MPIRUN, "-np", str(job.processes), "--hostfile", hostfile,
        *NO_BINDING_ARGS, *TCP_ONLY_ARGS, *interface_args(job.interface),
        *export_args(env), *TAG_OUTPUT_ARGS, *ssh_port_args(spec.cluster.ssh.port),
        *rank_command(job, wrapper),
    ]  # fmt: skip


def slurm_command(job: Job, env: dict[str, str], wrapper: str) -> list[str]:
    """mpirun inside the allocation: OpenMPI reads the hosts from Slurm and starts via srun."""
    return [
        MPIRUN, "-np", str(job.processes),
        *NO_BINDING_ARGS, *TCP_ONLY_ARGS, *interface_args(job.interface),
        *export_args(env), *TAG_OUTPUT_ARGS, *rank_command(job, wrapper),
    ]  # fmt: skip


def mpijob_command(job: Job, env: dict[str, str], wrapper: str) -> list[str]:
    """Pods have one interface and the operator sets up ssh, so those flags are left out."""
    return [
        MPIRUN, "-np", str(job.processes),
        *NO_BINDING_ARGS, *TCP_ONLY_ARGS, *export_args(env), *TAG_OUTPUT_ARGS,
        *rank_command(job, wrapper),
    ]  # fmt: skip


def slurm_time(seconds: int) -> str:
    """Slurm's --time: HH:MM:SS, with a D- prefix from one day on."""
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    clock = f"{hours:02d}:{minutes:02d}:{secs:02d}"
    return f"{days}-{clock}" if days else clock


def templates(root: Path | None = None) -> Environment:
    """The Jinja environment over `<project>/templates`; a missing variable is an error."""
    env = Environment(
        loader=FileSystemLoader((root or project_root()) / "templates"),
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # JSON strings are YAML scalars, so the MPIJob quotes any value safely.
    env.filters["yamlstr"] = lambda value: json.dumps(value, ensure_ascii=False)
    # Every comment of every render goes through this one escape: each line gets `# `.
    env.filters["comment"] = lambda text: comment(text.rstrip("\n"))
    return env


def _render(env: Environment, fmt: str, context: dict) -> str:
    try:
        template = env.get_template(TEMPLATES[fmt])
    except TemplateNotFound:
        raise RingfleetError(
            f"templates/{TEMPLATES[fmt]}", "no such template; is RINGFLEET_ROOT the ringfleet repo?"
        ) from None
    return template.render(context)


def render_job(
    spec: ClusterSpec,
    job: Job,
    root: Path | None = None,
    hostfile: str = HOSTFILE,
    wrapper: str | None = None,
    discovery: str | None = None,
) -> RenderedJob:
    """Place the job's ranks and render every launch form of it.

    `hostfile` is where mpirun reads the hosts and `wrapper` where the nodes find the
    per-rank wrapper (default: in the workdir): `ringfleet run` gives each run its own
    of both, in the run's directory, so concurrent runs of one job never share one;
    `discovery` likewise for an elastic job's host-discovery script.
    """
    wrapper = wrapper or default_wrapper(job)
    discovery = discovery or f"{job.workdir.rstrip('/')}/{elastic.DISCOVERY_NAME}"
    placement = place(spec, job)
    env = job_env(spec, job)
    pools = [spec.pools[name] for name in job.pools]
    mpirun = mpirun_command(spec, job, env, wrapper, hostfile)
    command = (
        horovodrun_command(spec, job, placement, wrapper)
        if job.launcher == "horovodrun"
        else mpirun
    )
    if job.elastic:
        command = elastic_command(spec, job, discovery, wrapper)
    # An elastic launch has no mpirun equivalent: mpirun cannot grow or shrink a job.
    plain = job.launcher == "horovodrun" and not job.elastic
    equivalent = shlex.join(mpirun) if plain else None
    per_node = max(ranks for _, ranks in placement)
    cpus_per_task = min(cores_per_rank(p) for p in pools)
    context = {
        "name": job.name,
        "job_file": job.display,
        "spec_file": spec.display,
        "cluster": spec.cluster.name,
        "user": spec.cluster.ssh.user,
        "mount": spec.cluster.storage.mount,
        "workdir": job.workdir,
        "workdir_q": shlex.quote(job.workdir),
        "processes": job.processes,
        "placement": placement,
        "nodes": len(placement),
        "per_node": per_node,
        "launch_node": placement[0][0],
        "cpus_per_task": cpus_per_task,
        "worker_cpus": cpus_per_task * per_node,
        "gpus": per_node if pools[0].is_gpu else 0,
        "timeout": job.timeout_seconds,
        "slurm_time": slurm_time(job.timeout_seconds),
        "kill_after": TIMEOUT_KILL_AFTER,
        "env": list(env.items()),
        "exports": [(name, shlex.quote(value)) for name, value in env.items()],
        "command_line": shlex.join(command),
        "mpirun_equivalent": equivalent,
        "hostfile": hostfile if hostfile.startswith("/") else f"./{hostfile}",
        "slurm_line": shlex.join(slurm_command(job, env, wrapper)),
        "mpijob_command": mpijob_command(job, env, wrapper),
        "wrapper": wrapper,
        "elastic": job.elastic,
        "discovery": discovery,
        "api_version": MPIJOB_API_VERSION,
        "image": MPIJOB_IMAGE,
        "claim": MPIJOB_SHARED_CLAIM,
        "gpu_resource": GPU_RESOURCE,
    }
    jinja = templates(root)
    return RenderedJob(
        job=job,
        placement=tuple(placement),
        ranks=tuple(node for node, ranks in placement for _ in range(ranks)),
        launch_node=placement[0][0],
        env=env,
        command=tuple(command),
        hostfile=_render(jinja, "hostfile", context),
        script=_render(jinja, "script", context),
        mpirun_equivalent=equivalent,
        sbatch=_render(jinja, "sbatch", context),
        mpijob=_render(jinja, "mpijob", context),
        wrapper=WRAPPER_SOURCE.read_text(encoding="utf-8"),
        wrapper_path=wrapper,
        discovery=elastic.discovery_script(elastic.hosts_path(discovery)) if job.elastic else None,
        discovery_path=discovery if job.elastic else None,
    )
