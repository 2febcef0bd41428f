"""`ringfleet lock` and `ringfleet verify` on the local cluster.

The tests run in file order: lock, a green verify, one injected drift (restored
before any assertion runs), then the perf gate (record, then check). Lock and
baselines are written into a scratch copy of the project, never into the
checkout's inventories/local/: the lock is generated from the cluster this
machine built, then verified against, which is what CI must do too (a lock
committed from another machine would not match CI's freshly built image).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from ringfleet.spec import load_spec
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.docker

ENV = "local"
LOCK = Path("inventories") / ENV / "ringfleet.lock"
BASELINES = Path("inventories") / ENV / "perf-baseline.json"
VENV_PYTHON = "/opt/ringfleet/venv/bin/python"
# Drift is injected with a small pure-Python package no role pins, by installing the
# other of two releases that both exist on PyPI.
DRIFT_PACKAGE = "six"
DRIFT_VERSIONS = ("1.16.0", "1.17.0")
PIP = [VENV_PYTHON, "-m", "pip", "--disable-pip-version-check", "-q"]
# | `node` | `item` | `locked` | `found` |
DRIFT_ROW = re.compile(r"^\| `([^`]*)` \| `([^`]*)` \| `([^`]*)` \| `([^`]*)` \|$", re.M)


def node_names() -> list[str]:
    return [n.name for n in load_spec(ENV, ROOT).nodes]


def exec_on(node: str, *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", node, *argv], capture_output=True, text=True, timeout=300
    )


def rf(root: Path, *args: str, timeout: float = 1200) -> subprocess.CompletedProcess:
    return run_cli(*args, root=root, timeout=timeout)


@pytest.fixture(scope="module")
def vroot(local_cluster, tmp_path_factory) -> Path:
    """A scratch project: the spec, the inventory `up` wrote, job copies, a link to templates."""
    root = tmp_path_factory.mktemp("verify-root")
    for name in ("Pulumi.yaml", f"Pulumi.{ENV}.yaml", "ansible.cfg"):
        shutil.copy(ROOT / name, root / name)
    # Job scripts are copied, not linked: `run` refuses a script whose real path leaves
    # the project (symlinks resolved), and the perf gate's jobs name bench/ and jobs/ scripts.
    for name in ("bench", "jobs"):
        shutil.copytree(ROOT / name, root / name)
    (root / "templates").symlink_to(ROOT / "templates")
    (root / "inventories" / ENV).mkdir(parents=True)
    shutil.copy(ROOT / "inventories" / ENV / "hosts.yml", root / "inventories" / ENV / "hosts.yml")
    return root


@pytest.fixture(scope="module")
def locked(vroot: Path) -> dict:
    proc = rf(vroot, "lock", ENV)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return yaml.safe_load((vroot / LOCK).read_text())


@pytest.fixture(scope="module")
def pool_vars(vroot: Path) -> dict:
    inventory = yaml.safe_load((vroot / "inventories" / ENV / "hosts.yml").read_text())
    return inventory["all"]["children"]["pool_cpu"]["vars"]


# --- lock -------------------------------------------------------------------------------------


def test_lock_has_an_entry_for_the_pool_with_nodes_only(locked: dict) -> None:
    assert sorted(locked["pools"]) == ["cpu"]


def test_lock_names_no_node(vroot: Path, locked: dict) -> None:
    text = (vroot / LOCK).read_text()
    assert [n for n in node_names() if n in text] == []


def test_lock_holds_no_host_key(vroot: Path, locked: dict) -> None:
    assert "ssh-ed25519" not in (vroot / LOCK).read_text()


PINS = [
    ("tensorflow-cpu", "tensorflow_version"),
    ("horovod", "horovod_version"),
    ("mkl", "mkl_version"),
]


@pytest.mark.parametrize(("package", "var"), PINS)
def test_lock_key_version_is_the_inventory_pin(locked, pool_vars, package: str, var: str) -> None:
    assert locked["pools"]["cpu"]["python"]["key"][package] == pool_vars[var]


def test_lock_key_openmpi_is_the_inventory_pin(locked, pool_vars) -> None:
    key = locked["pools"]["cpu"]["debian"]["key"]
    assert key["openmpi-bin"] == pool_vars["openmpi_debian_version"]


def test_lock_records_the_shared_kernel(locked: dict) -> None:
    # Containers run on this machine's kernel.
    assert locked["pools"]["cpu"]["kernel"] == os.uname().release


def test_locking_again_writes_the_same_bytes(vroot: Path, locked: dict) -> None:
    before = (vroot / LOCK).read_bytes()
    proc = rf(vroot, "lock", ENV)
    assert (proc.returncode, (vroot / LOCK).read_bytes() == before) == (0, True), proc.stderr


# --- verify: the node suite -------------------------------------------------------------------


@pytest.fixture(scope="module")
def verified(vroot: Path, locked: dict) -> tuple[subprocess.CompletedProcess, str]:
    md = vroot / "verify.md"
    proc = rf(vroot, "verify", ENV, "--markdown", str(md))
    return proc, md.read_text() if md.exists() else ""


def test_verify_is_green(verified) -> None:
    proc, _ = verified
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


def test_verify_summary_has_no_failed_check(verified) -> None:
    _, md = verified
    failed = [line for line in md.splitlines() if "❌" in line]
    assert failed == []


def test_verify_summary_reports_no_drift(verified) -> None:
    assert "No drift: every node matches." in verified[1].splitlines()


def test_verify_checks_ssh_between_every_ordered_pair(verified) -> None:
    pairs = len(node_names()) * (len(node_names()) - 1)
    row = f"| `test_ssh::test_ssh_between_nodes_checks_host_keys` | {pairs} | 0 | 0 |"
    assert row in verified[1].splitlines()


def test_gpu_checks_skip_with_the_reason(verified) -> None:
    reasons = [line for line in verified[1].splitlines() if "has no NVIDIA GPU" in line]
    assert reasons == [
        f"- pool cpu has no NVIDIA GPU ({4 * len(node_names())} check(s))",
        f"- pool cpu has no NVIDIA GPU, so no NCCL build ({len(node_names())} check(s))",
    ]


# --- verify: drift ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def drifted(vroot: Path, locked: dict) -> dict:
    """Install another release of one package on one node, verify, restore: all at once.

    The locked release is downloaded first and reinstalled from that file with
    --find-links, so the restore needs no network and pip records it as an index
    install again (`pip freeze` would otherwise show `six @ file://...`).
    """
    node = node_names()[1]
    packages = locked["pools"]["cpu"]["python"]["packages"]
    assert DRIFT_PACKAGE in packages, f"pick another drift package: {DRIFT_PACKAGE} is gone"
    was = packages[DRIFT_PACKAGE]
    other = next(v for v in DRIFT_VERSIONS if v != was)
    stash = f"/tmp/ringfleet-test-restore-{secrets.token_hex(4)}"
    fetched = exec_on(node, *PIP, "download", "--no-deps", "-d", stash, f"{DRIFT_PACKAGE}=={was}")
    assert fetched.returncode == 0, fetched.stderr
    md = vroot / "drift.md"
    lock_before = (vroot / LOCK).read_bytes()
    try:
        changed = exec_on(node, *PIP, "install", "--no-deps", f"{DRIFT_PACKAGE}=={other}")
        assert changed.returncode == 0, changed.stderr
        proc = rf(vroot, "verify", ENV, "--no-suite", "--markdown", str(md))
        relock = rf(vroot, "lock", ENV)
    finally:
        restored = exec_on(
            node, *PIP, "install", "--force-reinstall", "--no-deps", "--no-index",
            "--find-links", stash, f"{DRIFT_PACKAGE}=={was}",
        )  # fmt: skip
        exec_on(node, "rm", "-rf", stash)
        assert restored.returncode == 0, restored.stderr
    after = rf(vroot, "verify", ENV, "--no-suite")
    return {
        "node": node,
        "was": was,
        "other": other,
        "proc": proc,
        "md": md.read_text(),
        "after": after,
        "relock": relock,
        "lock_kept": (vroot / LOCK).read_bytes() == lock_before,
    }


def test_injected_drift_fails_verify(drifted: dict) -> None:
    assert drifted["proc"].returncode == 1, drifted["proc"].stderr


def test_drift_is_exactly_the_changed_package(drifted: dict) -> None:
    rows = DRIFT_ROW.findall(drifted["md"])
    node, item = drifted["node"], f"pip:{DRIFT_PACKAGE}"
    assert rows == [(node, item, drifted["was"], drifted["other"])]


def test_drift_table_is_printed(drifted: dict) -> None:
    lines = [line for line in drifted["proc"].stdout.splitlines() if drifted["node"] in line]
    assert [re.split(r"\s*│\s*", line.strip("│ ")) for line in lines] == [
        [drifted["node"], f"pip:{DRIFT_PACKAGE}", drifted["was"], drifted["other"]]
    ]


def test_lock_refuses_while_a_pools_nodes_differ(drifted: dict) -> None:
    assert (drifted["relock"].returncode, drifted["lock_kept"]) == (1, True)


def test_restored_node_has_no_drift(drifted: dict) -> None:
    assert drifted["after"].returncode == 0, drifted["after"].stdout[-2000:]


# --- verify --perf ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def perf_first(vroot: Path, locked: dict) -> tuple[subprocess.CompletedProcess, dict]:
    assert not (vroot / BASELINES).exists()
    proc = rf(vroot, "verify", ENV, "--no-suite", "--perf")
    path = vroot / BASELINES
    return proc, json.loads(path.read_text()) if path.exists() else {}


def test_first_perf_run_passes(perf_first) -> None:
    proc, _ = perf_first
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]


@pytest.mark.parametrize("bench", ["allreduce", "synthetic"])
def test_first_perf_run_records_a_baseline(perf_first, bench: str) -> None:
    entry = perf_first[1]["pools"]["cpu"][bench]
    assert (entry["value"] > 0, entry["ranks"]) == (True, len(node_names()))


def test_perf_results_are_on_shared_storage(perf_first) -> None:
    proc, _ = perf_first
    match = re.search(r"perf results: (\S+)/perf\.json", proc.stdout)
    assert match, proc.stdout[-2000:]
    report = json.loads(exec_on(node_names()[0], "cat", f"{match.group(1)}/perf.json").stdout)
    table = exec_on(node_names()[0], "cat", f"{match.group(1)}/perf.md").stdout
    assert (report["passed"], len(report["results"]), "| pool | benchmark |" in table) == (
        True,
        2,
        True,
    )


@pytest.fixture(scope="module")
def perf_checked(vroot: Path, perf_first) -> dict:
    """Check against the recorded baselines, one of them raised out of reach."""
    path = vroot / BASELINES
    tampered = json.loads(path.read_text())
    tampered["pools"]["cpu"]["allreduce"]["value"] *= 1000
    path.write_text(json.dumps(tampered))
    md = vroot / "perf.md"
    # A loose tolerance keeps the untouched benchmark passing on a busy 2-core machine;
    # the 1000x baseline fails under any tolerance.
    proc = rf(
        vroot, "verify", ENV, "--no-suite", "--perf", "--tolerance", "0.3", "--markdown", str(md)
    )
    return {
        "proc": proc,
        "md": md.read_text(),
        "tampered": tampered,
        "after": json.loads(path.read_text()),
    }


def test_perf_below_tolerance_fails_verify(perf_checked: dict) -> None:
    assert perf_checked["proc"].returncode == 1, perf_checked["proc"].stdout[-3000:]


@pytest.mark.parametrize(("bench", "verdict"), [("allreduce", "below"), ("synthetic", "ok")])
def test_perf_verdict_against_the_baseline(perf_checked: dict, bench: str, verdict: str) -> None:
    lines = perf_checked["md"].splitlines()
    rows = [line for line in lines if line.startswith(f"| cpu | {bench} |")]
    assert [row.rstrip(" |").rsplit("| ", 1)[-1] for row in rows] == [verdict]


def test_checking_keeps_the_baselines(perf_checked: dict) -> None:
    assert perf_checked["after"] == perf_checked["tampered"]
