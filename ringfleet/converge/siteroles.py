"""Which roles `site.yml` applies to which pools: its plays' host patterns against the inventory.

Read by `ringfleet preview` (roles per pool, and the pools a role change reaches).
"""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import yaml

from ringfleet.converge.inventory import pool_group


def site_plays(root: Path) -> list[tuple[str, list[str]]] | None:
    """(hosts pattern, roles) of each play site.yml runs, imports followed; None without it."""
    site = root / "site.yml"
    if not site.is_file():
        return None
    plays: list[tuple[str, list[str]]] = []
    _collect_plays(site, plays, set())
    return plays


def _collect_plays(path: Path, plays: list[tuple[str, list[str]]], seen: set[Path]) -> None:
    if path in seen or not path.is_file():
        return
    seen.add(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return
    for entry in doc if isinstance(doc, list) else []:
        if not isinstance(entry, dict):
            continue
        target = entry.get("ansible.builtin.import_playbook") or entry.get("import_playbook")
        if isinstance(target, str):
            _collect_plays(path.parent / target, plays, seen)
        elif "hosts" in entry:
            roles = [
                r if isinstance(r, str) else (r or {}).get("role") for r in entry.get("roles") or []
            ]
            plays.append((str(entry["hosts"]), [r for r in roles if isinstance(r, str)]))


def pattern_matches(pattern: str, names: set[str]) -> bool:
    """Ansible host patterns: `a:b` or `a,b` (union), `&a` (and), `!a` (not), `all`."""
    terms = [t.strip() for t in re.split(r"[,:]", pattern) if t.strip()]

    def has(term: str) -> bool:
        return term in ("all", "*") or term in names

    plain = [t for t in terms if t[0] not in "&!"]
    return (
        any(has(t) for t in plain)
        and all(has(t[1:]) for t in terms if t.startswith("&"))
        and not any(has(t[1:]) for t in terms if t.startswith("!"))
    )


def pool_roles(
    inventory: dict[str, Any], plays: list[tuple[str, list[str]]], pools: list[str]
) -> dict[str, list[str]]:
    """The roles site.yml applies to each pool; `name (on host)` when only some hosts get it."""
    return named_roles(pool_role_hosts(inventory, plays, pools))


def named_roles(hosts: dict[str, dict[str, list[str] | None]]) -> dict[str, list[str]]:
    """`pool_role_hosts` as role names, `name (on host)` when only some hosts get it."""
    return {
        pool: [role if on is None else f"{role} (on {', '.join(on)})" for role, on in roles.items()]
        for pool, roles in hosts.items()
    }


def pool_role_hosts(
    inventory: dict[str, Any], plays: list[tuple[str, list[str]]], pools: list[str]
) -> dict[str, dict[str, list[str] | None]]:
    """Per pool, the roles site.yml applies and their hosts (None: every host of the pool)."""
    groups = inventory.get("all", {}).get("children") or {}
    parents: dict[str, set[str]] = defaultdict(set)
    direct: dict[str, set[str]] = defaultdict(set)
    hosts_of: dict[str, list[str]] = defaultdict(list)
    for name, group in groups.items():
        for child in (group or {}).get("children") or {}:
            parents[child].add(name)
        for host, hostvars in ((group or {}).get("hosts") or {}).items():
            direct[host].add(name)
            pool = (hostvars or {}).get("ringfleet_pool")
            if pool and host not in hosts_of[pool]:
                hosts_of[pool].append(host)

    def lineage(start: set[str]) -> set[str]:
        seen, todo = set(start), list(start)
        while todo:
            for up in parents[todo.pop()]:
                if up not in seen:
                    seen.add(up)
                    todo.append(up)
        return seen | {"all"}

    result = {}
    for pool in pools:
        whole = lineage({pool_group(pool)})
        applied: dict[str, list[str] | None] = {}
        for pattern, roles in plays:
            if pattern_matches(pattern, whole):
                hosts = None
            else:
                hosts = [
                    h for h in hosts_of[pool] if pattern_matches(pattern, lineage(direct[h]) | {h})
                ]
                if not hosts:
                    continue
            for role in roles:
                before = applied.get(role, [])
                if hosts is None or before is None:
                    applied[role] = None
                else:
                    applied[role] = before + [h for h in hosts if h not in before]
        result[pool] = applied
    return result
