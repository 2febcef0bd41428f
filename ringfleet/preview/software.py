"""Part 2 of the report, the node software: per env, the software matrix and role variables
of each pool, the roles applied to it, the role changes that reach it, the node image tags
and the lockfile, base against head.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ringfleet.converge.siteroles import named_roles, pool_role_hosts, site_plays
from ringfleet.preview import graph, rolediff, rolereport
from ringfleet.preview.findings import Findings, value
from ringfleet.preview.markdown import NONE, code, fenced, table, unified
from ringfleet.preview.revision import Revision, lockfile_path


def _pools(entry: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return entry.get("pools") or {}


def _roles(rev: Revision, env: str) -> tuple[dict[str, list[str]] | None, str]:
    """Roles per pool, or None and why not."""
    hosts, why = _role_hosts(rev, env)
    if hosts is None:
        return None, why
    return named_roles(hosts), ""


def _role_hosts(rev: Revision, env: str) -> tuple[dict | None, str]:
    """Per pool, the roles and their hosts (`pool_role_hosts`), or None and why not."""
    entry = rev.env(env)
    if entry.get("missing"):
        return {}, ""
    if "spec_error" in entry:
        return None, ""
    plays = site_plays(rev.root)
    if plays is None:
        return None, f"no `site.yml` in {rev.side}"
    if "inventory" not in entry:
        return None, f"no inventory in {rev.side} ({code(entry.get('inventory_error', ''))})"
    return pool_role_hosts(entry["inventory"], plays, list(_pools(entry))), ""


@dataclass
class RoleChanges:
    """The role diff of the two revisions and where each role is applied (head, else base)."""

    changes: list[rolediff.RoleDiff]
    envs: dict[str, dict | None]
    pulled: dict[str, set[str]]
    software: dict[str, dict[str, dict]]
    """env -> pool -> software matrix (which Python lock a pool installs)."""

    @classmethod
    def of(cls, base: Revision, head: Revision, envs: list[str]) -> RoleChanges:
        old, new = rolediff.node_files(base.root), rolediff.node_files(head.root)
        pulled = rolediff.role_includes(old)
        for role, names in rolediff.role_includes(new).items():
            pulled[role] = pulled.get(role, set()) | names
        where, software = {}, {}
        for env in envs:
            rev = base if head.env(env).get("missing") else head
            where[env] = _role_hosts(rev, env)[0]
            software[env] = {p: v["software"] for p, v in _pools(rev.env(env)).items()}
        return cls(rolediff.diff_trees(old, new), where, pulled, software)


def software(
    env: str, base: Revision, head: Revision, found: Findings, roles: RoleChanges | None = None
) -> list[str]:
    old, new = base.env(env), head.env(env)
    problems = [
        f"{rev.side}: {code(entry.get('spec_error') or entry.get('software_error'))}"
        for rev, entry in ((base, old), (head, new))
        if entry.get("spec_error") or entry.get("software_error")
    ]
    if problems:
        # Half a comparison would list every pool as added or removed.
        found.summary[env]["software"] = "error"
        return ["Not compared:", "", *(f"- {p}" for p in problems), "", *_lockfile(env, base, head)]
    lines: list[str] = []
    old_roles, why_old = _roles(base, env)
    new_roles, why_new = _roles(head, env)
    if why_old or why_new:
        lines.append("Roles: not compared: " + "; ".join(w for w in (why_old, why_new) if w) + ".")
    old_pools, new_pools = _pools(old), _pools(new)
    order = list(new.get("pool_order") or new_pools)
    order += [p for p in old.get("pool_order") or old_pools if p not in order]
    rows: list[list[str]] = []
    changed: list[str] = []
    for pool in order:
        pool_rows = _pool_rows(
            pool,
            old_pools.get(pool),
            new_pools.get(pool),
            (old_roles or {}).get(pool, []) if old_roles is not None else None,
            (new_roles or {}).get(pool, []) if new_roles is not None else None,
        )
        if pool_rows:
            changed.append(pool)
            rows += pool_rows
    unchanged = [p for p in order if p not in changed and p in new_pools]
    role_lines, parts, images = [], [], []
    if roles is not None:
        role_lines, parts = rolereport.env_roles(env, roles.changes, roles.envs, roles.pulled)
        images = rolereport.image_lines(old.get("images") or {}, new.get("images") or {})
    quiet = "No changes to the software matrix." if role_lines or images else "No changes."
    body = table(["pool", "item", "base", "head"], rows) if rows else [quiet]
    lines += [""] * bool(lines) + body
    if rows and unchanged:
        lines += ["", "Unchanged: " + ", ".join(code(p) for p in unchanged) + "."]
    lines += [""] * bool(role_lines) + role_lines + [""] * bool(images) + images
    moved = [", ".join(f"`{p}` {_pool_word(p, old_pools, new_pools)}" for p in changed)]
    moved += parts + ["node image rebaked"] * bool(images)
    found.summary[env]["software"] = "; ".join(m for m in moved if m) or "no changes"
    if new_pools:
        lines += ["", *_effective(new_pools, new_roles)]
    lines += ["", *_lockfile(env, base, head)]
    return lines


def _pool_word(pool: str, old: dict, new: dict) -> str:
    return "added" if pool not in old else "removed" if pool not in new else "changed"


def _pool_rows(
    pool: str,
    old: dict | None,
    new: dict | None,
    old_roles: list[str] | None,
    new_roles: list[str] | None,
) -> list[list[str]]:
    rows = []
    name = code(pool)
    if old is None and new is not None:
        rows.append([name, "pool", NONE, "added"])
    elif new is None and old is not None:
        return [[name, "pool", "present", "removed"]]
    for kind, key in (("software", "software"), ("role variable", "role_vars")):
        before, after = (old or {}).get(key, {}), (new or {}).get(key, {})
        for item in [*after, *(k for k in before if k not in after)]:
            b, a = before.get(item, graph.MISSING), after.get(item, graph.MISSING)
            if b != a or b is graph.MISSING:
                rows.append([name, f"{kind} {code(item)}", value(b), value(a)])
    if old_roles is not None and new_roles is not None:
        added = [r for r in new_roles if r not in old_roles]
        removed = [r for r in old_roles if r not in new_roles]
        rows += [[name, f"role {code(r)}", NONE, "applied"] for r in added]
        rows += [[name, f"role {code(r)}", "applied", NONE] for r in removed]
    return rows


def _effective(pools: dict[str, dict[str, Any]], roles: dict[str, list[str]] | None) -> list[str]:
    """The head's whole matrix, folded: the diff above says what moved, this what is."""
    keys: list[str] = []
    for pool in pools.values():
        keys += [k for k in pool["software"] if k not in keys]
    header = ["pool", *keys] + (["roles"] if roles is not None else [])
    rows = []
    for name, pool in pools.items():
        row = [code(name), *(_cell(pool["software"], k) for k in keys)]
        if roles is not None:
            row.append(", ".join(roles.get(name, [])) or NONE)
        rows.append(row)
    return [
        "<details><summary>Effective software per pool (head)</summary>",
        "",
        *table(header, rows),
        "",
        "</details>",
    ]


def _cell(data: dict[str, Any], key: str) -> str:
    return code(data[key]) if key in data else NONE


def _lockfile(env: str, base: Revision, head: Revision) -> list[str]:
    path = lockfile_path(env)
    old, new = base.lockfile(env), head.lockfile(env)
    if old is None and new is None:
        return [f"Lockfile {code(path)}: no lockfile."]
    if old == new:
        return [f"Lockfile {code(path)}: unchanged."]
    state = "added" if old is None else "removed" if new is None else "changed"
    return [f"Lockfile {code(path)}: {state}.", "", fenced(unified(old, new, path), "diff")]
