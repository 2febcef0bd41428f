"""Benchmark (e): `ringfleet run` against hand launches of the same job on the same nodes.

The same synthetic job (jobs/scripts/synthetic.py, small CNN, batch 32 per rank) on the
same two nodes of the local cluster, launched three ways, alternating:

  ringfleet  `ringfleet run` (rendered environment + the per-rank thread wrapper)
  horovodrun plain `horovodrun -np N -H a:s,b:s python synthetic.py`, no environment at all
  mpirun     `mpirun` with the classic flags of Horovod's docs
             (-bind-to none -map-by slot -mca pml ob1 -mca btl ^openib -x PATH)

for 1 rank per node (2 ranks) and 2 ranks per node (4 ranks). Every round runs the
three launchers once per layout, the first launcher rotating from round to round, so
slow moments of the shared 2-core machine land on every launcher alike. The score is
the job's own total img/s; the verdict is median(ringfleet) / max(median of the hand
launches) >= 0.98 per layout.

Usage: .venv/bin/python bench/peer_launch.py [ROUNDS] [--append]   (default 5; local cluster up)
Writes bench/results/e-peer-launch.md, .png and .json. With --append the rounds join those
already in the .json, so rounds can be taken one at a time between other uses of the
machine (each round is complete in itself: every launcher, both layouts).
"""

from __future__ import annotations

import io
import json
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import matplotlib
import yaml

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402

from ringfleet.jobs.render import HOROVODRUN, MPIRUN, NODE_PYTHON, render_job  # noqa: E402
from ringfleet.jobs.run import run_job  # noqa: E402
from ringfleet.jobs.spec import load_job  # noqa: E402
from ringfleet.nodes.docker import DockerNode  # noqa: E402
from ringfleet.providers.docker.engine import docker_client  # noqa: E402
from ringfleet.spec import load_spec, project_root  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
ROOT = project_root()
QUIET = Console(file=io.StringIO())
TARGET_RATIO = 0.98
DEFAULT_ROUNDS = 5
LAUNCHERS = ("ringfleet", "horovodrun", "mpirun")
# layout name -> the job file ringfleet runs; hand launches reuse its placement and args.
LAYOUTS = {"1 rank/node": "peer-1", "2 ranks/node": "peer-2"}
# The classic hand launch of Horovod's docs, verbatim.
CLASSIC_MPIRUN_FLAGS = [
    "-bind-to", "none", "-map-by", "slot",
    "-mca", "pml", "ob1", "-mca", "btl", "^openib",
    "-x", "PATH",
]  # fmt: skip
HAND_DIR = "/shared/bench-e"


def hand_command(launcher: str, job, placement, out: str) -> list[str]:
    """The hand launch: the same ranks on the same nodes, nothing of ringfleet's."""
    hosts = ",".join(f"{node}:{slots}" for node, slots in placement)
    script = [NODE_PYTHON, f"{HAND_DIR}/synthetic.py", *job.args, "--output", out]
    np = ["-np", str(job.processes)]
    if launcher == "horovodrun":
        return [HOROVODRUN, *np, "-H", hosts, *script]
    return [MPIRUN, *np, "-H", hosts, *CLASSIC_MPIRUN_FLAGS, *script]


def _timed(job_name: str) -> str:
    """`ITERS x 5` from a bench job's own arguments (synthetic.py: 5 batches per iteration)."""
    args = yaml.safe_load((BENCH / "jobs" / f"{job_name}.yaml").read_text())["entry"]["args"]
    return f"{args[args.index('--num-iters') + 1]} x 5"


def run_once(spec, launcher: str, job_name: str, serial: int) -> float:
    job_file = BENCH / "jobs" / f"{job_name}.yaml"
    first = DockerNode(docker_client(), spec.nodes[0].name)
    user = spec.cluster.ssh.user
    if launcher == "ringfleet":
        res = run_job(spec, job_file, console=QUIET)
        if res.exit_code != 0:
            raise SystemExit(f"ringfleet {job_name} failed: {res.reason}")
        out = res.run_dir
    else:
        job = load_job(job_file, spec)
        placement = render_job(spec, job).placement
        out = f"{HAND_DIR}/{launcher}-{job_name}-{serial}"
        cmd = hand_command(launcher, job, placement, out)
        code, text = first.run(
            ["/bin/sh", "-c", f"cd {HAND_DIR} && {shlex.join(cmd)}"], user=user, check=False
        )
        if code != 0:
            raise SystemExit(f"{launcher} {job_name} failed ({code}): {text[-2000:]}")
    _, text = first.run(["cat", f"{out}/synthetic.json"], user=user)
    return float(json.loads(text)["total_img_s"])


def prepare(spec) -> None:
    first = DockerNode(docker_client(), spec.nodes[0].name)
    user = spec.cluster.ssh.user
    first.run(["mkdir", "-p", HAND_DIR], user=user)
    _, ids = first.run(["id", "-u", user])
    _, gids = first.run(["id", "-g", user])
    src = (ROOT / "jobs" / "scripts" / "synthetic.py").read_bytes()
    first.put_file(f"{HAND_DIR}/synthetic.py", src, (int(ids), int(gids)))


def measure(spec, rounds: int, scores: dict, done: int) -> dict[str, dict[str, list[float]]]:
    serial = done * len(LAUNCHERS) * len(LAYOUTS)
    for r in range(done, done + rounds):
        order = LAUNCHERS[r % 3 :] + LAUNCHERS[: r % 3]
        for layout, job_name in LAYOUTS.items():
            for launcher in order:
                serial += 1
                started = time.monotonic()
                value = run_once(spec, launcher, job_name, serial)
                scores[layout][launcher].append(value)
                print(
                    f"round {r + 1} {layout:13} {launcher:10} {value:7.1f} img/s "
                    f"({time.monotonic() - started:.0f} s)",
                    flush=True,
                )
    return scores


def summarise(scores) -> tuple[list[str], dict[str, float]]:
    lines = [
        "| layout | launcher | median img/s | min | max | runs |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    ratios = {}
    for layout, by in scores.items():
        medians = {name: statistics.median(v) for name, v in by.items()}
        for name, values in by.items():
            lines.append(
                f"| {layout} | {name} | {medians[name]:.1f} | {min(values):.1f} | "
                f"{max(values):.1f} | {len(values)} |"
            )
        best_hand = max(medians["horovodrun"], medians["mpirun"])
        ratios[layout] = medians["ringfleet"] / best_hand
    return lines, ratios


def plot(scores) -> None:
    fig, axes = plt.subplots(1, len(scores), figsize=(9, 3.8), sharey=False)
    for ax, (layout, by) in zip(axes, scores.items(), strict=True):
        ax.boxplot([by[n] for n in LAUNCHERS], tick_labels=list(LAUNCHERS))
        for i, name in enumerate(LAUNCHERS, start=1):
            ax.scatter([i] * len(by[name]), by[name], s=12, alpha=0.6)
        ax.set_title(layout)
        ax.set_ylabel("img/s (job total)")
    fig.suptitle("Same job, same nodes: ringfleet vs hand launches")
    fig.tight_layout()
    fig.savefig(RESULTS / "e-peer-launch.png", dpi=100)
    plt.close(fig)


def main(argv: list[str]) -> int:
    append = "--append" in argv
    argv = [a for a in argv if a != "--append"]
    rounds = int(argv[0]) if argv else DEFAULT_ROUNDS
    saved = RESULTS / "e-peer-launch.json"
    scores = {layout: {name: [] for name in LAUNCHERS} for layout in LAYOUTS}
    if append and saved.exists():
        scores = json.loads(saved.read_text())
    done = len(scores[next(iter(LAYOUTS))]["ringfleet"])
    spec = load_spec("local", ROOT)
    prepare(spec)
    scores = measure(spec, rounds, scores, done)
    rounds = done + rounds
    table, ratios = summarise(scores)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    verdicts = [
        f"- {layout}: ringfleet / best hand launch = {ratio:.3f} "
        f"(target >= {TARGET_RATIO}: {'met' if ratio >= TARGET_RATIO else 'NOT met'})"
        for layout, ratio in ratios.items()
    ]
    text = "\n".join(
        [
            "# Peer launch: ringfleet vs horovodrun vs mpirun",
            "",
            f"Measured until {stamp} on this machine: {rounds} alternating rounds. "
            "Local cluster, nodes rf-local-cpu-1 and -2 "
            "(2 CPUs each, on a 2-core host); synthetic CNN, batch 32 per rank, "
            f"{_timed('peer-1')} timed batches at 1 rank/node, {_timed('peer-2')} at 2 "
            "ranks/node; score = the job's total img/s.",
            "",
            *table,
            "",
            *verdicts,
            "",
            "Hand launches: plain `horovodrun -np N -H a:s,b:s python synthetic.py` with no "
            "environment, and `mpirun` with "
            f"`{' '.join(CLASSIC_MPIRUN_FLAGS)}`. Both launch from rf-local-cpu-1 as the job "
            "user, like `ringfleet run`.",
            "",
        ]
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "e-peer-launch.md").write_text(text)
    (RESULTS / "e-peer-launch.json").write_text(json.dumps(scores, indent=2) + "\n")
    plot(scores)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
