"""What changed in the node software's sources between two revisions, role by role.

Pure functions over two file trees (`{relative POSIX path: bytes}`, as `node_files`
reads them from a revision's directory): variables of defaults/vars file by file,
tasks by name, Debian pins (`<role>_debian_versions`), Python locks
(`files/requirements-*.txt`), and a unified diff of any other file. Which files can
reach a node is `ringfleet.converge.nodefiles.reaches_node`, the rule the image tag uses;
a changed file it rejects (a README) is listed as such and counts for nothing.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from ringfleet.converge.nodefiles import IMAGE_INPUTS, reaches_node

# A value absent from one revision.
MISSING: Any = type("Missing", (), {"__repr__": lambda self: "MISSING"})()
# Changes to files outside roles/ (site.yml, playbooks/, ansible.cfg) are grouped under this name.
PLAYBOOKS = "playbooks"
# A unified diff in the report is cut after this many lines; the report says how many went.
MAX_DIFF_LINES = 40
# `<role>_debian_versions: {package: version}` in a role's vars (docs/pinning.md).
DEBIAN_PINS_SUFFIX = "_debian_versions"
PYTHON_LOCK = re.compile(r"^requirements-.+\.txt$")
PIN_LINE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?\s*==\s*([^\s;\\]+)")
HASH = re.compile(r"--hash=([A-Za-z0-9]+:[0-9A-Fa-f]+)")
TASK_LISTS = ("block", "rescue", "always")
INCLUDE_MODULES = (
    "include_role",
    "import_role",
    "ansible.builtin.include_role",
    "ansible.builtin.import_role",
)


@dataclass(frozen=True)
class VarChange:
    file: str
    name: str
    base: Any
    head: Any


@dataclass(frozen=True)
class TaskChange:
    file: str
    op: str
    """added, removed, renamed (same body, new name) or changed (same name, new body)."""
    name: str
    old_name: str | None = None


@dataclass(frozen=True)
class PinChange:
    file: str
    package: str
    base: str | None
    head: str | None
    hashes_changed: bool = False
    """Python locks only: the set of accepted file hashes differs."""


@dataclass(frozen=True)
class FileChange:
    file: str
    kind: str
    """template or file."""
    state: str
    """added, removed or changed."""
    diff: str
    """A unified diff of at most MAX_DIFF_LINES lines; empty for a binary file."""
    cut: int = 0
    """Lines of the diff left out."""
    binary: bool = False


@dataclass
class RoleDiff:
    """Everything that changed in one role (or, under PLAYBOOKS, outside the roles)."""

    name: str
    state: str = "changed"
    """added, removed or changed: whether the role directory is in each revision."""
    variables: list[VarChange] = field(default_factory=list)
    tasks: list[TaskChange] = field(default_factory=list)
    debian_pins: list[PinChange] = field(default_factory=list)
    python_pins: list[PinChange] = field(default_factory=list)
    files: list[FileChange] = field(default_factory=list)
    docs: list[str] = field(default_factory=list)
    """Changed files that cannot reach a node (project-relative paths)."""

    def counts(self) -> list[tuple[int, str]]:
        """(number, noun) of each kind of change that reaches a node, in report order."""
        handlers = sum(t.file.startswith("handlers/") for t in self.tasks)
        templates = sum(f.kind == "template" for f in self.files)
        found = [
            (len(self.variables), "variable"),
            (len(self.tasks) - handlers, "task"),
            (handlers, "handler"),
            (templates, "template"),
            (len(self.files) - templates, "file"),
            (len(self.debian_pins), "Debian pin"),
            (len(self.python_pins), "Python pin"),
        ]
        return [(n, noun) for n, noun in found if n]

    @property
    def reaches_nodes(self) -> bool:
        return bool(self.counts())

    def summary(self) -> str:
        """`1 variable, 2 tasks`."""
        return ", ".join(f"{n} {noun}{'s' * (n != 1)}" for n, noun in self.counts())


# --- reading a revision ---------------------------------------------------------


def node_files(root: Path) -> dict[str, bytes]:
    """Every file under the image inputs of `root`, documentation included."""
    files: dict[str, bytes] = {}
    for name in IMAGE_INPUTS:
        top = root / name
        paths = sorted(top.rglob("*")) if top.is_dir() else [top]
        for path in paths:
            if path.is_file() and "__pycache__" not in path.parts:
                files[path.relative_to(root).as_posix()] = path.read_bytes()
    return files


def group_of(relpath: str) -> str:
    """The role a project-relative path belongs to, or PLAYBOOKS."""
    parts = PurePosixPath(relpath).parts
    return parts[1] if len(parts) > 2 and parts[0] == "roles" else PLAYBOOKS


# --- the diff -------------------------------------------------------------------


def diff_trees(base: Mapping[str, bytes], head: Mapping[str, bytes]) -> list[RoleDiff]:
    """The roles (and PLAYBOOKS) whose files differ, sorted by name, PLAYBOOKS last."""
    roles: dict[str, RoleDiff] = {}
    for path in sorted(set(base) | set(head)):
        old, new = base.get(path), head.get(path)
        if old == new:
            continue
        group = group_of(path)
        role = roles.setdefault(group, RoleDiff(group, _role_state(group, base, head)))
        if not reaches_node(path):
            role.docs.append(path)
            continue
        inner = path.split("/", 2)[2] if group != PLAYBOOKS else path
        _diff_file(role, inner, old, new)
    return sorted(roles.values(), key=lambda r: (r.name == PLAYBOOKS, r.name))


def _role_state(group: str, base: Mapping[str, bytes], head: Mapping[str, bytes]) -> str:
    if group == PLAYBOOKS:
        return "changed"
    prefix = f"roles/{group}/"
    in_base = any(p.startswith(prefix) for p in base)
    in_head = any(p.startswith(prefix) for p in head)
    return "added" if not in_base else "removed" if not in_head else "changed"


def _diff_file(role: RoleDiff, inner: str, old: bytes | None, new: bytes | None) -> None:
    parts = PurePosixPath(inner).parts
    top = parts[0] if len(parts) > 1 else ""
    yml = inner.endswith((".yml", ".yaml"))
    if top in ("defaults", "vars") and yml:
        before, after = _yaml_mapping(old), _yaml_mapping(new)
        if before is not None and after is not None:
            _diff_variables(role, inner, before, after)
            return
    if top in ("tasks", "handlers") and yml:
        before, after = _yaml_tasks(old), _yaml_tasks(new)
        if before is not None and after is not None:
            role.tasks += diff_tasks(inner, before, after)
            return
    if top == "files" and PYTHON_LOCK.match(parts[-1]):
        before_pins, after_pins = _lock(old), _lock(new)
        if before_pins or after_pins:
            role.python_pins += diff_locks(inner, before_pins, after_pins)
            return
    role.files.append(file_change(inner, "template" if top == "templates" else "file", old, new))


def _text(data: bytes | None) -> str | None:
    if data is None:
        return None
    if b"\0" in data:
        raise UnicodeDecodeError("utf-8", data, 0, 1, "NUL byte")
    return data.decode("utf-8")


def _lock(data: bytes | None) -> dict:
    try:
        return parse_lock(_text(data) or "")
    except UnicodeDecodeError:
        return {}


def _yaml(data: bytes | None) -> Any:
    try:
        return yaml.safe_load(_text(data) or "")
    except (yaml.YAMLError, UnicodeDecodeError):
        return MISSING


def _yaml_mapping(data: bytes | None) -> dict | None:
    """The file's top-level mapping ({} when absent or empty), or None when it is not one."""
    doc = _yaml(data)
    if doc is None:
        return {}
    return doc if isinstance(doc, dict) else None


def _yaml_tasks(data: bytes | None) -> list | None:
    doc = _yaml(data)
    if doc is None:
        return []
    return doc if isinstance(doc, list) else None


def _diff_variables(role: RoleDiff, file: str, before: dict, after: dict) -> None:
    for name in [*after, *(k for k in before if k not in after)]:
        old, new = before.get(name, MISSING), after.get(name, MISSING)
        if old == new:
            continue
        key = str(name)
        if key.endswith(DEBIAN_PINS_SUFFIX) and all(
            v is MISSING or isinstance(v, dict) for v in (old, new)
        ):
            role.debian_pins += diff_pins(
                file, {} if old is MISSING else old, {} if new is MISSING else new
            )
        else:
            role.variables.append(VarChange(file, key, old, new))


def diff_pins(file: str, before: Mapping, after: Mapping) -> list[PinChange]:
    """Debian pins {package: version}: one change per package whose version moved."""
    changes = []
    for pkg in sorted(set(before) | set(after), key=str):
        old, new = before.get(pkg), after.get(pkg)
        if old != new:
            changes.append(PinChange(
                file, str(pkg), None if old is None else str(old), None if new is None else str(new)
            ))  # fmt: skip
    return changes


# --- tasks ----------------------------------------------------------------------


def flat_tasks(tasks: list) -> list[tuple[str, str]]:
    """(name, body) of every task, blocks' tasks after the block; body is the task without name."""
    found: list[tuple[str, str]] = []
    for task in tasks:
        if not isinstance(task, dict):
            continue
        body = {k: v for k, v in task.items() if k != "name" and k not in TASK_LISTS}
        name = task.get("name")
        if not isinstance(name, str) or not name:
            module = next((str(k) for k in body if "." in str(k) or k in INCLUDE_MODULES), "task")
            name = f"(unnamed {module})"
        if not any(k in task for k in TASK_LISTS) or body:
            found.append((name, json.dumps(body, sort_keys=True, default=str)))
        for key in TASK_LISTS:
            if isinstance(task.get(key), list):
                found += flat_tasks(task[key])
    return found


def diff_tasks(file: str, before: list, after: list) -> list[TaskChange]:
    """Tasks added, removed, renamed (same body, new name) or changed (same name, new body)."""
    old = dict(reversed(flat_tasks(before)))
    new = dict(reversed(flat_tasks(after)))
    removed = [n for n in old if n not in new]
    added = [n for n in new if n not in old]
    changes: list[TaskChange] = []
    for name in list(added):
        twin = next((r for r in removed if old[r] == new[name]), None)
        if twin is not None:
            removed.remove(twin)
            added.remove(name)
            changes.append(TaskChange(file, "renamed", name, twin))
    changes += [TaskChange(file, "added", n) for n in added]
    changes += [TaskChange(file, "removed", n) for n in removed]
    changes += [TaskChange(file, "changed", n) for n in new if n in old and old[n] != new[n]]
    return changes


def role_includes(files: Mapping[str, bytes]) -> dict[str, set[str]]:
    """The roles each role pulls in: include_role/import_role in its tasks, meta dependencies."""
    pulled: dict[str, set[str]] = {}
    for path, data in files.items():
        parts = PurePosixPath(path).parts
        if len(parts) < 4 or parts[0] != "roles" or not path.endswith((".yml", ".yaml")):
            continue
        into = pulled.setdefault(parts[1], set())
        doc = _yaml(data)
        if parts[2] == "tasks" and isinstance(doc, list):
            into |= _included(doc)
        elif parts[2] == "meta" and isinstance(doc, dict):
            for dep in doc.get("dependencies") or []:
                if isinstance(dep, dict):
                    dep = dep.get("role") or dep.get("name")
                if isinstance(dep, str):
                    into.add(dep)
    return pulled


def _included(tasks: list) -> set[str]:
    names: set[str] = set()
    for task in tasks:
        if not isinstance(task, dict):
            continue
        for module in INCLUDE_MODULES:
            args = task.get(module)
            if isinstance(args, dict) and isinstance(args.get("name"), str):
                names.add(args["name"])
        for key in TASK_LISTS:
            if isinstance(task.get(key), list):
                names |= _included(task[key])
    return names


def with_included(roles: list[str], pulled: Mapping[str, set[str]]) -> list[str]:
    """`roles` followed by every role they pull in, transitively, each once."""
    result = list(roles)
    todo = list(roles)
    while todo:
        for name in sorted(pulled.get(todo.pop(0), ())):
            if name not in result:
                result.append(name)
                todo.append(name)
    return result


# --- Python locks ---------------------------------------------------------------


def parse_lock(text: str) -> dict[str, tuple[str, frozenset[str]]]:
    """{normalised package: (version, hashes)} of a pip-compile lock with --hash lines."""
    pins: dict[str, tuple[str, frozenset[str]]] = {}
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split(" #", 1)[0].strip()
        match = PIN_LINE.match(line)
        if match:
            name = re.sub(r"[-_.]+", "-", match.group(1)).lower()
            pins[name] = (match.group(2), frozenset(HASH.findall(line)))
    return pins


def diff_locks(file: str, before: Mapping, after: Mapping) -> list[PinChange]:
    changes = []
    for pkg in sorted(set(before) | set(after)):
        old, new = before.get(pkg), after.get(pkg)
        if old == new:
            continue
        changes.append(PinChange(
            file, pkg, old and old[0], new and new[0],
            hashes_changed=(old or ("", frozenset()))[1] != (new or ("", frozenset()))[1],
        ))  # fmt: skip
    return changes


# --- any other file ----------------------------------------------------------------


def file_change(name: str, kind: str, old: bytes | None, new: bytes | None) -> FileChange:
    """A short unified diff of one file (cut after MAX_DIFF_LINES lines), or binary."""
    state = "added" if old is None else "removed" if new is None else "changed"
    try:
        before, after = _text(old), _text(new)
    except UnicodeDecodeError:
        return FileChange(name, kind, state, "", binary=True)
    lines = list(
        difflib.unified_diff(
            (before or "").splitlines(keepends=True),
            (after or "").splitlines(keepends=True),
            fromfile=f"base/{name}",
            tofile=f"head/{name}",
        )
    )
    lines = [line if line.endswith("\n") else line + "\n" for line in lines]
    kept = lines[:MAX_DIFF_LINES]
    return FileChange(name, kind, state, "".join(kept), cut=len(lines) - len(kept))
