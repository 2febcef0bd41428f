"""f  fault tolerance (#18): the health gate's time on 3 nodes, and seconds from a node
   killed mid-job to training resumed from its checkpoint (restart, `restarts: 2`).

Usage: flock /tmp/rf-docker.lock .venv/bin/python bench/restart_bench.py [GATE_RUNS]
Writes bench/results/f-restart.md. A benchmark, not a test: it reports what it measures.
It kills rf-local-cpu-2 (the local provider is Docker) and the run heals it.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RINGFLEET = [sys.executable, "-m", "ringfleet.cli"]
JOB = ROOT / "tests" / "data" / "run" / "digits-restarts.yaml"
VICTIM = "rf-local-cpu-2"
KILL_AFTER = "checkpoint: epoch 3"
# Milestones after the kill, by the first line that shows each.
MILESTONES = {
    # mpirun often exits first; then the loss shows as the heal starting.
    "loss detected": re.compile(r"node \S+ lost|: healing "),
    "node healed, gate passed": re.compile(r"health gate: passed"),
    "training resumed": re.compile(r"resumed from checkpoint at epoch"),
    "first epoch after resume": re.compile(r"checkpoint: epoch"),
}
GATE_BUDGET_S = 30.0


def gate_seconds(runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        argv = [*RINGFLEET, "check", "local"]
        out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
        match = re.search(r"health gate passed in ([0-9.]+) s", out.stdout)
        if not match:
            raise SystemExit(f"check local failed: {out.stdout}{out.stderr}")
        times.append(float(match.group(1)))
    return times


def restart() -> tuple[dict[str, float], int]:
    proc = subprocess.Popen(
        [*RINGFLEET, "run", "local", str(JOB)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    killed_at, seen = None, {}
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        if killed_at is None and KILL_AFTER in line:
            subprocess.run(["docker", "kill", VICTIM], check=True, capture_output=True)
            killed_at = time.monotonic()
            continue
        if killed_at is None:
            continue
        for name, pattern in MILESTONES.items():
            if name not in seen and pattern.search(line):
                seen[name] = round(time.monotonic() - killed_at, 1)
                break
    return seen, proc.wait()


def main(argv: list[str]) -> int:
    gates = gate_seconds(int(argv[0]) if argv else 3)
    seen, code = restart()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    gate = statistics.median(gates)
    rows = [
        (f"health gate, 3 nodes (median of {len(gates)})", f"{gate:.1f} s "
         f"(target < {GATE_BUDGET_S:.0f} s: {'met' if gate < GATE_BUDGET_S else 'NOT met'})"),
        *[(f"kill -> {k}", f"{v} s") for k, v in seen.items()],
        ("run exit code", str(code)),
    ]  # fmt: skip
    text = "\n".join([
        "# f: fault tolerance (restart after a lost node)", "",
        f"Measured {stamp} on this machine.",
        "", "| metric | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows], "",
        f"digits (4 ranks on 2 nodes, 12 epochs, `restarts: 2`); {VICTIM} killed with "
        "`docker kill` after epoch 3's checkpoint. The heal is `ringfleet up`'s: the stopped "
        "container is started and converged (node part), then the gate runs again.", "",
    ])  # fmt: skip
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "f-restart.md").write_text(text)
    print(text)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
