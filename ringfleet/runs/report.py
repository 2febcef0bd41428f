"""One run, in full: what `ringfleet runs ENV RUN` prints and the HTML report shows."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from ringfleet.nodes import Node
from ringfleet.runs.access import read_bytes, run_path
from ringfleet.runs.record import METRICS_NAME, RunRecord, with_defaults
from ringfleet.spec import ClusterSpec

# Result files the shipped jobs write into the run directory, in order of preference.
METRIC_FILES = (METRICS_NAME, "synthetic.json")
# Per-epoch (or per-iteration) curves inside a metrics file, for the plot.
HISTORY_KEY = "history"
LAUNCH_NAME = "launch.sh"
# A rank reporting its throughput: `... 123.4 img/sec` (synthetic), samples/s or images/s.
THROUGHPUT_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(img/sec|images/s(?:ec)?|samples/s(?:ec)?)")


@dataclass
class RunReport:
    record: RunRecord
    run_dir: str
    metrics: dict = field(default_factory=dict)
    history: dict[str, list[float]] = field(default_factory=dict)
    throughput: dict[int, str] = field(default_factory=dict)
    launch: str = ""

    @property
    def final_metrics(self) -> dict[str, object]:
        """The scalar results (numbers, words); the curves stay in `history`."""
        return {k: v for k, v in self.metrics.items() if not isinstance(v, (dict, list))}


def load_report(spec: ClusterSpec, node: Node, record: RunRecord) -> RunReport:
    """Everything about one run the record directory holds."""
    run_dir = run_path(spec, record["run_id"])
    report = RunReport(with_defaults(record), run_dir)
    for name in METRIC_FILES:
        data = read_bytes(node, f"{run_dir}/{name}")
        if data is None:
            continue
        try:
            metrics = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            continue  # the job's own file: shown as missing rather than failing the report
        if isinstance(metrics, dict):
            report.metrics = metrics
            history = metrics.get(HISTORY_KEY)
            if isinstance(history, dict):
                report.history = {
                    k: [float(x) for x in v] for k, v in history.items() if _numbers(v)
                }
            break
    for rank in range(record.get("ranks") or 0):
        data = read_bytes(node, f"{run_dir}/rank-{rank}.log")
        rate = last_throughput((data or b"").decode(errors="replace").splitlines())
        if rate:
            report.throughput[rank] = rate
    report.launch = (read_bytes(node, f"{run_dir}/{LAUNCH_NAME}") or b"").decode(errors="replace")
    return report


def _numbers(values) -> bool:
    return isinstance(values, list) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in values
    )


def last_throughput(lines: list[str]) -> str | None:
    """The last throughput a rank printed, e.g. `123.4 img/sec`."""
    for line in reversed(lines):
        if match := THROUGHPUT_RE.search(line):
            return f"{match.group(1)} {match.group(2)}"
    return None


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def rows(report: RunReport) -> list[tuple[str, str]]:
    """The report as (field, value) rows: the text view and the HTML table both use them."""
    r = report.record
    out = [
        ("run", str(r["run_id"])),
        ("job", str(r.get("job"))),
        ("status", f"{r.get('reason')} (exit {r.get('exit_code')})"),
        ("started", str(r.get("started"))),
        ("duration", f"{r.get('seconds')} s"),
        ("ranks", f"{r.get('ranks')} on {', '.join(r.get('nodes') or [])}"),
        ("record", f"{report.run_dir} (version {r.get('version')})"),
    ]
    attempts = r.get("attempts") or []
    out.append(("attempts", str(len(attempts) or 1) + f" (recoveries {r.get('recoveries')})"))
    for a in attempts:
        lost = f", lost {a['lost_node']}" if a.get("lost_node") else ""
        out.append(
            (f"  attempt {a['attempt']}", f"{a['reason']} (exit {a['exit_code']}{lost}) "
             f"in {a['seconds']} s")
        )
    if r.get("slurm_job_id"):
        out.append(("slurm job", str(r["slurm_job_id"])))
    exits = r.get("rank_exits")
    if exits:
        text = " ".join(f"{k}:{'?' if v is None else v}" for k, v in exits.items())
        out.append(("rank exits", text))
    for key, value in report.final_metrics.items():
        out.append((key, _fmt(value)))
    for rank, rate in sorted(report.throughput.items()):
        out.append((f"throughput rank {rank}", rate))
    return out


def text(report: RunReport) -> str:
    table = rows(report)
    width = max(len(k) for k, _ in table)
    return "".join(f"{k.ljust(width)}  {v}\n" for k, v in table)
