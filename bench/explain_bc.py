"""Explain benchmarks (b) scaling and (c) allreduce/TCP: where a step's time goes.

On the benchmark cluster (bench/Pulumi.bench.yaml: 2 nodes of 1 CPU each on the 2-core
host) it runs:

  1. the synthetic job at 1 rank and at 2 ranks (as in (b)), the 2-rank one with a
     Horovod timeline and each node's cgroup CPU accounting (cpuacct.usage,
     cpu.stat throttling) read before and after, so a step splits into compute,
     waiting for the allreduce and the allreduce itself, and the CPU the node had;
  2. the knobs that could move it, each at 2 ranks: fusion threshold, cycle time,
     response cache, HOROVOD_AUTOTUNE, Gloo instead of MPI, Open MPI's TCP buffers;
  3. the 64 MB allreduce of (c) with MPI, with Gloo and with larger TCP buffers.

Usage: .venv/bin/python bench/explain_bc.py [REPEATS]   (default 2)
Writes bench/results/bc-explained.md and .json. A benchmark, not a test.
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

import yaml
from rich.console import Console

from ringfleet.jobs.render import HOROVODRUN, NODE_PYTHON
from ringfleet.jobs.run import run_job
from ringfleet.nodes.docker import DockerNode
from ringfleet.providers.docker import cluster as local
from ringfleet.providers.docker.engine import docker_client
from ringfleet.spec import load_spec, project_root

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
ROOT = project_root()
QUIET = Console(file=io.StringIO())
SYNTHETIC_ARGS = ["--model", "cnn", "--batch-size", "32", "--num-iters", "8"]
# Steps the synthetic job takes: 1 broadcast step, 3 warm-up, 8 x 5 timed.
SYNTHETIC_STEPS = 1 + 3 + 8 * 5
BATCH = 32
# Horovod's own knobs, each tried alone against the defaults (Horovod 0.28.1).
KNOBS: dict[str, dict[str, str]] = {
    "defaults": {},
    "fusion 0 (no fusion)": {"HOROVOD_FUSION_THRESHOLD": "0"},
    "fusion 128 MB": {"HOROVOD_FUSION_THRESHOLD": str(128 * 1024 * 1024)},
    "cycle time 0.2 ms": {"HOROVOD_CYCLE_TIME": "0.2"},
    "cycle time 10 ms": {"HOROVOD_CYCLE_TIME": "10"},
    "response cache off": {"HOROVOD_CACHE_CAPACITY": "0"},
    "autotune": {"HOROVOD_AUTOTUNE": "1"},
    "TCP buffers 4 MB (MCA)": {
        "OMPI_MCA_btl_tcp_sndbuf": str(4 * 1024 * 1024),
        "OMPI_MCA_btl_tcp_rcvbuf": str(4 * 1024 * 1024),
    },
}
TMP_PREFIX = "_explain-"
HAND_DIR = "/shared/bench-bc"


def job_file(name: str, processes: int, script: str, args: list[str], env: dict) -> Path:
    path = BENCH / "jobs" / f"{TMP_PREFIX}{name}.yaml"
    body = {
        "name": name,
        "pool": "cpu",
        "processes": processes,
        "slots_per_node": 1,
        "entry": {"script": script, "args": args},
        "env": env,
        "timeout": "20m",
    }
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def cpu_accounting(spec) -> dict[str, dict[str, int]]:
    """Each node's CPU time and throttling so far, from its own cgroup (v1 or v2)."""
    out = {}
    for n in spec.nodes:
        node = DockerNode(docker_client(), n.name)
        text = node.output(
            [
                "/bin/sh",
                "-c",
                "if [ -f /sys/fs/cgroup/cpu.stat ] && grep -q usage_usec /sys/fs/cgroup/cpu.stat; "
                "then cat /sys/fs/cgroup/cpu.stat; else "
                "echo usage_usec $(( $(cat /sys/fs/cgroup/cpuacct/cpuacct.usage) / 1000 )); "
                "sed 's/throttled_time/throttled_usec_ns/' /sys/fs/cgroup/cpu/cpu.stat; fi",
            ]
        )
        values = {}
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if value.strip().isdigit():
                values[key] = int(value)
        if "throttled_usec_ns" in values:
            values["throttled_usec"] = values.pop("throttled_usec_ns") // 1000
        out[n.name] = values
    return out


def run(spec, name: str, processes: int, env: dict, timeline: bool = False) -> dict:
    path = job_file(name, processes, "../../jobs/scripts/synthetic.py", SYNTHETIC_ARGS, env)
    try:
        before = cpu_accounting(spec)
        started = time.monotonic()
        res = run_job(spec, path, console=QUIET, timeline=timeline)
        wall = time.monotonic() - started
        after = cpu_accounting(spec)
    finally:
        path.unlink()
    if res.exit_code != 0:
        raise SystemExit(f"{name} failed: {res.reason}")
    node = DockerNode(docker_client(), spec.nodes[0].name)
    result = json.loads(node.output(["cat", f"{res.run_dir}/synthetic.json"]))
    result["wall_s"] = wall
    result["cpu"] = {
        n: {
            "cpus_used": (after[n]["usage_usec"] - before[n]["usage_usec"]) / 1e6 / wall,
            "throttled_s": (after[n].get("throttled_usec", 0) - before[n].get("throttled_usec", 0))
            / 1e6,
            "periods_throttled": after[n].get("nr_throttled", 0) - before[n].get("nr_throttled", 0),
        }
        for n in after
    }
    if timeline:
        result["timeline"] = timeline_breakdown(node.output(["cat", res.timeline]))
    return result


def timeline_breakdown(text: str) -> dict[str, float]:
    """Wall time (ms per step) each Horovod activity covers, intervals merged across tensors.

    Horovod writes a Chrome trace: per tensor (pid) nested B/E events, the outer one the
    operation (NEGOTIATE_ALLREDUCE, ALLREDUCE), inner ones its phases (QUEUE,
    MEMCPY_IN_FUSION_BUFFER, MPI_ALLREDUCE, MEMCPY_OUT_FUSION_BUFFER). The file may be cut
    off mid-array when the job exits; the complete events are used.
    """
    text = text.strip().rstrip(",")
    if not text.endswith("]"):
        text += "]"
    try:
        events = json.loads(text)
    except json.JSONDecodeError:
        events = json.loads(text[: text.rfind("}") + 1] + "]")
    stacks: dict[tuple, list] = {}
    spans: dict[str, list[tuple[float, float]]] = {}
    for ev in events:
        if not isinstance(ev, dict) or ev.get("ph") not in ("B", "E"):
            continue
        key = (ev.get("pid"), ev.get("tid"))
        if ev["ph"] == "B":
            stacks.setdefault(key, []).append((ev.get("name", "?"), ev["ts"]))
        elif stacks.get(key):
            name, start = stacks[key].pop()
            spans.setdefault(name, []).append((start, ev["ts"]))
    covered = {}
    for name, intervals in spans.items():
        total, end = 0.0, -1.0
        for start, stop in sorted(intervals):
            if stop <= end:
                continue
            total += stop - max(start, end)
            end = stop
        covered[name] = total / 1000 / SYNTHETIC_STEPS
    return covered


def hand_gloo(spec, megabytes: int | None) -> dict:
    """horovodrun --gloo by hand (the renderer always passes --mpi), same nodes and args."""
    first = DockerNode(docker_client(), spec.nodes[0].name)
    user = spec.cluster.ssh.user
    first.run(["mkdir", "-p", HAND_DIR], user=user)
    owner = tuple(int(first.output(["id", flag, user])) for flag in ("-u", "-g"))
    hosts = ",".join(f"{n.name}:1" for n in spec.nodes[:2])
    if megabytes is None:
        src, script, args, result = (
            "jobs/scripts/synthetic.py",
            "synthetic.py",
            SYNTHETIC_ARGS,
            "synthetic.json",
        )
    else:
        src, script, result = "bench/jobs/allreduce.py", "allreduce.py", "allreduce.json"
        args = ["--megabytes", str(megabytes), "--iters", "10"]
    first.put_file(f"{HAND_DIR}/{script}", (ROOT / src).read_bytes(), owner)
    out = f"{HAND_DIR}/gloo-{int(time.time())}"
    cmd = [HOROVODRUN, "--gloo", "-np", "2", "-H", hosts, "--network-interface", "eth0",
           NODE_PYTHON, f"{HAND_DIR}/{script}", *args]  # fmt: skip
    if megabytes is None:
        cmd += ["--output", out]
        shell = f"cd {HAND_DIR} && {shlex.join(cmd)}"
    else:
        shell = f"mkdir -p {out} && cd {HAND_DIR} && RINGFLEET_RUN_DIR={out} {shlex.join(cmd)}"
    code, text = first.run(["/bin/sh", "-c", shell], user=user, check=False)
    if code != 0:
        raise SystemExit(f"gloo hand launch failed ({code}): {text[-2000:]}")
    return json.loads(first.output(["cat", f"{out}/{result}"]))


def allreduce(spec, env: dict) -> dict:
    path = job_file("allreduce", 2, "allreduce.py", ["--megabytes", "64", "--iters", "10"], env)
    try:
        res = run_job(spec, path, console=QUIET)
    finally:
        path.unlink()
    if res.exit_code != 0:
        raise SystemExit(f"allreduce failed: {res.reason}")
    node = DockerNode(docker_client(), spec.nodes[0].name)
    return json.loads(node.output(["cat", f"{res.run_dir}/allreduce.json"]))


def main(argv: list[str]) -> int:
    repeats = int(argv[0]) if argv else 2
    spec = load_spec("bench", BENCH)
    local.up(spec, ROOT, console=QUIET)
    data: dict = {"repeats": repeats}
    try:
        data["one_rank"] = [run(spec, "bc-1", 1, {}) for _ in range(repeats)]
        data["timeline"] = run(spec, "bc-tl", 2, {}, timeline=True)
        data["knobs"] = {k: [] for k in KNOBS}
        data["knobs"]["gloo (hand horovodrun --gloo)"] = []
        for _ in range(repeats):
            for knob, env in KNOBS.items():
                data["knobs"][knob].append(run(spec, "bc-k", 2, env))
                print(knob, round(data["knobs"][knob][-1]["total_img_s"], 1), flush=True)
            data["knobs"]["gloo (hand horovodrun --gloo)"].append(hand_gloo(spec, None))
        data["allreduce"] = {
            "mpi": allreduce(spec, {}),
            "mpi, TCP buffers 4 MB": allreduce(spec, KNOBS["TCP buffers 4 MB (MCA)"]),
            "gloo": hand_gloo(spec, 64),
        }
    finally:
        local.down(spec, ROOT, purge=True, console=QUIET)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bc-explained.json").write_text(json.dumps(data, indent=2) + "\n")
    print(json.dumps(summary(data), indent=2))
    return 0


def summary(data: dict) -> dict:
    one = statistics.median(r["total_img_s"] for r in data["one_rank"])
    knobs = {k: statistics.median(r["total_img_s"] for r in v) for k, v in data["knobs"].items()}
    return {
        "one_rank_img_s": one,
        "two_rank_img_s": knobs,
        "efficiency": {k: v / (2 * one) for k, v in knobs.items()},
        "step_ms_one_rank": 1000 * BATCH / one,
        "timeline_ms_per_step": data["timeline"]["timeline"],
        "cpu_timeline_run": data["timeline"]["cpu"],
        "allreduce_busbw_gbit_s": {k: v["busbw_gbit_s"] for k, v in data["allreduce"].items()},
        "when": datetime.now(UTC).isoformat(timespec="minutes"),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
