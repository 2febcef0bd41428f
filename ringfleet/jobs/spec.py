"""Job specs (`jobs/*.yaml`), checked against a cluster spec, and where their ranks go.

A job names pools, not hosts: the same file runs on every env whose pools have
those names, and `place` decides which nodes get how many ranks.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
)

from ringfleet.errors import RingfleetError
from ringfleet.paths import STATE_DIRNAME, state_root
from ringfleet.pydantic_errors import to_ringfleet_error
from ringfleet.safetext import refuse_control
from ringfleet.spec import (
    INTERFACE_PATTERN,
    AbsPath,
    ClusterSpec,
    Name,
    ResolvedPool,
    Strict,
    project_root,
)
from ringfleet.yamlio import read_yaml

ROOT = "job"
DEFAULT_TIMEOUT = 3600
# More restarts than this is a job that fails, not a node that got lost.
MAX_RESTARTS = 100

_DURATION = re.compile(r"([0-9]+)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def duration_seconds(value: object) -> object:
    """30 -> 30, '30m' -> 1800, '2h' -> 7200; other values are refused."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and (match := _DURATION.fullmatch(value.strip())):
        return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    raise ValueError("must be seconds or a duration such as 90s, 30m, 2h or 1d")


def _pool_list(value: object) -> object:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise ValueError("must be a pool name or a list of pool names")


def _interface(value: str) -> str:
    if not INTERFACE_PATTERN.fullmatch(value):
        raise ValueError("must be a network interface name such as eth0")
    return value


PoolNames = Annotated[list[Name], BeforeValidator(_pool_list), Field(min_length=1)]
Seconds = Annotated[int, BeforeValidator(duration_seconds), Field(ge=1)]
Interface = Annotated[str, AfterValidator(_interface)]


class Entry(Strict):
    script: str = Field(min_length=1)
    """Python file, relative to the job file's directory or the project root."""
    args: list[str] = Field(default_factory=list)
    """Arguments to the script; each stays one argument, spaces and quotes included."""


class Elastic(Strict):
    """Horovod's elastic mode: the run goes on while at least min_processes ranks are left."""

    min_processes: int = Field(ge=1)
    """Fewest ranks the run continues with after losing nodes."""
    max_processes: int = Field(ge=1)
    """Most ranks Horovod may run, as lost nodes heal and rejoin."""


class JobFile(Strict):
    """The contents of one `jobs/*.yaml` file, before the cluster fills the defaults."""

    name: Name
    pool: PoolNames
    """A pool name or a list of them; all CPU or all GPU."""
    processes: int | None = Field(default=None, ge=1)
    """Ranks in total (mpirun -np); default: slots_per_node on every node of the pool(s)."""
    slots_per_node: int | None = Field(default=None, ge=1)
    """Most ranks on one node; default: the pool's slots."""
    entry: Entry
    env: dict[str, str] = Field(default_factory=dict)
    """Extra environment for every rank; wins over ringfleet's thread tuning."""
    workdir: AbsPath | None = None
    """Directory on shared storage; default <mount>/jobs/<name>."""
    timeout: Seconds = DEFAULT_TIMEOUT
    launcher: Literal["horovodrun", "mpirun"] = "horovodrun"
    interface: Interface | None = None
    """Network interface between nodes; default: the cluster's network.interface."""
    tuning: bool = True
    """Export OpenMP/MKL/TensorFlow thread settings on CPU ranks."""
    restarts: int = Field(default=0, ge=0, le=MAX_RESTARTS)
    """Attempts after the first: after a lost node (healed first), and with
    restart_on_failure after any failure; each resumes from $RINGFLEET_CHECKPOINT_DIR."""
    restart_on_failure: bool = False
    """Restart after the job's own non-zero exit too, not only after a lost node."""
    elastic: Elastic | None = None
    """Horovod elastic mode (launcher horovodrun); `processes` is the starting size."""


class Job(BaseModel):
    """A job checked against one cluster spec, with every default filled in.

    `ringfleet run` adds run variables with `job.model_copy(update={"env": ...})`.
    """

    model_config = ConfigDict(frozen=True)

    name: str
    path: Path
    """The job file."""
    display: str
    """The job file as error messages name it."""
    pools: tuple[str, ...]
    processes: int
    slots_per_node: int | None
    entry_path: Path
    """Where the entry script is on this machine; `require_script` checks it exists."""
    args: tuple[str, ...]
    env: dict[str, str]
    workdir: str
    timeout_seconds: int
    launcher: Literal["horovodrun", "mpirun"]
    interface: str
    tuning: bool
    restarts: int = 0
    restart_on_failure: bool = False
    elastic: Elastic | None = None

    @property
    def remote_script(self) -> str:
        """`ringfleet run` copies the script into the workdir, so ranks run it from there."""
        return posixpath.join(self.workdir, self.entry_path.name)


def display_path(path: Path, root: Path | None = None) -> str:
    """The job file as users name it: relative to the project when inside it."""
    base = (root or project_root()).resolve()
    try:
        return str(path.resolve().relative_to(base))
    except ValueError:
        return str(path)


def load_job(path: Path, spec: ClusterSpec, root: Path | None = None) -> Job:
    """Read and check a job file against `spec`; every problem is a one-line RingfleetError."""
    display = display_path(path, root)
    raw = read_yaml(path, display)
    if raw is None:
        raise RingfleetError(display, "file is empty; expected a job spec (name, pool, entry)")
    if not isinstance(raw, dict):
        raise RingfleetError(display, "top level must be a mapping of job fields", raw)
    refuse_control(raw, display, ROOT)
    try:
        file = JobFile.model_validate(raw)
    except ValidationError as exc:
        raise to_ringfleet_error(exc, display, ROOT, JobFile) from None
    return _resolve(file, spec, path, display, root or project_root())


def _resolve(file: JobFile, spec: ClusterSpec, path: Path, display: str, root: Path) -> Job:
    pools = _check_pools(file, spec, display)
    _check_slots_per_node(file, pools, display)
    _check_threads(file, pools, display)
    processes = _check_processes(file, pools, display)
    _check_env(file, display)
    if file.restart_on_failure and not file.restarts:
        raise RingfleetError(
            _at(display, "restart_on_failure"), "needs restarts >= 1 to restart at all", True
        )
    _check_elastic(file, processes, display)
    return Job(
        name=file.name,
        path=path,
        display=display,
        pools=tuple(p.name for p in pools),
        processes=processes,
        slots_per_node=file.slots_per_node,
        entry_path=_script_source(file, path, root, display),
        args=tuple(file.entry.args),
        env=file.env,
        workdir=_workdir(file, spec, display),
        timeout_seconds=file.timeout,
        launcher=file.launcher,
        interface=file.interface or spec.mpi_include,
        tuning=file.tuning,
        restarts=file.restarts,
        restart_on_failure=file.restart_on_failure,
        elastic=file.elastic,
    )


def _at(display: str, field: str) -> str:
    return f"{display}: {ROOT}.{field}" if field else f"{display}: {ROOT}"


def _check_pools(file: JobFile, spec: ClusterSpec, display: str) -> list[ResolvedPool]:
    where = _at(display, "pool")
    for name in file.pool:
        if name not in spec.pools:
            known = ", ".join(spec.pools)
            raise RingfleetError(where, f"unknown pool; {spec.display} has pools {known}", name)
    if len(set(file.pool)) != len(file.pool):
        raise RingfleetError(where, "a pool is listed more than once", file.pool)
    pools = [spec.pools[name] for name in file.pool]
    if len({p.is_gpu for p in pools}) > 1:
        raise RingfleetError(
            where,
            "cannot mix CPU and GPU pools in one launch: Horovod ranks are all CPU or all GPU",
            file.pool,
        )
    for pool in pools:
        if not pool.nodes:
            raise RingfleetError(
                where, f"pool {pool.name} has 0 nodes in {spec.display}; give it nodes first"
            )
    return pools


def _check_slots_per_node(file: JobFile, pools: list[ResolvedPool], display: str) -> None:
    for pool in pools:
        if file.slots_per_node is not None and file.slots_per_node > pool.slots:
            raise RingfleetError(
                _at(display, "slots_per_node"),
                f"more than the {pool.slots} slot(s) of a node in pool {pool.name}",
                file.slots_per_node,
            )


def _check_threads(file: JobFile, pools: list[ResolvedPool], display: str) -> None:
    """One launch exports one OMP_NUM_THREADS, so tuned CPU pools must agree on it."""
    threads = sorted({p.pool.threads_per_rank for p in pools if not p.is_gpu})
    if file.tuning and len(threads) > 1:
        raise RingfleetError(
            _at(display, "pool"),
            f"pools give ranks different threads_per_rank ({', '.join(map(str, threads))}); "
            "use one pool or set tuning: false",
            file.pool,
        )


def node_limits(
    pools: list[ResolvedPool], slots_per_node: int | None
) -> Iterator[tuple[str, int]]:
    """(node name, most ranks it may take), in placement order."""
    for pool in pools:
        limit = min(pool.slots, slots_per_node or pool.slots)
        for node in pool.nodes:
            yield node.name, limit


def _check_processes(file: JobFile, pools: list[ResolvedPool], display: str) -> int:
    if file.processes is None and file.slots_per_node is None:
        raise RingfleetError(_at(display, ""), "set processes, slots_per_node or both")
    capacity = sum(limit for _, limit in node_limits(pools, file.slots_per_node))
    if file.processes is None:
        return capacity
    if file.processes > capacity:
        raise RingfleetError(
            _at(display, "processes"),
            f"only {capacity} slot(s) in {_describe(pools, file.slots_per_node)}",
            file.processes,
        )
    return file.processes


def _describe(pools: list[ResolvedPool], slots_per_node: int | None) -> str:
    parts = [
        f"pool {p.name} ({len(p.nodes)} node(s) x {min(p.slots, slots_per_node or p.slots)})"
        for p in pools
    ]
    return " + ".join(parts)


def _check_elastic(file: JobFile, processes: int, display: str) -> None:
    """Elastic needs Horovod's own driver, and a starting size it may shrink and grow from."""
    elastic = file.elastic
    if elastic is None:
        return
    if file.launcher != "horovodrun":
        raise RingfleetError(
            _at(display, "elastic"),
            "needs launcher: horovodrun (Horovod's elastic driver; mpirun has none)",
            file.launcher,
        )
    if elastic.min_processes > elastic.max_processes:
        raise RingfleetError(
            _at(display, "elastic.min_processes"),
            f"must be <= elastic.max_processes ({elastic.max_processes})",
            elastic.min_processes,
        )
    if not elastic.min_processes <= processes <= elastic.max_processes:
        raise RingfleetError(
            _at(display, "processes"),
            f"must be within elastic [{elastic.min_processes}, {elastic.max_processes}]: "
            "it is the starting size",
            processes,
        )


def _check_env(file: JobFile, display: str) -> None:
    for name in file.env:
        if not _ENV_NAME.fullmatch(name):
            raise RingfleetError(
                _at(display, f"env.{name}"),
                "must be a shell variable name: letters, digits and _, not starting with a digit",
                name,
            )


def _script_source(file: JobFile, path: Path, root: Path, display: str) -> Path:
    """The job file's directory first, then the project root; the first that exists wins.

    `run` copies the script to shared storage every node reads, so it must stay
    inside the job file's folder or the project once symlinks are resolved, and
    never come from ringfleet's own state (keys, outputs) in `.ringfleet/`.
    """
    script = file.entry.script
    where = _at(display, "entry.script")
    if PurePosixPath(script).is_absolute():
        raise RingfleetError(
            where, "must be relative to the job file's directory or the project root", script
        )
    bases = [path.resolve().parent, root.resolve()]
    candidates = [base / script for base in bases]
    chosen = next((c for c in candidates if c.is_file()), candidates[0])
    found = chosen.resolve()
    if not any(found.is_relative_to(base) for base in bases):
        raise RingfleetError(
            where,
            "must stay inside the job file's directory or the project (symlinks resolved)",
            script,
        )
    state = state_root(root.resolve())
    if found.is_relative_to(state):
        raise RingfleetError(
            where, f"must not be under {STATE_DIRNAME}/ (ringfleet's state)", script
        )
    # The name the ranks run it by stays the one the job gave, not a symlink target's.
    return chosen


def _workdir(file: JobFile, spec: ClusterSpec, display: str) -> str:
    mount = PurePosixPath(spec.cluster.storage.mount)
    if file.workdir is None:
        return str(mount / "jobs" / file.name)
    workdir = PurePosixPath(posixpath.normpath(file.workdir))
    if mount not in workdir.parents:
        raise RingfleetError(
            _at(display, "workdir"),
            f"must be a directory under the shared mount {mount}, the one path every node sees",
            file.workdir,
        )
    return str(workdir)


def require_script(job: Job) -> Path:
    """The entry script on this machine; `ringfleet run` calls this before copying it."""
    if not job.entry_path.is_file():
        raise RingfleetError(
            _at(job.display, "entry.script"), f"no such file (looked for {job.entry_path})"
        )
    return job.entry_path


def place(spec: ClusterSpec, job: Job) -> list[tuple[str, int]]:
    """(node name, ranks) for each node used: nodes fill in order, up to each one's limit."""
    pools = [spec.pools[name] for name in job.pools]
    left = job.processes
    placement = []
    for node, limit in node_limits(pools, job.slots_per_node):
        if left == 0:
            break
        take = min(limit, left)
        placement.append((node, take))
        left -= take
    if left:
        raise RingfleetError(
            _at(job.display, "processes"),
            f"{left} rank(s) left without a slot; the cluster spec changed since load_job",
            job.processes,
        )
    return placement
