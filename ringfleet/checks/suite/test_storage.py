"""Shared storage: a file one node writes is there, with the same content, on every node."""

from __future__ import annotations

import secrets
import shlex

import pytest


@pytest.fixture(scope="module")
def written(inventory, shells, shared_mount, job_user):
    """Every node writes one file as the job user; yields the directory, removes it after."""
    directory = f"{shared_mount.rstrip('/')}/.ringfleet-verify/{secrets.token_hex(6)}"
    tokens = {n: secrets.token_hex(8) for n in inventory.hosts()}
    first = shells[inventory.hosts()[0]]
    made = first.run(f"mkdir -p {shlex.quote(directory)}", user=job_user)
    failures = {}
    if made.rc == 0:
        for node, token in tokens.items():
            target = shlex.quote(f"{directory}/{node}")
            result = shells[node].run(f"echo {token} > {target}", user=job_user)
            if result.rc != 0:
                failures[node] = result.stderr.strip()[-200:]
    else:
        failures = {n: made.stderr.strip()[-200:] for n in tokens}
    yield directory, tokens, failures
    first.run(f"rm -rf {shlex.quote(directory)}", user=job_user)


def test_node_reads_what_a_node_wrote(shells, written, writer, reader, job_user) -> None:
    directory, tokens, failures = written
    assert writer not in failures, f"{writer} could not write: {failures.get(writer)}"
    result = shells[reader].run(f"cat {shlex.quote(f'{directory}/{writer}')}", user=job_user)
    assert result.stdout.strip() == tokens[writer], result.stderr
