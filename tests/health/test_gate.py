"""The health gate's pieces and the attempt loop, without a cluster (#18)."""

from __future__ import annotations

import pytest
import yaml

from ringfleet.health.gate import (
    SSH_CONNECT_TIMEOUT,
    Failure,
    GateReport,
    entry_sha256,
    lock_mismatch,
    parse_df,
    ssh_probe_argv,
)
from ringfleet.jobs.attempts import Attempt, Policy, run_attempts, should_restart

DF = """Filesystem     1024-blocks    Used Available Capacity Mounted on
overlay          263174212 2500000  83886080      4% /
/dev/vda         263174212 2500000    524288      1% /shared
"""
ENTRY = {
    "os": "Debian GNU/Linux 12 (bookworm)",
    "debian_version": "12.5",
    "kernel": "6.1.0",
    "debian": {"count": 1, "sha256": "ab", "key": {}, "packages": {"libc6": "2.36"}},
    "python": {"venv": "/opt/ringfleet/venv", "count": 1, "packages": {"numpy": "1.26.4"}},
    "files": {},
    "held": [],
}


def test_df_is_read_in_mib_per_mount_point() -> None:
    assert parse_df(DF) == {"/": 81920, "/shared": 512}


def test_ssh_probe_never_prompts_and_checks_host_keys_strictly() -> None:
    assert ssh_probe_argv("rf-local-cpu-2", 22) == [
        "ssh", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"ConnectTimeout={SSH_CONNECT_TIMEOUT}", "-p", "22", "rf-local-cpu-2", "true",
    ]  # fmt: skip


def test_lock_entry_digest_survives_the_lock_files_yaml() -> None:
    assert entry_sha256(yaml.safe_load(yaml.safe_dump(ENTRY))) == entry_sha256(ENTRY)


def test_matching_lock_entry_is_no_mismatch() -> None:
    assert lock_mismatch(ENTRY, dict(ENTRY)) is None


def test_lock_mismatch_names_the_first_differing_item() -> None:
    found = {**ENTRY, "python": {**ENTRY["python"], "packages": {"numpy": "2.0.0"}}}
    assert "first: pip:numpy 1.26.4 -> 2.0.0" in (lock_mismatch(ENTRY, found) or "")


def test_gate_failure_reason_names_node_and_check() -> None:
    assert Failure("rf-local-cpu-2", "ssh", "exit 255").reason == "health gate: rf-local-cpu-2: ssh"


@pytest.mark.parametrize(
    ("code", "lost", "policy", "used", "expected"),
    [
        (125, "n2", Policy(restarts=2), 0, True),
        (125, "n2", Policy(restarts=2), 2, False),
        (125, "n2", Policy(restarts=0), 0, False),
        (1, None, Policy(restarts=2), 0, False),
        (1, None, Policy(restarts=2, restart_on_failure=True), 0, True),
        (130, None, Policy(restarts=2, restart_on_failure=True), 0, False),
        (0, None, Policy(restarts=2, restart_on_failure=True), 0, False),
    ],
)
def test_should_restart(code, lost, policy, used, expected) -> None:
    assert should_restart(Attempt(1, code, "r", lost, 1.0), policy, used) is expected


def _passing_gate() -> GateReport:
    return GateReport(["n1", "n2"], [], 0.5)


def test_lost_node_is_healed_then_the_run_resumes() -> None:
    results = iter(
        [Attempt(1, 125, "node n2 lost", "n2", 9.0), Attempt(2, 0, "completed", None, 5.0)]
    )
    healed: list[str] = []
    outcome = run_attempts(
        Policy(restarts=2), _passing_gate, lambda n: next(results), healed.append, print
    )
    codes = [a.exit_code for a in outcome.attempts]
    assert (healed, codes, outcome.recoveries) == (["n2"], [125, 0], 1)


def test_failed_gate_starts_no_rank() -> None:
    def gate() -> GateReport:
        return GateReport(["n1", "n2"], [Failure("n2", "ssh", "exit 255")], 0.4)

    launched: list[int] = []
    outcome = run_attempts(Policy(restarts=2), gate, launched.append, print, print)
    assert (launched, outcome.final.exit_code, outcome.final.reason) == (
        [], 125, "health gate: n2: ssh",
    )  # fmt: skip


def test_failed_heal_ends_the_run_and_says_why() -> None:
    def heal(name: str) -> None:
        raise RuntimeError(f"{name} did not come back")

    lost = Attempt(1, 125, "node n2 lost", "n2", 9.0)
    outcome = run_attempts(Policy(restarts=2), _passing_gate, lambda n: lost, heal, print)
    assert (len(outcome.attempts), outcome.final.reason) == (
        1, "node n2 lost; heal failed: n2 did not come back",
    )  # fmt: skip
