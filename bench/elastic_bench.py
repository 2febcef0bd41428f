"""g  elastic Horovod (#18): seconds from a node killed mid-run to training going on with
the rest, and to the healed node's ranks training again (jobs/digits-elastic.yaml).

Usage: flock /tmp/rf-docker.lock .venv/bin/python bench/elastic_bench.py
Writes bench/results/g-elastic.md. A benchmark, not a test: it reports what it measures.
It kills rf-local-cpu-2 (the local provider is Docker); the run heals it.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RINGFLEET = [sys.executable, "-m", "ringfleet.cli"]
JOB = ROOT / "jobs" / "digits-elastic.yaml"
VICTIM = "rf-local-cpu-2"
EPOCH = re.compile(r"epoch (\d+): val_accuracy=[0-9.]+ ranks=(\d+)")
KILL_AFTER_EPOCH = 3
# Milestones after the kill, by the first line that shows each, in order.
MILESTONES = {
    "loss announced": re.compile(rf"lost {VICTIM}; continuing with"),
    "training continued (an epoch done on 2 ranks)": re.compile(r"epoch \d+: .* ranks=2\b"),
    "node healed, back on the list": re.compile(rf"healed {VICTIM}"),
    "its ranks started again (rejoined)": re.compile(rf"{VICTIM} rejoined"),
    "back to 4 ranks (an epoch done on 4)": re.compile(r"epoch \d+: .* ranks=4\b"),
}


def elastic() -> tuple[dict[str, float], int, float]:
    proc = subprocess.Popen(
        [*RINGFLEET, "run", "local", str(JOB)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    started, killed_at, seen = time.monotonic(), None, {}
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(line)
        match = EPOCH.search(line)
        if killed_at is None:
            if match and int(match[1]) >= KILL_AFTER_EPOCH:
                subprocess.run(["docker", "kill", VICTIM], check=True, capture_output=True)
                killed_at = time.monotonic()
            continue
        pending = [name for name in MILESTONES if name not in seen]
        if pending and MILESTONES[pending[0]].search(line):
            seen[pending[0]] = round(time.monotonic() - killed_at, 1)
    code = proc.wait()
    return seen, code, round(time.monotonic() - started, 1)


def main() -> int:
    seen, code, seconds = elastic()
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    rows = [
        *[(f"kill -> {k}", f"{v} s") for k, v in seen.items()],
        ("whole run", f"{seconds} s"),
        ("run exit code", str(code)),
    ]
    text = "\n".join([
        "# g: elastic Horovod (a lost node, the run goes on)", "",
        f"Measured {stamp} on this machine.",
        "", "| metric | value |", "| --- | --- |", *[f"| {k} | {v} |" for k, v in rows], "",
        f"digits-elastic (4 ranks on 2 nodes, elastic 2..4, 100 epochs); {VICTIM} killed with "
        f"`docker kill` after epoch {KILL_AFTER_EPOCH}. The heal is `ringfleet up`'s: the "
        "container is recreated and converged, then it goes back on the discovery list.", "",
    ])  # fmt: skip
    (BENCH / "results").mkdir(exist_ok=True)
    (BENCH / "results" / "g-elastic.md").write_text(text)
    print(text)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
