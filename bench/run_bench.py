"""ringfleet benchmarks. Each writes a Markdown table and a PNG plot under bench/results/.

  a  ready time: nothing -> verified-ready 3-node local cluster (images cached), unchanged
     re-up, forced converge, a node removed behind ringfleet's back and healed; converged
     through the Docker API, then over SSH (the default)
  b  scaling: synthetic img/s, 1 rank on 1 node vs 2 ranks on 2 nodes, 1 CPU per node
  c  allreduce bus bandwidth (64 MB) between two nodes vs iperf3 TCP between the same two
  d  tuned vs untuned thread environment on the same synthetic job

Usage: .venv/bin/python bench/run_bench.py [a b c d]   (default: all)
These are benchmarks, not tests: they report what they measure, met or not.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from rich.console import Console  # noqa: E402

from ringfleet.jobs.run import run_job  # noqa: E402
from ringfleet.nodes.docker import DockerNode  # noqa: E402
from ringfleet.providers.docker import cluster as local  # noqa: E402
from ringfleet.providers.docker import login  # noqa: E402
from ringfleet.providers.docker.container import container_definitions  # noqa: E402
from ringfleet.providers.docker.engine import docker_client  # noqa: E402
from ringfleet.spec import load_spec, project_root  # noqa: E402

BENCH = Path(__file__).resolve().parent
RESULTS = BENCH / "results"
ROOT = project_root()
QUIET = Console(file=io.StringIO())
TARGETS = {
    "ready_s": 45.0,
    "reup_fraction": 0.1,
    "forced_s": 60.0,
    "scaling_efficiency": 0.90,
    "allreduce_vs_tcp": 0.80,
}
# The forced converge is the figure closest to its target: measured this many times over
# SSH (once through the Docker API, which is only there to compare).
FORCED_RUNS = 3


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def write(name: str, title: str, rows: list[tuple[str, str]], note: str) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"# {title}",
        "",
        f"Measured {stamp} on this machine.",
        "",
        "| metric | value |",
        "| --- | --- |",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        note,
        "",
    ]
    path = RESULTS / f"{name}.md"
    path.write_text("\n".join(lines))
    print(path.read_text())
    return path


def previous_table(name: str) -> str:
    """The first table of the last results of `name`, with its date, to compare against."""
    path = RESULTS / f"{name}.md"
    if not path.is_file():
        return ""
    lines = path.read_text().splitlines()
    measured = next((line for line in lines if line.startswith("Measured ")), "Measured earlier.")
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    if start == end:
        return ""
    return "\n".join(["## The run before this one", "", measured, "", *lines[start:end]])


def bar(name: str, title: str, labels: list[str], values: list[float], unit: str) -> None:
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.bar(labels, values, color=["#4c72b0", "#dd8452", "#55a868", "#c44e52"][: len(values)])
    ax.set_title(title)
    ax.set_ylabel(unit)
    for i, v in enumerate(values):
        ax.text(i, v, f"{v:.3g}", ha="center", va="bottom")
    fig.tight_layout()
    fig.savefig(RESULTS / f"{name}.png", dpi=100)
    plt.close(fig)


def ssh_mesh_ready(spec) -> bool:
    client = docker_client()
    names = [n.name for n in spec.nodes]
    for a, b in itertools.permutations(names, 2):
        code, out = DockerNode(client, a).run(
            ["ssh", "-o", "BatchMode=yes", b, "hostname"], user=spec.cluster.ssh.user, check=False
        )
        if code != 0 or out.strip() != b:
            return False
    return True


def ssh_strict_from_and_to(spec, node: str) -> bool:
    """`node` reaches every peer and every peer reaches `node`, host keys checked."""
    client = docker_client()
    names = [n.name for n in spec.nodes]
    for a, b in [(node, p) for p in names if p != node] + [(p, node) for p in names if p != node]:
        code, out = DockerNode(client, a).run(
            ["ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", b, "hostname"],
            user=spec.cluster.ssh.user,
            check=False,
        )
        if code != 0 or out.strip() != b:
            return False
    return True


def timed_up(spec, **kw):
    started = time.monotonic()
    report = local.up(spec, ROOT, console=QUIET, **kw)
    return time.monotonic() - started, report


def ready_sequence(spec, forced_runs: int = 1) -> dict:
    """nothing -> 3 verified nodes, unchanged re-up, forced converge, a removed node healed."""
    local.down(spec, ROOT, purge=True, console=QUIET)
    started = time.monotonic()
    local.up(spec, ROOT, console=QUIET)
    ready = ssh_mesh_ready(spec)
    first = time.monotonic() - started
    reup, report = timed_up(spec)
    forced_all = []
    for _ in range(forced_runs):
        load = os.getloadavg()[0]
        seconds, forced_report = timed_up(spec, force_converge=True)
        forced_all.append((seconds, forced_report.converge.total_changed, load))
    forced = statistics.median(s for s, _, _ in forced_all)
    victim = spec.nodes[-1].name
    docker_client().containers.get(victim).remove(force=True)
    healed, healed_report = timed_up(spec)
    return {
        "first": first,
        "ready": ready,
        "reup": reup,
        "report": report,
        "forced": forced,
        "forced_report": forced_report,
        "forced_all": forced_all,
        "victim": victim,
        "healed": healed,
        "healed_report": healed_report,
        "healed_ok": ssh_strict_from_and_to(spec, victim),
    }


def bench_ready() -> None:
    """The sequence over SSH (the default), then again with the Docker API connection."""
    spec = load_spec("local", ROOT)
    runs = {}
    for way in (login.CONNECTION_DOCKER, login.CONNECTION_SSH):
        os.environ[login.CONNECTION_ENV] = way
        try:
            runs[way] = ready_sequence(spec, FORCED_RUNS if way == login.CONNECTION_SSH else 1)
        finally:
            os.environ.pop(login.CONNECTION_ENV, None)
    m, d = runs[login.CONNECTION_SSH], runs[login.CONNECTION_DOCKER]
    first, reup, forced, healed = m["first"], m["reup"], m["forced"], m["healed"]
    report, healed_report = m["report"], m["healed_report"]
    frac = reup / first
    forced_changed = max(c for _, c, _ in m["forced_all"])
    forced_ok = forced < TARGETS["forced_s"] and forced_changed == 0
    each = ", ".join(f"{s:.1f} s (changed={c}, load {ld:.1f})" for s, c, ld in m["forced_all"])
    rows = [
        (
            "ready (nothing -> verified 3 nodes, images cached)",
            f"{first:.1f} s "
            f"(target < {TARGETS['ready_s']:.0f} s: {verdict(first < TARGETS['ready_s'])}); "
            f"Docker API: {d['first']:.1f} s",
        ),
        ("SSH mesh verified", f"{m['ready']} (Docker API run: {d['ready']})"),
        ("re-up (no change)", f"{reup:.2f} s, {report.mode}: {report.reason}"),
        (
            "re-up / first",
            f"{frac:.3f} (target < {TARGETS['reup_fraction']}: "
            f"{verdict(frac < TARGETS['reup_fraction'])})",
        ),
        (
            "forced converge (`up --converge`, unchanged cluster)",
            f"{forced:.1f} s median of {len(m['forced_all'])}, ansible changed={forced_changed} "
            f"(target < {TARGETS['forced_s']:.0f} s with changed=0: "
            f"{verdict(forced_ok)}); each: {each}; Docker API: {d['forced']:.1f} s, "
            f"changed={d['forced_report'].converge.total_changed}",
        ),
        (
            f"heal ({m['victim']} removed with docker, then `up`)",
            f"{healed:.1f} s, created {healed_report.created}, "
            f"strict-host-key SSH to and from its peers: {m['healed_ok']}; "
            f"Docker API: {d['healed']:.1f} s (SSH checks: {d['healed_ok']})",
        ),
    ]
    before = previous_table("a-ready-time")
    write(
        "a-ready-time",
        "Local cluster ready time",
        rows,
        "Nodes are made from the baked image, so `up` runs only the node part of the roles "
        "(tag ringfleet_node: host keys, known_hosts, the job user's keys, the shared "
        "directory) and only on nodes whose converge fingerprint changed; an unchanged "
        "cluster is recognised from the fingerprints in .ringfleet/local/ without Ansible. "
        "Ansible reaches the nodes over SSH as root (the controller's key, pipelining, "
        "ControlPersist); each figure after 'Docker API' is the same step measured on the "
        f"same machine just before with {login.CONNECTION_ENV}={login.CONNECTION_DOCKER} "
        "(Ansible through the Docker API). The load is the 1-minute load average when each "
        "forced converge started (2 cores; other sessions share the machine)."
        + (f"\n\n{before}" if before else ""),
    )
    bar(
        "a-ready-time",
        "Local cluster over SSH: ready, re-up, forced converge, heal",
        ["first up", "re-up", "--converge", "heal"],
        [first, reup, forced, healed],
        "s",
    )


def bench_cluster():
    spec = load_spec("bench", BENCH)
    local.up(spec, ROOT, console=QUIET)
    return spec


def run_and_read(spec, job: str, result: str) -> dict:
    res = run_job(spec, BENCH / "jobs" / f"{job}.yaml", console=QUIET)
    if res.exit_code != 0:
        raise SystemExit(f"{job} failed: {res.reason}")
    node = DockerNode(docker_client(), spec.nodes[0].name)
    _, text = node.run(["cat", f"{res.run_dir}/{result}"])
    return json.loads(text)


# Two shared cores are noisy: (b) alternates the 1-rank and 2-rank runs this many times and
# reports medians with the spread.
SCALING_ROUNDS = 3


def bench_scaling(spec) -> None:
    ones, twos = [], []
    for _ in range(SCALING_ROUNDS):
        ones.append(run_and_read(spec, "synthetic-1", "synthetic.json"))
        twos.append(run_and_read(spec, "synthetic-2", "synthetic.json"))
    one_all = [r["total_img_s"] for r in ones]
    two_all = [r["total_img_s"] for r in twos]
    one = {**ones[0], "total_img_s": statistics.median(one_all)}
    two = {"total_img_s": statistics.median(two_all)}
    eff = two["total_img_s"] / (2 * one["total_img_s"])
    placement = ", ".join(
        f"{d.name}: {'cores ' + d.cpuset if d.cpuset else f'quota {d.nano_cpus / 1e9:g} CPU'}"
        for d in container_definitions(spec, {p: "" for p in spec.pools})
    )
    rows = [
        ("model", f"{one['model']} ({one['params']} params), batch 32 per rank"),
        ("node CPU placement", placement),
        ("1 rank, 1 node (1 CPU)", f"{one['total_img_s']:.1f} img/s ({spread(one_all)})"),
        ("2 ranks, 2 nodes (1 CPU each)", f"{two['total_img_s']:.1f} img/s ({spread(two_all)})"),
        (
            "scaling efficiency",
            f"{eff:.2f} (target >= {TARGETS['scaling_efficiency']}: "
            f"{'met' if eff >= TARGETS['scaling_efficiency'] else 'NOT met'})",
        ),
    ]
    write(
        "b-scaling",
        "Synthetic benchmark scaling",
        rows,
        f"Medians of {SCALING_ROUNDS} alternating rounds on a 2-core host; the allreduce of each "
        "step crosses the Docker bridge over TCP. Why it is below 0.9 and what bounds it: "
        "bc-explained.md.",
    )
    bar(
        "b-scaling",
        "Synthetic throughput",
        ["1 rank", "2 ranks"],
        [one["total_img_s"], two["total_img_s"]],
        "img/s",
    )


def iperf_gbit(spec) -> float:
    client = docker_client()
    a, b = (DockerNode(client, n.name) for n in spec.nodes[:2])
    for node in (a, b):
        node.run(
            [
                "/bin/sh",
                "-c",
                "command -v iperf3 || (apt-get update -q && "
                "DEBIAN_FRONTEND=noninteractive apt-get install -y -q iperf3)",
            ]
        )
    b.run(["/bin/sh", "-c", "pkill iperf3; iperf3 -s -D -1"])
    time.sleep(1)
    _, out = a.run(["iperf3", "-J", "-t", "5", "-c", spec.nodes[1].name])
    return json.loads(out)["end"]["sum_received"]["bits_per_second"] / 1e9


def spread(values: list[float]) -> str:
    return f"{len(values)} runs, {min(values):.0f}-{max(values):.0f}"


def iperf_bidir_gbit(spec) -> float:
    """TCP both ways at once between the first two nodes: Gbit/s per direction (the slower).

    A 2-rank ring allreduce sends and receives at the same time on each node, so this, not
    the one-way figure, is the transport's ceiling for it.
    """
    a, b = (DockerNode(docker_client(), n.name) for n in spec.nodes[:2])
    b.run(["/bin/sh", "-c", "pkill iperf3; iperf3 -s -D -1"])
    time.sleep(1)
    _, out = a.run(["iperf3", "-J", "-t", "5", "--bidir", "-c", spec.nodes[1].name])
    end = json.loads(out)["end"]
    return (
        min(end[k]["bits_per_second"] for k in ("sum_received", "sum_received_bidir_reverse")) / 1e9
    )


def bench_allreduce(spec) -> None:
    tcp = iperf_gbit(spec)
    bidir = iperf_bidir_gbit(spec)
    ar = run_and_read(spec, "allreduce", "allreduce.json")
    ratio = ar["busbw_gbit_s"] / tcp
    rows = [
        ("iperf3 TCP, node 1 -> node 2", f"{tcp:.2f} Gbit/s"),
        ("iperf3 TCP both ways at once, per direction", f"{bidir:.2f} Gbit/s"),
        ("Horovod allreduce 64 MB, 2 ranks: bus bandwidth", f"{ar['busbw_gbit_s']:.2f} Gbit/s"),
        ("algorithm bandwidth", f"{ar['algbw_gbit_s']:.2f} Gbit/s"),
        (
            "allreduce / TCP",
            f"{ratio:.2f} (target >= {TARGETS['allreduce_vs_tcp']}: "
            f"{'met' if ratio >= TARGETS['allreduce_vs_tcp'] else 'NOT met'})",
        ),
        ("allreduce / TCP both ways", f"{ar['busbw_gbit_s'] / bidir:.2f}"),
    ]
    write(
        "c-allreduce",
        "Allreduce bandwidth vs raw TCP",
        rows,
        "Bus bandwidth = algbw * 2(n-1)/n (NCCL-tests convention). Both nodes are limited to "
        "1 CPU: the sum and the copies of a 64 MB tensor compete with TCP for that core, "
        "and the ring sends and receives at once. The limit this sets: bc-explained.md.",
    )
    bar(
        "c-allreduce",
        "Bandwidth between two nodes",
        ["iperf3 TCP", "TCP both ways", "allreduce busbw"],
        [tcp, bidir, ar["busbw_gbit_s"]],
        "Gbit/s",
    )


def bench_threads(spec) -> None:
    tuned = run_and_read(spec, "synthetic-2", "synthetic.json")
    untuned = run_and_read(spec, "synthetic-untuned", "synthetic.json")
    rows = [
        ("tuned (OMP/TF threads = cores per rank)", f"{tuned['total_img_s']:.1f} img/s"),
        ("untuned (TF defaults)", f"{untuned['total_img_s']:.1f} img/s"),
        ("tuned / untuned", f"{tuned['total_img_s'] / untuned['total_img_s']:.2f}"),
    ]
    write(
        "d-threads",
        "Thread environment: tuned vs untuned",
        rows,
        "Untuned TF sizes its pools from the host's cores, not the container's CPU limit, "
        "so each rank oversubscribes its single core.",
    )
    bar(
        "d-threads",
        "Synthetic, 2 ranks on 2 nodes",
        ["tuned", "untuned"],
        [tuned["total_img_s"], untuned["total_img_s"]],
        "img/s",
    )


def main(argv: list[str]) -> int:
    which = argv or ["a", "b", "c", "d"]
    if "a" in which:
        bench_ready()
    if set(which) & {"b", "c", "d"}:
        # The 3-node local cluster would compete for the 2 cores: stop it first.
        local.down(load_spec("local", ROOT), ROOT, console=QUIET)
        spec = bench_cluster()
        try:
            if "b" in which:
                bench_scaling(spec)
            if "c" in which:
                bench_allreduce(spec)
            if "d" in which:
                bench_threads(spec)
        finally:
            local.down(spec, ROOT, purge=True, console=QUIET)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
