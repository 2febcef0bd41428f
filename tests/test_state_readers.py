"""Corrupt or wrong-typed state gives one line naming the file, never a traceback.

Readers: the saved stack outputs (`.ringfleet/<env>/outputs.json`, `--outputs FILE`),
the node lock (`inventories/<env>/ringfleet.lock`) and a run's `status.json`.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable

import pytest

from ringfleet.checks import lock as lockmod
from ringfleet.converge.apply import inventory_from_outputs
from ringfleet.errors import RingfleetError
from ringfleet.runs.access import _record_lines
from ringfleet.runs.record import parse_run_record
from tests.conftest import ROOT, run_cli

SAMPLE = json.loads((ROOT / "tests" / "data" / "outputs-aws-dev.json").read_text())


def _set(path: tuple, value: object) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        for key in path[:-1]:
            doc = doc[key]
        doc[path[-1]] = value

    return edit


def _drop(path: tuple) -> Callable[[dict], None]:
    def edit(doc: dict) -> None:
        for key in path[:-1]:
            doc = doc[key]
        del doc[path[-1]]

    return edit


# edit of the sample outputs -> the error line after `ringfleet: error: out.json`
BAD_OUTPUTS = {
    "pool-not-mapping": (_set(("pools", "cpu"), 5), ": pools.cpu: must be a mapping (got 5)"),
    "slots-string": (
        _set(("pools", "cpu", "slots"), "4"),
        ": pools.cpu: slots: must be a integer (got '4')",
    ),
    "slots-missing": (
        _drop(("pools", "cpu", "slots")),
        ": pools.cpu: slots: required stack output is missing",
    ),
    "software-profile-missing": (
        _drop(("pools", "cpu", "software", "profile")),
        ": pools.cpu.software: profile: required stack output is missing",
    ),
    "accelerator-string": (
        _set(("pools", "cpu", "accelerator"), "gpu"),
        ": pools.cpu.accelerator: must be a mapping or null (got 'gpu')",
    ),
    "node-ip-number": (
        _set(("pools", "cpu", "nodes", 0, "privateIp"), 10),
        ": pools.cpu.nodes[0].privateIp: must be a string or null (got 10)",
    ),
    "node-name-number": (
        _set(("pools", "cpu", "nodes", 0, "name"), 7),
        ": pools.cpu.nodes[0]: needs a name (got {'instanceId': 'i-662e10899e2fa77f9', 'name': 7, "
        "'privateIp': '10.60.0.11', '...)",
    ),
    "ssh-port-string": (_set(("sshPort",), "22"), ": sshPort: must be a integer (got '22')"),
    "mount-number": (
        _set(("sharedStorage", "mount"), 5),
        ": sharedStorage.mount: must be a string or null (got 5)",
    ),
    "env-list": (_set(("env",), ["a"]), ": env: must be a string (got ['a'])"),
}


@pytest.mark.parametrize("case", BAD_OUTPUTS)
def test_wrong_typed_outputs_are_one_line(tmp_path, case):
    edit, line = BAD_OUTPUTS[case]
    doc = copy.deepcopy(SAMPLE)
    edit(doc)
    path = tmp_path / "out.json"
    path.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RingfleetError) as caught:
        inventory_from_outputs("aws-dev", path)
    assert caught.value.line() == f"ringfleet: error: {path}" + line


# raw bytes of an outputs file -> the error line after `ringfleet: error: <file>`
BAD_OUTPUT_FILES = {
    "not-utf8": (b'{"env": "\xff"}', ": not UTF-8 text"),
    "invalid-json": (b'{"env": ', ":1:9: invalid JSON: Expecting value"),
    "list": (b"[1, 2]", ": must be a JSON object of stack outputs (got [1, 2])"),
    "string": (b'"x"', ": must be a JSON object of stack outputs (got 'x')"),
}


@pytest.mark.parametrize("case", BAD_OUTPUT_FILES)
def test_corrupt_outputs_file_is_one_line(tmp_path, case):
    data, line = BAD_OUTPUT_FILES[case]
    path = tmp_path / "out.json"
    path.write_bytes(data)
    with pytest.raises(RingfleetError) as caught:
        inventory_from_outputs("aws-dev", path)
    assert caught.value.line() == f"ringfleet: error: {path}" + line


def test_saved_outputs_of_the_local_env_not_utf8_exit_2_in_one_line(tmp_path):
    (tmp_path / "Pulumi.local.yaml").write_bytes((ROOT / "Pulumi.local.yaml").read_bytes())
    saved = tmp_path / ".ringfleet" / "local" / "outputs.json"
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"\xff\xfe")
    result = run_cli("inventory", "local", root=tmp_path)
    assert (result.returncode, result.stderr) == (
        2, f"ringfleet: error: {saved}: not UTF-8 text\n"
    )


# --- the node lock ----------------------------------------------------------------------------

GOOD_ENTRY = {
    "os": "Debian 12",
    "kernel": "6.1",
    "debian": {"sha256": "a", "packages": {"bash": "5.2"}},
    "python": {"sha256": "b", "packages": {"numpy": "1.26"}},
}
# edit of one lock entry -> the error line after `ringfleet: error: x.lock: pools.cpu`
BAD_LOCK_ENTRIES = {
    "files-string": (
        _set(("files",), "x"), ".files: must be a mapping of path to sha256 (got 'x')"
    ),
    "files-value-list": (
        _set(("files",), {"/etc/x": [1]}),
        ".files: must be a mapping of path to sha256 (got {'/etc/x': [1]})",
    ),
    "held-string": (_set(("held",), "bash"), ".held: must be a list of package names (got 'bash')"),
    "held-mapping": (
        _set(("held",), {"bash": 1}),
        ".held: must be a list of package names (got {'bash': 1})",
    ),
    "package-version-list": (
        _set(("debian", "packages", "bash"), ["5.2"]),
        ".debian.packages.bash: must be a version string (got ['5.2'])",
    ),
    "package-version-mapping": (
        _set(("python", "packages", "numpy"), {"v": 1}),
        ".python.packages.numpy: must be a version string (got {'v': 1})",
    ),
    "debian-version-list": (
        _set(("debian_version",), [12]),
        ".debian_version: must be a string (got [12])",
    ),
}


@pytest.mark.parametrize("case", BAD_LOCK_ENTRIES)
def test_wrong_typed_lock_entry_is_one_line(tmp_path, case):
    edit, line = BAD_LOCK_ENTRIES[case]
    entry = copy.deepcopy(GOOD_ENTRY)
    edit(entry)
    path = tmp_path / "x.lock"
    path.write_text(json.dumps({"version": 1, "env": "e", "pools": {"cpu": entry}}))
    with pytest.raises(RingfleetError) as caught:
        lockmod.read_lock(path, "x.lock")
    assert caught.value.line() == "ringfleet: error: x.lock: pools.cpu" + line


def test_lock_that_is_not_utf8_is_one_line(tmp_path):
    path = tmp_path / "x.lock"
    path.write_bytes(b"version: 1\npools: {\xff: 1}\n")
    with pytest.raises(RingfleetError) as caught:
        lockmod.read_lock(path, "x.lock")
    assert caught.value.line() == "ringfleet: error: x.lock: not UTF-8 text"


# --- a run's status.json ------------------------------------------------------------------------

RUN = "/shared/runs/digits-1/status.json"
GOOD_RECORD = {"run_id": "digits-1", "exit_code": 0, "seconds": 1.5, "ranks": 4,
               "started": "2026-01-01T00:00:00+00:00", "reason": "completed"}  # fmt: skip
BAD_RECORDS = {
    "not-utf8": (b'{"run_id": "\xff"}', ": not UTF-8 text"),
    "invalid-json": (b'{"run_id": ', ":1:12: invalid JSON: Expecting value"),
    "list": (b"[]", ": must be a JSON object (a run record) (got [])"),
    "no-run-id": (b'{"exit_code": 0}', ": run_id: required"),
    "exit-code-string": (
        json.dumps({**GOOD_RECORD, "exit_code": "0"}).encode(),
        ": exit_code: must be int or null (got '0')",
    ),
    "exit-code-bool": (
        json.dumps({**GOOD_RECORD, "exit_code": True}).encode(),
        ": exit_code: must be int or null (got True)",
    ),
    "reason-mapping": (
        json.dumps({**GOOD_RECORD, "reason": {"a": 1}}).encode(),
        ": reason: must be str or null (got {'a': 1})",
    ),
}


@pytest.mark.parametrize("case", BAD_RECORDS)
def test_broken_run_record_is_one_line_naming_it(case):
    data, line = BAD_RECORDS[case]
    with pytest.raises(RingfleetError) as caught:
        parse_run_record(RUN, data)
    assert caught.value.line() == f"ringfleet: error: {RUN}" + line


def test_good_run_record_is_read():
    assert parse_run_record(RUN, json.dumps(GOOD_RECORD).encode()) == GOOD_RECORD


def test_node_listing_keeps_each_record_with_its_path():
    text = f"{RUN}\teyJhIjogMX0=\n/shared/runs/b/status.json\tWw==\n"
    assert list(_record_lines(text)) == [
        (RUN, b'{"a": 1}'),
        ("/shared/runs/b/status.json", b"["),
    ]
