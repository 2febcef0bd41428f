"""The local cluster on real containers: SSH mesh, shared volume, idempotence, scaling, repair.

The converge reaches the nodes over SSH as root, by the controller's key, which a node
holding it could not use on a peer (`from=` the controller's bridge address).

The session's cluster (conftest `local_cluster`, shared with test_run and test_verify) is
used; tests run in file order because the later ones change it (scale, down/up, kill, a
container removed behind ringfleet's back) and restore it. An unchanged re-up is
recognised from the converge fingerprints and runs no Ansible; `up --converge` runs all
of site.yml and must change nothing.
"""

from __future__ import annotations

import itertools
import shlex
import subprocess
import time

import docker
import pytest
import yaml
from rich.console import Console

from ringfleet import paths
from ringfleet.providers.docker import cluster as local
from ringfleet.spec import load_spec, load_spec_file
from tests.conftest import ROOT, run_cli

pytestmark = pytest.mark.docker

ENV = "local"
USER = "rf"
QUIET = Console(stderr=True, quiet=True)


def node_names() -> list[str]:
    return [n.name for n in load_spec(ENV, ROOT).nodes]


def exec_on(node: str, *argv: str, user: str = USER) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["docker", "exec", "-u", user, node, *argv], capture_output=True, text=True, timeout=60
    )


def container_ids() -> dict[str, str]:
    client = docker.from_env()
    spec = load_spec(ENV, ROOT)
    return {name: c.id for name, c in local.cluster_containers(client, spec).items()}


def spec_with_count(tmp_path, count: int):
    text = (ROOT / "Pulumi.local.yaml").read_text()
    changed = text.replace("count: 3", f"count: {count}", 1)
    assert changed != text
    path = tmp_path / "Pulumi.local.yaml"
    path.write_text(changed)
    return load_spec_file(path, ENV)


@pytest.fixture(scope="module")
def cluster(local_cluster):
    return local_cluster


PAIRS = list(itertools.permutations(node_names(), 2))


@pytest.mark.parametrize(("src", "dst"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_ssh_between_nodes_with_strict_host_keys(cluster, src: str, dst: str) -> None:
    proc = exec_on(
        src, "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", dst, "hostname"
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, dst), proc.stderr


def test_host_keys_differ_per_node(cluster) -> None:
    keys = {
        n: exec_on(n, "cat", "/etc/ssh/ssh_host_ed25519_key.pub", user="root").stdout.split()[1]
        for n in node_names()
    }
    assert len(set(keys.values())) == len(keys)


def test_password_authentication_is_off(cluster) -> None:
    proc = exec_on(node_names()[0], "/usr/sbin/sshd", "-T", user="root")
    assert "passwordauthentication no" in proc.stdout.splitlines()


def inventory_hostvars(node: str) -> dict:
    data = yaml.safe_load(paths.inventory_path(ROOT, ENV).read_text())
    groups = data["all"]["children"].values()
    return next(g["hosts"][node] for g in groups if node in (g.get("hosts") or {}))


@pytest.mark.parametrize("node", node_names())
def test_converge_reaches_the_node_over_ssh(cluster, node: str) -> None:
    assert inventory_hostvars(node)["ansible_connection"] == "ssh"


def controller_ssh(node: str) -> list[str]:
    """ssh as root to `node` with the options the converge uses."""
    hv = inventory_hostvars(node)
    return ["ssh", *shlex.split(hv["ansible_ssh_common_args"]), "-l", "root", hv["ansible_host"]]


def test_controller_logs_in_as_root_by_key(cluster) -> None:
    proc = subprocess.run(
        [*controller_ssh("rf-local-cpu-1"), "id", "-u"], capture_output=True, text=True, timeout=60
    )
    assert (proc.returncode, proc.stdout.strip()) == (0, "0"), proc.stderr


@pytest.fixture(scope="module")
def key_on_a_peer(cluster):
    """The controller's key copied to another node, as if it had leaked there."""
    key = paths.controller_key_path(ROOT, ENV).read_bytes()
    peer, target = "rf-local-cpu-2", "rf-local-cpu-1"
    path = "/root/leaked-controller-key"
    subprocess.run(
        ["docker", "exec", "-i", peer, "sh", "-c", f"umask 077; cat > {path}"],
        input=key, check=True, capture_output=True,
    )  # fmt: skip
    try:
        yield exec_on(
            peer, "ssh", "-i", path, "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=yes", "-l", "root", target, "true", user="root",
        )  # fmt: skip
    finally:
        exec_on(peer, "rm", "-f", path, user="root")


def test_root_login_from_a_peer_is_refused(key_on_a_peer) -> None:
    assert (key_on_a_peer.returncode, "Permission denied" in key_on_a_peer.stderr) == (255, True)


@pytest.mark.parametrize("reader", node_names()[1:])
def test_shared_volume_is_coherent(cluster, reader: str) -> None:
    token = f"written-at-{time.time_ns()}"
    writer = node_names()[0]
    path = f"{cluster.cluster.storage.mount}/coherence-{reader}.txt"
    assert exec_on(writer, "sh", "-c", f"echo {token} > {path}").returncode == 0
    assert exec_on(reader, "cat", path).stdout.strip() == token


@pytest.fixture(scope="module")
def second_up(cluster):
    """`ringfleet up local` again on the unchanged cluster, as a user runs it."""
    before = container_ids()
    proc = run_cli("up", ENV, timeout=600)
    return proc, before, container_ids()


def test_second_up_succeeds(second_up) -> None:
    proc, _, _ = second_up
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_second_up_says_nothing_changed_and_why(second_up) -> None:
    proc, _, _ = second_up
    assert "nothing changed: all 3 nodes running and each node's fingerprint" in proc.stderr, (
        proc.stderr[-3000:]
    )


def test_second_up_runs_no_converge(second_up) -> None:
    proc, _, _ = second_up
    assert "play:" not in proc.stderr, proc.stderr[-3000:]


def test_second_up_keeps_every_container(second_up) -> None:
    _, before, after = second_up
    assert after == before


def test_forced_converge_changes_nothing(cluster) -> None:
    report = local.up(load_spec(ENV, ROOT), ROOT, console=QUIET, force_converge=True)
    assert (report.mode, report.converge.total_changed) == (local.CONVERGE_FULL, 0), (
        report.converge.changed
    )


def test_scale_down_removes_only_the_last_node(cluster, tmp_path) -> None:
    before = container_ids()
    report = local.up(spec_with_count(tmp_path, 2), ROOT, console=QUIET)
    after = container_ids()
    assert (report.removed, after) == (
        ["rf-local-cpu-3"],
        {k: v for k, v in before.items() if k != "rf-local-cpu-3"},
    )


def test_scale_up_adds_only_the_new_node(cluster) -> None:
    before = container_ids()
    report = local.up(load_spec(ENV, ROOT), ROOT, console=QUIET)
    after = container_ids()
    assert (report.created, {k: after[k] for k in before}) == (["rf-local-cpu-3"], before)


def test_new_node_joins_the_ssh_mesh(cluster) -> None:
    proc = exec_on("rf-local-cpu-1", "ssh", "-o", "BatchMode=yes", "rf-local-cpu-3", "hostname")
    assert proc.stdout.strip() == "rf-local-cpu-3", proc.stderr


def test_down_then_up_keeps_shared_data(cluster) -> None:
    path = f"{cluster.cluster.storage.mount}/survives-down.txt"
    assert exec_on("rf-local-cpu-1", "sh", "-c", f"echo kept > {path}").returncode == 0
    assert run_cli("down", ENV).returncode == 0
    assert run_cli("up", ENV, timeout=3600).returncode == 0
    assert exec_on("rf-local-cpu-2", "cat", path).stdout.strip() == "kept"


def test_status_reports_a_killed_node(cluster) -> None:
    subprocess.run(["docker", "kill", "rf-local-cpu-3"], check=True, capture_output=True)
    proc = run_cli("status", ENV)
    row = next(line for line in proc.stdout.splitlines() if "rf-local-cpu-3" in line)
    assert (proc.returncode, "exited" in row) == (1, True)


def test_up_repairs_a_killed_node(cluster) -> None:
    report = local.up(load_spec(ENV, ROOT), ROOT, console=QUIET)
    proc = exec_on("rf-local-cpu-1", "ssh", "-o", "BatchMode=yes", "rf-local-cpu-3", "hostname")
    assert (report.started, proc.stdout.strip()) == (["rf-local-cpu-3"], "rf-local-cpu-3")


def test_status_is_green_after_repair(cluster) -> None:
    assert run_cli("status", ENV).returncode == 0


REMOVED = "rf-local-cpu-2"


@pytest.fixture(scope="module")
def removed_node_healed(cluster):
    """Remove one node container behind ringfleet's back, then `up`."""
    subprocess.run(["docker", "rm", "-f", REMOVED], check=True, capture_output=True)
    return local.up(load_spec(ENV, ROOT), ROOT, console=QUIET)


def test_up_recreates_a_removed_node(removed_node_healed) -> None:
    assert (removed_node_healed.created, removed_node_healed.mode) == (
        [REMOVED],
        local.CONVERGE_NODE_PART,
    )


HEALED_PAIRS = [(REMOVED, n) for n in node_names() if n != REMOVED] + [
    (n, REMOVED) for n in node_names() if n != REMOVED
]


@pytest.mark.parametrize(("src", "dst"), HEALED_PAIRS, ids=[f"{a}->{b}" for a, b in HEALED_PAIRS])
def test_healed_node_and_peers_ssh_with_strict_host_keys(removed_node_healed, src, dst) -> None:
    proc = exec_on(
        src, "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", dst, "hostname"
    )
    assert proc.stdout.strip() == dst, proc.stderr
