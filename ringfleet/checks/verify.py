"""`ringfleet verify ENV`: node checks (testinfra), drift from the lock, and the performance gate.

Every input is read and checked before any node is touched: the env's spec, its
inventory, its lock and its perf baselines. Then the suite in
`ringfleet/checks/suite/` runs with pytest over the inventory, each node is compared
with its pool's lock (or its pool's peers), and with --perf the benchmarks run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringfleet.checks import lock as lockmod
from ringfleet.checks.inventory import rel, require_inventory
from ringfleet.checks.suite.targets import Inventory, ansible_bin, read_inventory
from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.providers import for_spec
from ringfleet.spec import ClusterSpec

SUITE_DIR = Path(__file__).resolve().parent / "suite"
# A suite that hangs (a node that stops answering) must not hold CI forever.
SUITE_TIMEOUT = 1800


@dataclass(frozen=True)
class Case:
    module: str
    name: str
    outcome: str
    """passed, failed, error or skipped."""
    message: str = ""

    @property
    def check(self) -> str:
        """The test without its parameters: one row per fact in the summary."""
        return self.name.split("[", 1)[0]


@dataclass
class SuiteResult:
    cases: list[Case]
    returncode: int
    seconds: float

    def count(self, outcome: str) -> int:
        return sum(1 for c in self.cases if c.outcome == outcome)

    @property
    def passed(self) -> bool:
        # pytest exits 0 when all passed, 5 when nothing was collected (also a failure here).
        return self.returncode == 0 and not any(
            c.outcome in ("failed", "error") for c in self.cases
        )


@dataclass
class Inputs:
    """Everything verify reads from the checkout, checked before any node is contacted."""

    spec: ClusterSpec
    root: Path
    inventory_file: Path
    lock_file: Path
    lock: dict[str, Any] | None
    baseline_file: Path
    baselines: dict[str, Any] | None


@dataclass
class Report:
    env: str
    suite: SuiteResult | None = None
    drift: list[lockmod.Drift] = field(default_factory=list)
    drift_against: str = ""
    notes: list[str] = field(default_factory=list)
    perf: list[Any] | None = None
    perf_dir: str | None = None
    tolerance: float = 0.8
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        suite_ok = self.suite is None or self.suite.passed
        perf_ok = self.perf is None or all(r.passed for r in self.perf)
        return suite_ok and not self.drift and perf_ok


def run_suite(inventory_file: Path, root: Path, stream=None) -> SuiteResult:
    """pytest over the suite, output streamed as it runs; results from its JUnit XML."""
    started = time.monotonic()
    bindir = str(Path(sys.executable).parent)
    env = dict(
        os.environ,
        ANSIBLE_CONFIG=str(root / "ansible.cfg") if (root / "ansible.cfg").is_file() else "",
        # testinfra calls ansible-inventory and ansible by name.
        PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
        PYTHONDONTWRITEBYTECODE="1",
    )
    if not env["ANSIBLE_CONFIG"]:
        del env["ANSIBLE_CONFIG"]
    with tempfile.TemporaryDirectory(prefix="ringfleet-verify-") as tmp:
        junit = Path(tmp) / "junit.xml"
        # An ini file of our own, so the suite runs alike from any checkout, whatever
        # pytest settings (addopts, markers) the surrounding project has.
        ini = Path(tmp) / "pytest.ini"
        ini.write_text("[pytest]\njunit_family = xunit2\n", encoding="utf-8")
        argv = [
            sys.executable, "-m", "pytest", str(SUITE_DIR),
            "-c", str(ini), "--rootdir", str(SUITE_DIR),
            "-p", "no:cacheprovider",
            f"--ansible-inventory={inventory_file}",
            f"--junitxml={junit}",
            "-q", "-rfEs", "--tb=short", "--color=no",
        ]  # fmt: skip
        try:
            proc = subprocess.run(
                argv, env=env, cwd=root, stdout=stream or sys.stdout, stderr=subprocess.STDOUT,
                timeout=SUITE_TIMEOUT,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(
                "verify", f"the node suite ran longer than {SUITE_TIMEOUT} s; a node hangs"
            ) from None
        if proc.returncode in (3, 4):
            # 4: usage error (bad inventory, reported on the line above); 3: internal error.
            raise RingfleetError("verify", "pytest could not run the node suite", proc.returncode)
        cases = parse_junit(junit) if junit.exists() else []
    return SuiteResult(cases, proc.returncode, time.monotonic() - started)


def parse_junit(path: Path) -> list[Case]:
    cases = []
    for tc in ET.parse(path).getroot().iter("testcase"):
        outcome, message = "passed", ""
        for kind in ("failure", "error", "skipped"):
            child = tc.find(kind)
            if child is not None:
                outcome = {"failure": "failed"}.get(kind, kind)
                message = (child.get("message") or "").strip()
                break
        module = (tc.get("classname") or "").rsplit(".", 1)[-1]
        cases.append(Case(module, tc.get("name", ""), outcome, message))
    return cases


def check_drift(inputs: Inputs, inventory: Inventory, report: Report) -> None:
    """Each node against its pool's lock entry; pools without one against their peers."""
    facts = lockmod.collect_all(inventory, for_spec(inputs.spec).nodes())
    lock_display = rel(inputs.lock_file, inputs.root)
    if inputs.lock is None:
        report.drift = lockmod.peer_drift(facts)
        report.drift_against = "pool peers"
        report.notes.append(
            f"no lock at {lock_display}: nodes were compared with their pool peers only; "
            f"run `ringfleet lock {inputs.spec.env}` to record one"
        )
        return
    report.drift = lockmod.lock_drift(inputs.lock, facts)
    report.drift_against = lock_display
    for pool in sorted({f.pool for f in facts.values()} - set(inputs.lock.get("pools", {}))):
        report.notes.append(f"pool {pool} is not in {lock_display}; compared with its peers")


def suite_counts(suite) -> tuple[int, int, int]:
    """(passed, failed, skipped) of the node suite; errors count as failures."""
    return (
        suite.count("passed"),
        suite.count("failed") + suite.count("error"),
        suite.count("skipped"),
    )


def markdown(report: Report) -> str:
    """The verify summary as Markdown, for a pull-request comment."""
    env = report.env
    verdict = "✅ passed" if report.passed else "❌ failed"
    parts = []
    if report.suite is not None:
        passed, failed, skipped = suite_counts(report.suite)
        parts.append(f"node checks {passed} passed, {failed} failed, {skipped} skipped")
    parts.append(f"drift {len(report.drift)} item(s)")
    if report.perf is not None:
        ok = sum(1 for r in report.perf if r.passed)
        parts.append(f"perf {ok} of {len(report.perf)} within tolerance")
    out = [f"## ringfleet verify `{env}`: {verdict}", "", "; ".join(parts) + ".", ""]
    if report.suite is not None:
        out += _suite_markdown(report.suite)
    out += [f"### Drift (against {report.drift_against})", ""]
    if report.drift:
        out.append(lockmod.drift_markdown(report.drift))
    else:
        out += ["No drift: every node matches.", ""]
    out += [f"- {n}" for n in report.notes]
    if report.notes:
        out.append("")
    if report.perf is not None:
        from ringfleet.checks.perfgate import results_markdown

        out += ["### Performance", "", results_markdown(report.perf, report.tolerance)]
        if report.perf_dir:
            out += [f"Results: `{report.perf_dir}` on shared storage.", ""]
    return "\n".join(out).rstrip() + "\n"


def _suite_markdown(suite: SuiteResult) -> list[str]:
    rows: dict[tuple[str, str], Counter] = {}
    for c in suite.cases:
        rows.setdefault((c.module, c.check), Counter())[c.outcome] += 1
    out = [
        f"### Node checks ({suite.seconds:.0f} s)",
        "",
        "| check | passed | failed | skipped |",
        "|---|---:|---:|---:|",
    ]
    for (module, check), n in rows.items():
        failed = n["failed"] + n["error"]
        mark = " ❌" if failed else ""
        out.append(f"| `{module}::{check}`{mark} | {n['passed']} | {failed} | {n['skipped']} |")
    out.append("")
    failures = [c for c in suite.cases if c.outcome in ("failed", "error")]
    if failures:
        out += ["Failures:", ""]
        for c in failures:
            first = (c.message.splitlines() or [""])[0][:200].replace("`", "'")
            out.append(f"- `{c.module}::{c.name}`: {first}")
        out.append("")
    skipped = Counter(c.message.removeprefix("Skipped: ") for c in suite.cases
                      if c.outcome == "skipped")  # fmt: skip
    if skipped:
        out += ["Skipped:", ""]
        out += [f"- {reason} ({n} check(s))" for reason, n in sorted(skipped.items())]
        out.append("")
    return out


def ansible_ready() -> None:
    """testinfra needs ansible-inventory; say so in one line rather than a traceback."""
    if not Path(ansible_bin("ansible-inventory")).exists():
        raise RingfleetError("verify", "ansible-inventory not found; install ansible-core")


def read_inputs(spec: ClusterSpec, root: Path, perf: bool) -> Inputs:
    """Check every file verify reads; each problem is a one-line RingfleetError (exit 2)."""
    from ringfleet.checks.perfgate import baseline_path, read_baselines
    from ringfleet.providers import for_spec

    env = spec.env
    provider = for_spec(spec)
    if perf and not provider.runs_jobs:
        raise RingfleetError(
            "verify --perf",
            f"the benchmarks run through `ringfleet run`, which does not reach provider "
            f"{provider.name} nodes yet",
            provider.name,
        )
    inventory_file = require_inventory(root, env)
    lock_file = lockmod.lock_path(root, env)
    lock = lockmod.read_lock(lock_file, rel(lock_file, root))
    baseline_file = baseline_path(root, env)
    baselines = None
    if perf:
        baselines = read_baselines(baseline_file, rel(baseline_file, root))
    return Inputs(spec, root, inventory_file, lock_file, lock, baseline_file, baselines)


def verify(
    spec: ClusterSpec,
    root: Path,
    *,
    perf: bool = False,
    tolerance: float = 0.8,
    suite: bool = True,
    record_baseline: bool = False,
    console=None,
) -> tuple[Report, Inputs]:
    """Run the checks asked for and return what they found; nothing is printed but progress."""
    from rich.console import Console

    from ringfleet.checks.perfgate import check_tolerance

    console = console or Console()
    check_tolerance(tolerance)
    inputs = read_inputs(spec, root, perf)
    ansible_ready()
    inventory = read_inventory(inputs.inventory_file, rel(inputs.inventory_file, root))
    report = Report(spec.env, tolerance=tolerance)
    if suite:
        console.print(f"verify {spec.env}: node checks (testinfra)", highlight=False)
        sys.stdout.flush()
        report.suite = run_suite(inputs.inventory_file, root)
        report.seconds["suite"] = report.suite.seconds
    started = time.monotonic()
    console.print(
        f"verify {spec.env}: comparing each node with its pool's lock or peers", highlight=False
    )
    check_drift(inputs, inventory, report)
    report.seconds["drift"] = time.monotonic() - started
    if perf:
        from ringfleet.checks.perfgate import run_gate, save_report, write_baselines

        started = time.monotonic()
        baselines = inputs.baselines or {}
        report.perf = run_gate(
            spec, root, baselines, tolerance, record=record_baseline, console=console
        )
        if any(r.verdict == "recorded" for r in report.perf):
            write_baselines(inputs.baseline_file, baselines)
            report.notes.append(f"baselines recorded in {rel(inputs.baseline_file, root)}")
        report.perf_dir = save_report(spec, report.perf, tolerance)
        report.seconds["perf"] = time.monotonic() - started
    return report, inputs


def print_report(report: Report, console) -> None:
    """The drift table, the perf table and one verdict line, on the console."""
    from rich.table import Table

    if report.drift:
        table = Table(title=f"drift against {report.drift_against}", title_justify="left")
        for column in ("node", "item", "locked", "found"):
            table.add_column(column, overflow="fold")
        for row in lockmod.drift_rows(report.drift):
            table.add_row(*row)
        console.print(table)
    else:
        console.print(f"drift: none (against {report.drift_against})", highlight=False)
    for note in report.notes:
        console.print(f"note: {note}", highlight=False, markup=False)
    if report.perf is not None:
        from ringfleet.checks.perfgate import describe

        table = Table(title=f"performance (tolerance {report.tolerance:.0%})", title_justify="left")
        for column in ("pool", "benchmark", "result"):
            table.add_column(column, overflow="fold")
        for r in report.perf:
            table.add_row(r.pool, r.benchmark, describe(r))
        console.print(table)
        if report.perf_dir:
            console.print(f"perf results: {report.perf_dir}/perf.json, perf.md", highlight=False)
    parts = []
    if report.suite is not None:
        passed, failed, skipped = suite_counts(report.suite)
        parts.append(f"checks {passed} passed, {failed} failed, {skipped} skipped")
    parts.append(f"drift {len(report.drift)}")
    if report.perf is not None:
        parts.append(f"perf {sum(r.passed for r in report.perf)}/{len(report.perf)} ok")
    timing = ", ".join(f"{k} {v:.0f} s" for k, v in report.seconds.items())
    style = "green" if report.passed else "red"
    verdict = "passed" if report.passed else "FAILED"
    console.print(
        f"[{style}]verify {report.env}: {verdict}[/] ({'; '.join(parts)}; {timing})",
        highlight=False,
    )
