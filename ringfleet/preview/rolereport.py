"""The role changes of `ringfleet preview` in Markdown: what moved in each role, and where.

`ringfleet.preview.rolediff` says what changed; this module says which pools of which envs
each change reaches (the roles `site.yml` applies to a pool, plus the roles they
include) and writes it so that no value from the repository can break the report.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from ringfleet.preview.markdown import NONE, code, details, fenced, table
from ringfleet.preview.rolediff import MISSING, PLAYBOOKS, FileChange, RoleDiff, with_included

# Hosts of a pool that get a role; None: every host.
Hosts = list[str] | None
# env -> pool -> hosts.
Reach = dict[str, dict[str, Hosts]]
# env -> pool -> role -> hosts (`preview.pool_role_hosts`); None when unknown for an env.
EnvRoles = Mapping[str, Mapping[str, Mapping[str, Hosts]] | None]
INTRO = (
    "What changed in the roles between base and head, and the pools each change reaches "
    "(the head's `site.yml` and each env's inventory; a role included by another reaches "
    "the same pools)."
)
# Python lock tables longer than this are folded.
FOLD_ROWS = 12
SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# The role that installs the Python locks, and their names (`tensorflow_requirements_file`).
LOCK_ROLE = "tensorflow"
LOCK_NAME = re.compile(r"^files/requirements-(.+)-(cpu|cuda)\.txt$")


def reach(change: RoleDiff, envs: EnvRoles, pulled: Mapping[str, set[str]]) -> Reach:
    """The pools (and hosts) of each env that `change` reaches."""
    found: Reach = {}
    for env, pools in envs.items():
        for pool, applied in (pools or {}).items():
            hosts: Hosts | bool = False
            for role, on in applied.items():
                if change.name == PLAYBOOKS or change.name in with_included([role], pulled):
                    hosts = _union(hosts, on)
            if hosts is not False:
                found.setdefault(env, {})[pool] = hosts
    return found


def _union(a: Hosts | bool, b: Hosts) -> Hosts:
    if a is False:
        return b
    if a is None or b is None:
        return None
    return [*a, *(h for h in b if h not in a)]


def pools_text(pools: Mapping[str, Hosts]) -> str:
    return ", ".join(
        code(p) if h is None else f"{code(p)} (on {', '.join(code(x) for x in h)})"
        for p, h in pools.items()
    )


def name_text(name: str) -> str:
    """A role name as plain text when it is one (summary cells), else a code span."""
    return name if SAFE_NAME.match(name) else code(name)


# --- the roles subsection ---------------------------------------------------------


def roles_section(roles: Any) -> list[str]:
    """The Markdown lines of every role change, with the pools it reaches.

    `roles` is a `preview.RoleChanges`: the changes, roles per pool, includes and software.
    """
    changes, envs, pulled = roles.changes, roles.envs, roles.pulled
    moved = [c for c in changes if c.reaches_nodes]
    lines = [INTRO]
    if not moved:
        lines += ["", "No changes that reach a node."]
    unknown = [env for env, pools in envs.items() if pools is None]
    for change in moved:
        title = "site.yml, playbooks/, ansible.cfg" if change.name == PLAYBOOKS else change.name
        state = f" ({change.state})" if change.state != "changed" else ""
        where = reach(change, envs, pulled)
        reaches = "; ".join(f"{code(env)}: {pools_text(pools)}" for env, pools in where.items())
        if unknown:
            reaches += "; " * bool(reaches) + "unknown on " + ", ".join(code(e) for e in unknown)
        lines += ["", f"#### {code(title)}{state}: {change.summary()}", ""]
        lines += [f"Reaches: {reaches or 'no pool of any env'}."]
        lines += role_body(change, roles.software)
    docs = [p for c in changes for p in c.docs]
    if docs:
        lines += [
            "",
            "Changed but cannot reach a node (the rule of `ringfleet/converge/nodefiles.py`), "
            "so not counted: " + ", ".join(code(p, cell=False) for p in docs) + ".",
        ]
    return lines


def _value(v: Any) -> str:
    return NONE if v is MISSING or v is None else code(v, cell=False)


def lock_users(file: str, software: Mapping[str, Mapping[str, Mapping]]) -> Reach:
    """The pools that install the Python lock `file`: the tensorflow role picks
    `requirements-<profile>-<cuda|cpu>.txt` by the pool's profile and whether its
    TensorFlow package is the `and-cuda` one (`tensorflow_requirements_file`)."""
    match = LOCK_NAME.match(file)
    users: Reach = {}
    for env, pools in software.items():
        for pool, soft in pools.items():
            accel = "cuda" if "and-cuda" in str(soft.get("tensorflowPackage", "")) else "cpu"
            if match and (soft.get("profile"), accel) == match.groups():
                users.setdefault(env, {})[pool] = None
    return users


def role_body(change: RoleDiff, software: Mapping[str, Mapping[str, Mapping]]) -> list[str]:
    lines: list[str] = []
    if change.variables:
        lines += ["", "Variables:", ""]
        lines += [
            f"- {code(v.name, cell=False)} ({code(v.file, cell=False)}): "
            f"{_value(v.base)} -> {_value(v.head)}"
            for v in change.variables
        ]
    if change.tasks:
        lines += ["", "Tasks:", ""]
        for t in change.tasks:
            name = code(t.name, cell=False)
            if t.old_name is not None:
                name = f"{code(t.old_name, cell=False)} -> {name}"
            lines.append(f"- {t.op} ({code(t.file, cell=False)}): {name}")
    for file in sorted({p.file for p in change.debian_pins}):
        rows = [
            [code(p.package), _cell(p.base), _cell(p.head)]
            for p in change.debian_pins
            if p.file == file
        ]
        lines += ["", f"Debian pins, {code(file, cell=False)}:", ""]
        lines += table(["package", "base", "head"], rows)
    for file in sorted({p.file for p in change.python_pins}):
        rows = [
            [code(p.package), _cell(p.base), _cell(p.head), "changed" * p.hashes_changed or "same"]
            for p in change.python_pins
            if p.file == file
        ]
        lines += ["", f"Python lock, {code(file, cell=False)}:", ""]
        pins = table(["package", "base", "head", "hashes"], rows)
        # A regenerated lock moves dozens of pins: fold them so the report stays readable.
        lines += details(f"{len(rows)} packages", pins) if len(rows) > FOLD_ROWS else pins
        if change.name == LOCK_ROLE:
            users = lock_users(file, software)
            where = "; ".join(f"{code(env)}: {pools_text(p)}" for env, p in users.items())
            lines += ["", f"Installed on: {where or 'no pool of any env'}."]
    for file in change.files:
        lines += ["", *file_block(file)]
    return lines


def _cell(v: str | None) -> str:
    return NONE if v is None else code(v)


def file_block(file: FileChange) -> list[str]:
    """A file's diff folded under its name; binary files and cuts say so."""
    title = f"{file.kind} {file.file}: {file.state}"
    if file.binary:
        return [f"{file.kind.capitalize()} {code(file.file, cell=False)}: {file.state} (binary)."]
    if file.cut:
        title += f", diff cut after {len(file.diff.splitlines())} lines ({file.cut} more)"
    return details(title, [fenced(file.diff, "diff")])


# --- per env ----------------------------------------------------------------------


def env_roles(
    env: str, changes: list[RoleDiff], envs: EnvRoles, pulled: Mapping[str, set[str]]
) -> tuple[list[str], list[str]]:
    """The role changes reaching `env`'s pools (lines) and their summary parts."""
    lines, parts = [], []
    for change in changes:
        if not change.reaches_nodes:
            continue
        pools = reach(change, {env: envs.get(env)}, pulled).get(env)
        if not pools:
            continue
        label = "site.yml, playbooks/" if change.name == PLAYBOOKS else change.name
        lines.append(f"- {code(label, cell=False)} on {pools_text(pools)}: {change.summary()}")
        parts.append(f"{name_text(label)}: {change.summary()}")
    if lines:
        lines = ["Roles changed on these pools (details under Roles above):", "", *lines]
    return lines, parts


def image_lines(old: Mapping[str, str], new: Mapping[str, str]) -> list[str]:
    """The node image tags that move: the containers are rebuilt from the new tag."""
    rows = [
        [code(pool), _cell(old.get(pool)), _cell(new.get(pool))]
        for pool in [*new, *(p for p in old if p not in new)]
        if old.get(pool) != new.get(pool) and pool in old and pool in new
    ]
    if not rows:
        return []
    return [
        "Node image rebaked: the tag is a digest of the roles and the pool's software, "
        "so its containers are replaced (part 1).",
        "",
        *table(["pool", "base image", "head image"], rows),
    ]
