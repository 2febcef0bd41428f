"""The performance acceptance gate of `ringfleet verify --perf`.

Each pool runs two short jobs through `ringfleet run`: an allreduce
microbenchmark (bus bandwidth) and the synthetic training benchmark (images per
second). Results are compared with the pool's baselines in
`inventories/<env>/perf-baseline.json`, beside the lock; a benchmark without a
baseline records one. A result below `tolerance` times its baseline fails.
"""

from __future__ import annotations

import io
import json
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

from ringfleet.errors import RingfleetError
from ringfleet.nodes import user_ids
from ringfleet.paths import BASELINE_NAME, baseline_path  # noqa: F401 - callers import them from here
from ringfleet.spec import ClusterSpec, ResolvedPool

BASELINE_VERSION = 1
DEFAULT_TOLERANCE = 0.8
# A benchmark must finish well inside this; a slower one is a failure in itself.
JOB_TIMEOUT = "10m"


@dataclass(frozen=True)
class Benchmark:
    name: str
    script: str
    """Relative to the project root, as job files name scripts."""
    args: tuple[str, ...]
    result_file: str
    """What the script writes into $RINGFLEET_RUN_DIR."""
    metric: str
    unit: str


# Short on purpose: the gate guards against a slow node or a bad transport, which
# show at once; a long run would only make the gate expensive to run on every change.
BENCHMARKS = (
    Benchmark(
        "allreduce",
        "bench/jobs/allreduce.py",
        ("--megabytes", "64", "--iters", "5", "--warmup", "1"),
        "allreduce.json",
        "busbw_gbit_s",
        "Gbit/s",
    ),
    Benchmark(
        "synthetic",
        "jobs/scripts/synthetic.py",
        ("--model", "cnn", "--batch-size", "32", "--num-iters", "3", "--num-warmup-batches", "2"),
        "synthetic.json",
        "total_img_s",
        "img/s",
    ),
)


@dataclass
class PerfResult:
    pool: str
    benchmark: str
    metric: str
    unit: str
    ranks: int
    value: float | None
    baseline: float | None
    ratio: float | None
    verdict: str
    """recorded, ok, below, failed (the job did not finish) or stale (baseline ranks differ)."""
    run_id: str | None = None
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.verdict in ("recorded", "ok")


def check_tolerance(tolerance: float) -> float:
    if not 0 < tolerance <= 1:
        raise RingfleetError(
            "--tolerance", "must be a fraction of the baseline in (0, 1], e.g. 0.8", tolerance
        )
    return tolerance


def read_baselines(path: Path, display: str | None = None) -> dict[str, Any]:
    """The baselines file, or an empty one; a malformed file is a one-line error."""
    display = display or str(path)
    if not path.exists():
        return {"version": BASELINE_VERSION, "pools": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise RingfleetError(
            f"{display}:{exc.lineno}:{exc.colno}", f"invalid JSON: {exc.msg}"
        ) from None
    except UnicodeDecodeError:
        raise RingfleetError(display, "not UTF-8 text") from None
    if not isinstance(data, dict) or not isinstance(data.get("pools"), dict):
        raise RingfleetError(display, "must be an object with a pools object", data)
    for pool, benches in data["pools"].items():
        if not isinstance(benches, dict):
            raise RingfleetError(f"{display}: pools.{pool}", "must be an object", benches)
        for bench, entry in benches.items():
            value = entry.get("value") if isinstance(entry, dict) else None
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise RingfleetError(
                    f"{display}: pools.{pool}.{bench}.value", "must be a positive number", value
                )
    return data


def write_baselines(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def placement(pool: ResolvedPool) -> tuple[int, int] | None:
    """(processes, slots per node): one rank per node so traffic crosses the network.

    A one-node pool runs two ranks on its node when it has the slots; else None
    (an allreduce of one rank moves nothing).
    """
    if len(pool.nodes) >= 2:
        return len(pool.nodes), 1
    if len(pool.nodes) == 1 and pool.slots >= 2:
        return 2, 2
    return None


def job_document(bench: Benchmark, pool: str, processes: int, slots: int) -> dict[str, Any]:
    return {
        "name": f"perf-{bench.name}-{pool}"[:31].rstrip("-"),
        "pool": pool,
        "processes": processes,
        "slots_per_node": slots,
        "entry": {"script": bench.script, "args": list(bench.args)},
        "timeout": JOB_TIMEOUT,
    }


def judge(value: float, entry: dict[str, Any] | None, ranks: int, tolerance: float):
    """(verdict, ratio) of a result against its baseline entry (None: no baseline yet)."""
    if entry is None:
        return "recorded", None
    if entry.get("ranks") not in (None, ranks):
        return "stale", None
    ratio = value / float(entry["value"])
    return ("ok" if ratio >= tolerance else "below"), ratio


def run_gate(
    spec: ClusterSpec,
    root: Path,
    baselines: dict[str, Any],
    tolerance: float,
    record: bool = False,
    console: Console | None = None,
) -> list[PerfResult]:
    """Run every benchmark on every pool with nodes; update `baselines` in place."""
    from ringfleet.jobs.run import run_job

    console = console or Console(stderr=True)
    results: list[PerfResult] = []
    pools_base = baselines.setdefault("pools", {})
    with tempfile.TemporaryDirectory(prefix="ringfleet-perf-") as tmp:
        for pool in spec.pools.values():
            place = placement(pool)
            if place is None:
                continue
            processes, slots = place
            for bench in BENCHMARKS:
                job_file = Path(tmp) / f"{bench.name}-{pool.name}.yaml"
                job_file.write_text(
                    yaml.safe_dump(job_document(bench, pool.name, processes, slots)),
                    encoding="utf-8",
                )
                console.print(
                    f"perf {pool.name}/{bench.name}: {processes} rank(s)...", highlight=False
                )
                log = io.StringIO()
                run = run_job(spec, job_file, console=Console(file=log, width=200))
                result = PerfResult(
                    pool.name,
                    bench.name,
                    bench.metric,
                    bench.unit,
                    processes,
                    None,
                    None,
                    None,
                    "failed",
                    run.run_id,
                )
                value = _read_metric(spec, run, bench) if run.exit_code == 0 else None
                if value is None:
                    tail = log.getvalue().strip().splitlines()[-5:]
                    result.note = f"{run.reason}; record {run.run_dir}: " + " / ".join(tail)
                    results.append(result)
                    continue
                entry = None if record else pools_base.get(pool.name, {}).get(bench.name)
                result.value = value
                result.baseline = None if entry is None else float(entry["value"])
                result.verdict, result.ratio = judge(value, entry, processes, tolerance)
                if result.verdict == "stale":
                    result.note = (
                        f"baseline was recorded with {entry.get('ranks')} rank(s); "
                        "re-record with --record-baseline"
                    )
                if result.verdict == "recorded":
                    pools_base.setdefault(pool.name, {})[bench.name] = {
                        "metric": bench.metric,
                        "unit": bench.unit,
                        "value": round(value, 4),
                        "ranks": processes,
                        "run_id": run.run_id,
                        "recorded": datetime.now(UTC).isoformat(timespec="seconds"),
                    }
                results.append(result)
                console.print(f"perf {pool.name}/{bench.name}: {describe(result)}", highlight=False)
    baselines["version"] = BASELINE_VERSION
    baselines["env"] = spec.env
    return results


def _read_metric(spec: ClusterSpec, run, bench: Benchmark) -> float | None:
    """The metric from the result file the job left in its run directory on shared storage."""
    from ringfleet.nodes.docker import DockerNode
    from ringfleet.providers.docker.engine import docker_client

    client = docker_client()
    for node in spec.nodes:
        shell = DockerNode(client, node.name)
        if shell.state() == "running":
            code, text = shell.run(["cat", f"{run.run_dir}/{bench.result_file}"], check=False)
            if code != 0:
                return None
            try:
                return float(json.loads(text)[bench.metric])
            except (ValueError, KeyError, TypeError):
                return None
    return None


def number(value: float) -> str:
    """Three significant digits without scientific notation: 0.0123, 4.56, 789, 1234."""
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}"


def describe(r: PerfResult) -> str:
    if r.value is None:
        return f"failed: {r.note}"
    text = f"{number(r.value)} {r.unit}"
    if r.verdict == "recorded":
        return text + " (recorded as the baseline)"
    if r.ratio is None:
        return f"{text}; {r.note}"
    return f"{text} = {r.ratio:.0%} of baseline {number(r.baseline)} ({r.verdict})"


def results_markdown(results: list[PerfResult], tolerance: float) -> str:
    lines = [
        f"Tolerance: {tolerance:.0%} of each pool's baseline.",
        "",
        "| pool | benchmark | ranks | result | baseline | ratio | verdict |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for r in results:
        value = "-" if r.value is None else f"{number(r.value)} {r.unit}"
        base = "-" if r.baseline is None else f"{number(r.baseline)} {r.unit}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.0%}"
        verdict = r.verdict if not r.note else f"{r.verdict}: {r.note}"
        lines.append(
            f"| {r.pool} | {r.benchmark} | {r.ranks} | {value} | {base} | {ratio} | "
            f"{verdict.replace('|', '/')} |"
        )
    return "\n".join(lines) + "\n"


def results_json(spec: ClusterSpec, results: list[PerfResult], tolerance: float) -> str:
    doc = {
        "env": spec.env,
        "tolerance": tolerance,
        "passed": all(r.passed for r in results),
        "results": [asdict(r) for r in results],
    }
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"


def save_report(spec: ClusterSpec, results: list[PerfResult], tolerance: float) -> str:
    """Write perf.json and perf.md into a run directory on shared storage; returns its path."""
    from ringfleet.jobs.run import RUNS_DIRNAME
    from ringfleet.nodes.docker import DockerNode
    from ringfleet.providers.docker.engine import docker_client

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    run_dir = f"{spec.cluster.storage.mount.rstrip('/')}/{RUNS_DIRNAME}/verify-perf-{stamp}"
    user = spec.cluster.ssh.user
    client = docker_client()
    for node in spec.nodes:
        shell = DockerNode(client, node.name)
        if shell.state() != "running":
            continue
        uid, gid = user_ids(shell, user)
        shell.run(["mkdir", "-p", run_dir], user=user)
        shell.put_file(
            f"{run_dir}/perf.json", results_json(spec, results, tolerance).encode(), (uid, gid)
        )
        md = f"# Performance gate of {spec.env}\n\n" + results_markdown(results, tolerance)
        shell.put_file(f"{run_dir}/perf.md", md.encode(), (uid, gid))
        return run_dir
    raise RingfleetError("verify --perf", f"no node of {spec.env} is running to write results")
