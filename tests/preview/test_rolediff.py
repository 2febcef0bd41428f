"""`ringfleet.rolediff`: the role diff of two file trees, without git or Pulumi."""

from __future__ import annotations

import pytest

from ringfleet.preview import rolediff
from ringfleet.preview.rolediff import (
    MAX_DIFF_LINES,
    TaskChange,
    diff_tasks,
    diff_trees,
    parse_lock,
)

TASKS = [
    {"name": "Ensure a.", "ansible.builtin.file": {"path": "/a", "state": "directory"}},
    {"name": "Ensure b.", "ansible.builtin.file": {"path": "/b", "state": "directory"}},
]


def one(base: dict[str, bytes], head: dict[str, bytes]) -> rolediff.RoleDiff:
    [change] = diff_trees(base, head)
    return change


def test_same_body_under_a_new_name_is_a_rename():
    head = [{**TASKS[0], "name": "Ensure the a directory."}, TASKS[1]]
    assert diff_tasks("tasks/main.yml", TASKS, head) == [
        TaskChange("tasks/main.yml", "renamed", "Ensure the a directory.", "Ensure a.")
    ]


def test_same_name_with_a_new_body_is_a_change():
    head = [TASKS[0], {**TASKS[1], "ansible.builtin.file": {"path": "/c", "state": "directory"}}]
    assert diff_tasks("tasks/main.yml", TASKS, head) == [
        TaskChange("tasks/main.yml", "changed", "Ensure b.")
    ]


def test_tasks_inside_a_block_are_compared_by_name():
    base = [{"name": "Block.", "block": TASKS}]
    head = [{"name": "Block.", "block": TASKS[:1]}]
    assert diff_tasks("tasks/main.yml", base, head) == [
        TaskChange("tasks/main.yml", "removed", "Ensure b.")
    ]


def test_readme_only_is_no_node_change():
    change = one({"roles/x/README.md": b"a\n"}, {"roles/x/README.md": b"b\n"})
    assert (change.reaches_nodes, change.docs) == (False, ["roles/x/README.md"])


def test_long_diff_is_cut_and_says_how_much():
    head = "".join(f"line {i}\n" for i in range(100)).encode()
    [file] = one({}, {"roles/x/templates/t.j2": head}).files
    # 2 header lines, 1 hunk line, 100 added lines.
    assert (len(file.diff.splitlines()), file.cut) == (MAX_DIFF_LINES, 103 - MAX_DIFF_LINES)


def test_binary_file_is_not_diffed():
    [file] = one({"roles/x/files/f.bin": b"\0\1"}, {"roles/x/files/f.bin": b"\0\2"}).files
    assert (file.binary, file.diff) == (True, "")


def test_variables_that_are_not_yaml_fall_back_to_a_diff():
    change = one({"roles/x/defaults/main.yml": b"a: 1\n"}, {"roles/x/defaults/main.yml": b"a: [\n"})
    assert (change.variables, [f.file for f in change.files]) == ([], ["defaults/main.yml"])


@pytest.mark.parametrize(
    ("line", "pin"),
    [
        ("Foo_Bar==1.0 \\\n    --hash=sha256:ab", ("foo-bar", ("1.0", frozenset({"sha256:ab"})))),
        (
            "tensorflow[and-cuda]==2.15.1 \\\n    --hash=sha256:cd",
            ("tensorflow", ("2.15.1", frozenset({"sha256:cd"}))),
        ),
        (
            "six==1.16.0 ; python_version < '4' \\\n    --hash=sha256:ef",
            ("six", ("1.16.0", frozenset({"sha256:ef"}))),
        ),
    ],
)
def test_lock_lines(line, pin):
    assert list(parse_lock(line + "\n    # via x\n").items()) == [pin]


def test_role_pulled_in_by_include_role_is_found():
    tasks = b"- name: Pins.\n  ansible.builtin.include_role:\n    name: apt_pins\n"
    assert rolediff.role_includes({"roles/common/tasks/main.yml": tasks}) == {
        "common": {"apt_pins"}
    }


def test_added_role_says_so():
    change = one({}, {"roles/new/defaults/main.yml": b"new_x: 1\n"})
    assert (change.state, change.summary()) == ("added", "1 variable")


def test_included_role_reaches_the_pools_of_its_includer():
    from ringfleet.preview.rolereport import reach

    envs = {"onprem": {"gpu": {"nfs_server": ["gpu01"], "nvidia": None}}}
    change = rolediff.RoleDiff("apt_pins")
    assert reach(change, envs, {"nfs_server": {"apt_pins"}}) == {"onprem": {"gpu": ["gpu01"]}}


def test_a_long_python_lock_table_is_folded():
    from ringfleet.preview.rolereport import FOLD_ROWS, role_body

    lock = "files/requirements-x-cpu.txt"
    pins = [rolediff.PinChange(lock, f"p{i}", "1", "2", True) for i in range(FOLD_ROWS + 1)]
    change = rolediff.RoleDiff("tensorflow", python_pins=pins)
    assert f"<details><summary>{FOLD_ROWS + 1} packages</summary>" in role_body(change, {})


def test_a_playbook_change_is_grouped_outside_the_roles():
    change = one({"playbooks/x.yml": b"- hosts: a\n"}, {"playbooks/x.yml": b"- hosts: b\n"})
    assert (change.name, change.summary()) == (rolediff.PLAYBOOKS, "1 file")
