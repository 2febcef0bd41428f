"""`ringfleet preview`: one Markdown report of what a change does to every env.

The working tree (head) is compared with a git revision (base) in three parts:
the infrastructure (the Pulumi program's resources, computed offline under
mocks), the node software (software matrix, role variables and roles per pool,
and the lockfile) and the jobs (every job's hostfile and launch script).

Each revision is evaluated by its own code, in a subprocess: a change to
`compat.py`, `launch.py` or `stacks/` shows up in the report, and Pulumi's mocks,
which keep global state, never mix two revisions.
"""

from __future__ import annotations

import difflib
import inspect
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ringfleet.converge.siteroles import named_roles, pool_role_hosts, site_plays
from ringfleet.errors import RingfleetError
from ringfleet.preview import graph, rolediff, rolereport
from ringfleet.preview.markdown import code, fenced, table
from ringfleet.spec import ENV_PATTERN, known_envs

# The first line of every report: the workflow finds its previous PR comment by it.
MARKER = "<!-- ringfleet-preview -->"
LOCKFILE = "ringfleet.lock"
JOB_FORMATS = ("hostfile", "script")
RECORD_TIMEOUT = 600
NONE = "—"


def lockfile_path(env: str) -> str:
    return f"inventories/{env}/{LOCKFILE}"


# --- the two revisions ----------------------------------------------------------


def _git(root: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=not binary, check=False
        )
    except FileNotFoundError:
        raise RingfleetError("--base", "git is not installed") from None


def resolve_base(root: Path, ref: str) -> str:
    """The commit `ref` names, or a one-line error."""
    if ref.startswith("-"):
        raise RingfleetError("--base", "not a git revision", ref)
    inside = _git(root, "rev-parse", "--is-inside-work-tree")
    if inside.returncode != 0:
        raise RingfleetError("--base", f"{root} is not in a git repository")
    found = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if found.returncode != 0:
        raise RingfleetError("--base", "not a commit in this repository", ref)
    return found.stdout.strip()


def export_revision(root: Path, commit: str, dest: Path) -> None:
    """Write the files of `commit` under the project root (not the whole repo) into `dest`."""
    prefix = _git(root, "rev-parse", "--show-prefix").stdout.strip()
    tree = f"{commit}:{prefix}" if prefix else commit
    archive = _git(root, "archive", "--format=tar", tree, binary=True)
    if archive.returncode != 0:
        raise RingfleetError("--base", "git archive failed", archive.stderr.decode().strip())
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(dest, filter="data")


def _record(root: str, envs: list[str]) -> dict:
    """What one revision's code makes of its files: resources, software, job renders.

    Runs in a subprocess inside the revision (`start_record`), so it imports only
    inside this function and uses only the public names of ringfleet and stacks.
    """
    import contextlib
    import sys
    from pathlib import Path

    def problem(exc: BaseException) -> str:
        line = getattr(exc, "line", None)
        if callable(line):
            return line()
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

    base = Path(root)
    result: dict = {}
    # Only the JSON result may reach stdout.
    with contextlib.redirect_stdout(sys.stderr):
        for env in envs:
            entry: dict = {}
            result[env] = entry
            if not (base / f"Pulumi.{env}.yaml").is_file():
                entry["missing"] = True
                continue
            try:
                from ringfleet.spec import load_spec

                spec = load_spec(env, base)
            except Exception as exc:
                entry["spec_error"] = problem(exc)
                continue
            entry["provider"] = spec.cluster.provider
            entry["pool_order"] = list(spec.pools)
            outputs = None
            try:
                from stacks.mocks import run_program

                run = run_program(spec, base)
                outputs = run.outputs
                entry["resources"] = [
                    {
                        "urn": r.urn,
                        "type": r.typ,
                        "name": r.name,
                        "custom": r.custom,
                        "protect": r.protect,
                        "provider": r.provider,
                        "dependencies": list(r.dependencies),
                        "ignore_changes": list(r.ignore_changes),
                        "inputs": r.inputs,
                    }
                    for r in run.registrations
                ]
            except Exception as exc:
                entry["graph_error"] = problem(exc)
            try:
                from ringfleet.converge.inventory import role_vars
                from ringfleet.providers.outputs import static_outputs

                if outputs is None:
                    outputs = static_outputs(spec)
                entry["pools"] = {
                    name: {"software": pool["software"], "role_vars": role_vars(pool["software"])}
                    for name, pool in outputs["pools"].items()
                }
            except Exception as exc:
                entry["software_error"] = problem(exc)
            if spec.cluster.provider == "docker":
                try:
                    from ringfleet.providers.docker.images import node_image_tag

                    pools = spec.pools.items()
                    entry["images"] = {n: node_image_tag(spec, p, base) for n, p in pools}
                except Exception as exc:
                    entry["image_error"] = problem(exc)
            try:
                from ringfleet.converge.inventory import render_inventory

                entry["inventory"] = render_inventory(outputs, spec.display)
            except Exception as exc:
                entry["inventory_error"] = problem(exc)
            jobs: dict = {}
            entry["jobs"] = jobs
            for path in sorted((base / "jobs").glob("*.yaml")):
                try:
                    from ringfleet.jobs.render import render_job
                    from ringfleet.jobs.spec import load_job

                    rendered = render_job(spec, load_job(path, spec, base), base)
                    jobs[f"jobs/{path.name}"] = {
                        "hostfile": rendered.text("hostfile"),
                        "script": rendered.text("script"),
                    }
                except Exception as exc:
                    jobs[f"jobs/{path.name}"] = {"error": problem(exc)}
    return result


RECORD_PROGRAM = (
    inspect.getsource(_record)
    + "\nimport json, sys\n"
    + "sys.stdout.write(json.dumps(_record(sys.argv[1], sys.argv[2:]), default=str))\n"
)


def start_record(root: Path, envs: list[str]) -> subprocess.Popen:
    """Start `_record` in `root`'s own code: its directory comes first on sys.path."""
    env = {**os.environ, "RINGFLEET_ROOT": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", RECORD_PROGRAM, str(root), *envs],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish_record(proc: subprocess.Popen, label: str) -> dict[str, Any]:
    try:
        out, err = proc.communicate(timeout=RECORD_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise RingfleetError(
            f"preview: {label}", f"evaluation took over {RECORD_TIMEOUT} s"
        ) from None
    if proc.returncode != 0:
        lines = [line for line in err.splitlines() if line.strip()]
        raise RingfleetError(
            f"preview: {label}",
            "could not evaluate the revision",
            lines[-1] if lines else f"exit {proc.returncode}",
        )
    return json.loads(out)


@dataclass
class Revision:
    """One side of the comparison: where its files are and what its code made of them."""

    side: str
    """`base` or `head`, as diff labels name it."""
    title: str
    root: Path
    envs: dict[str, dict[str, Any]] = field(default_factory=dict)

    def env(self, name: str) -> dict[str, Any]:
        return self.envs.get(name, {"missing": True})

    def lockfile(self, env: str) -> str | None:
        path = self.root / lockfile_path(env)
        return path.read_text(encoding="utf-8") if path.is_file() else None


# --- Markdown -------------------------------------------------------------------


def value(v: Any) -> str:
    return NONE if v is graph.MISSING else code(v)


def unified(base: str | None, head: str | None, name: str) -> str:
    """A unified diff of two texts; a missing side diffs as empty."""
    return "".join(
        difflib.unified_diff(
            (base or "").splitlines(keepends=True),
            (head or "").splitlines(keepends=True),
            fromfile=f"base/{name}",
            tofile=f"head/{name}",
        )
    )


# --- 1. infrastructure ------------------------------------------------------------


@dataclass
class Findings:
    """What decides the exit code, gathered while the sections are written."""

    flagged: list[str] = field(default_factory=list)
    """Protected or stateful resources replaced or removed."""
    unchecked: list[str] = field(default_factory=list)
    """Envs whose head could not be evaluated, so nothing rules out a replacement."""
    summary: dict[str, dict[str, str]] = field(default_factory=lambda: defaultdict(dict))


def offline_infrastructure(env: str, base: Revision, head: Revision, found: Findings) -> list[str]:
    old, new = base.env(env), head.env(env)
    if new.get("missing"):
        found.summary[env]["infra"] = "env removed"
        return [
            f"`Pulumi.{env}.yaml` is removed. Its stack, if any, is left as it is: "
            f"run `ringfleet down {env}` before merging to remove its resources."
        ]
    problem = new.get("spec_error") or new.get("graph_error")
    if problem:
        found.unchecked.append(f"`{env}`: {problem}")
        found.summary[env]["infra"] = "error"
        return [f"Cannot compute the head's resources: {code(problem)}"]
    lines = []
    if old.get("missing"):
        lines += ["New env: every resource is added.", ""]
        old_resources: list = []
    elif old.get("spec_error") or old.get("graph_error"):
        lines += [
            "The base's resources cannot be computed, so every resource shows as added: "
            f"{code(old.get('spec_error') or old.get('graph_error'))}",
            "",
        ]
        old_resources = []
    else:
        old_resources = old.get("resources", [])
    changes = graph.diff_graphs(old_resources, new.get("resources", []))
    if not changes:
        found.summary[env]["infra"] = "no changes"
        if not new.get("resources"):
            return [*lines, f"No resources: provider `{new.get('provider')}` creates none."]
        return [*lines, f"No changes ({len(new['resources'])} resources)."]
    tally = graph.counts(changes)
    found.summary[env]["infra"] = ", ".join(f"{n} {op}" for op, n in tally.items())
    lines += [", ".join(f"{n} to {op}" for op, n in tally.items()) + ".", ""]
    rows = []
    for c in changes:
        if c.flagged:
            found.flagged.append(
                f"`{env}`: {c.op} {code(c.resource.type)} {code(c.resource.name)} "
                f"({c.why_flagged()})"
            )
        rows.append([c.op, code(c.resource.type), code(c.resource.name), _note(c)])
    lines += table(["change", "type", "name", "note"], rows)
    inputs = [
        [code(c.resource.name), code(i.path), value(i.base), value(i.head),
         "yes" if i.replaces else "no"]
        for c in changes
        for i in c.inputs
    ]  # fmt: skip
    if inputs:
        lines += ["", "Changed inputs:", ""]
        lines += table(["resource", "input", "base", "head", "forces replacement"], inputs)
    return lines


def _note(c: graph.Change) -> str:
    notes = []
    if c.flagged:
        notes.append(f"**{c.why_flagged()}**")
    elif c.protected:
        notes.append("protected")
    if c.reason:
        notes.append(c.reason)
    if c.depends_on_replaced:
        names = ", ".join(c.depends_on_replaced)
        notes.append(f"reads replaced {names}: may be replaced too")
    if c.op == graph.CHANGE and c.inputs and c.resource.type not in graph.REPLACE_INPUTS:
        notes.append("type not in the replacement table: may be a replacement")
    return "; ".join(notes)


def live_infrastructure(env: str, root: Path, found: Findings) -> list[str]:
    """The real `pulumi preview --diff` of ENV's stack against the working tree."""
    from pulumi import automation as auto

    try:
        stack = auto.select_stack(stack_name=env, work_dir=str(root))
    except auto.StackNotFoundError:
        found.summary[env]["infra"] = "no stack"
        return [f"No Pulumi stack `{env}`: nothing is deployed to compare with."]
    output: list[str] = []
    events: list[Any] = []
    try:
        result = stack.preview(diff=True, on_output=output.append, on_event=events.append)
    except auto.CommandError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        found.unchecked.append(f"`{env}`: pulumi preview failed: {lines[-1] if lines else ''}")
        found.summary[env]["infra"] = "error"
        return [f"`pulumi preview --diff -s {env}` failed:", "", fenced("\n".join(output))]
    flagged = live_flags(events)
    found.flagged += [f"`{env}`: {line}" for line in flagged]
    tally = {str(getattr(op, "value", op)): n for op, n in result.change_summary.items()}
    moved = ", ".join(f"{n} {op}" for op, n in sorted(tally.items()) if op != "same" and n)
    found.summary[env]["infra"] = moved or "no changes"
    return [fenced("\n".join(output), "diff")]


LIVE_REPLACE_OPS = ("replace", "create-replacement", "delete-replaced")


def live_flags(events: list[Any]) -> list[str]:
    """Replacements and deletions of protected or stateful resources in pulumi's events."""
    seen: dict[str, str] = {}
    for event in events:
        pre = getattr(event, "resource_pre_event", None)
        meta = getattr(pre, "metadata", None)
        if meta is None:
            continue
        op = str(getattr(meta.op, "value", meta.op))
        if op not in (*LIVE_REPLACE_OPS, "delete"):
            continue
        protected = bool(meta.old and meta.old.protect)
        stateful = meta.type in graph.STATEFUL_TYPES
        if not (protected or stateful):
            continue
        why = ", ".join(w for w, on in (("protected", protected), ("stateful", stateful)) if on)
        verb = graph.REPLACE if op in LIVE_REPLACE_OPS else graph.REMOVE
        name = meta.urn.rsplit("::", 1)[-1]
        seen.setdefault(meta.urn, f"{verb} {code(meta.type)} {code(name)} ({why})")
    return list(seen.values())


# --- 2. node software -----------------------------------------------------------


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


# --- 3. jobs ----------------------------------------------------------------------


def jobs(env: str, base: Revision, head: Revision, found: Findings) -> list[str]:
    broken = [rev.side for rev in (base, head) if "spec_error" in rev.env(env)]
    if broken:
        found.summary[env]["jobs"] = "not compared"
        return [f"Not compared: no spec of `{env}` loads in {' and '.join(broken)} (see part 1)."]
    old, new = base.env(env).get("jobs") or {}, head.env(env).get("jobs") or {}
    if new == {} and old == {}:
        found.summary[env]["jobs"] = "none"
        return ["No jobs rendered (no `jobs/*.yaml`, or the spec does not load)."]
    unchanged, not_run, blocks = [], [], []
    for job in sorted(set(old) | set(new)):
        b, h = old.get(job), new.get(job)
        if b == h:
            (not_run if "error" in h else unchanged).append(job)
            continue
        blocks.append([f"#### {code(job)}"])
        if h is None:
            blocks.append(["Removed."])
        elif "error" in h:
            blocks.append([f"No longer renders on `{env}`: {code(h['error'])}"])
        else:
            if b is None:
                blocks.append(["New job."])
            elif "error" in b:
                blocks.append([f"Now renders on `{env}` (base: {code(b['error'])})."])
            diff = "".join(
                unified((b or {}).get(fmt), h.get(fmt), f"{env}/{job}:{fmt}") for fmt in JOB_FORMATS
            )
            blocks.append([fenced(diff, "diff")])
    total = len(set(old) | set(new))
    changed = total - len(unchanged) - len(not_run)
    found.summary[env]["jobs"] = f"{changed} of {total} changed" if changed else "no changes"
    head_lines = []
    if unchanged:
        head_lines.append(["Unchanged: " + ", ".join(code(j) for j in unchanged) + "."])
    if not_run:
        head_lines.append([f"Not run on `{env}`:"])
        head_lines.append([f"- {code(j)}: {code(new[j]['error'])}" for j in not_run])
    return paragraphs(*head_lines, *blocks)


def paragraphs(*parts: list[str]) -> list[str]:
    """Markdown blocks joined by one blank line."""
    lines: list[str] = []
    for part in parts:
        lines += [""] * bool(lines) + part
    return lines


# --- the report -------------------------------------------------------------------


@dataclass
class Report:
    text: str
    flagged: list[str]
    unchecked: list[str]

    def exit_code(self, allow_replace: bool = False) -> int:
        """1 when a flagged replacement is not allowed or the head could not be checked."""
        if self.unchecked or (self.flagged and not allow_replace):
            return 1
        return 0


PARTS = ("infra", "software", "jobs")
INFRA_OFFLINE_NOTE = (
    "Offline estimate: the Pulumi program of each revision run under mocks, without "
    "credentials. A resource is replaced when an input that forces replacement for its type "
    "changes (the table `REPLACE_INPUTS` in `ringfleet/preview/graph.py`), or its provider is "
    "replaced; `--live` asks the real providers."
)
INFRA_LIVE_NOTE = (
    "`pulumi preview --diff` of each env's stack: the working tree against what is "
    "deployed (not against the base)."
)


def render_report(base: Revision, head: Revision, envs: list[str], live: bool = False) -> Report:
    """The Markdown report of every env, with what decides the exit code."""
    found = Findings()
    roles = RoleChanges.of(base, head, envs)
    infra, job_lines = [], []
    soft = ["", "### Roles", "", *rolereport.roles_section(roles)]
    for env in envs:
        if live:
            body = live_infrastructure(env, head.root, found)
        else:
            body = offline_infrastructure(env, base, head, found)
        infra += ["", f"### `{env}`", "", *body]
        soft += ["", f"### `{env}`", "", *software(env, base, head, found, roles)]
        job_lines += ["", f"### `{env}`", "", *jobs(env, base, head, found)]
    lines = [
        MARKER,
        "# ringfleet preview",
        "",
        f"Base: {base.title}. Head: {head.title}.",
        "",
        *table(
            ["env", "infrastructure", "node software", "jobs"],
            [[code(env), *(found.summary[env].get(k, NONE) for k in PARTS)] for env in envs],
        ),
    ]
    if found.flagged:
        lines += [
            "",
            "> [!CAUTION]",
            "> Protected or stateful resources are replaced or removed"
            + ("" if live else " (offline estimate)")
            + ":",
            *(f"> - {line}" for line in found.flagged),
            ">",
            "> `ringfleet preview` exits 1 unless run with `--allow-replace`.",
        ]
    if found.unchecked:
        lines += [
            "",
            "> [!WARNING]",
            "> The head could not be evaluated, so replacements cannot be ruled out:",
            *(f"> - {line}" for line in found.unchecked),
        ]
    lines += ["", "## 1. Infrastructure", "", INFRA_LIVE_NOTE if live else INFRA_OFFLINE_NOTE]
    lines += infra
    lines += ["", "## 2. Node software", *soft]
    lines += ["", "## 3. Jobs", *job_lines]
    return Report("\n".join(lines) + "\n", found.flagged, found.unchecked)


def preview(root: Path, base_ref: str, envs: list[str], live: bool = False) -> Report:
    """Compare the working tree at `root` with `base_ref` for `envs` (default: all)."""
    if live:
        from ringfleet.providers.stackops import require_pulumi

        require_pulumi()
    for env in envs:
        if not ENV_PATTERN.match(env):
            raise RingfleetError("env", "must be letters, digits, '.', '_' or '-'", env)
    commit = resolve_base(root, base_ref)
    with tempfile.TemporaryDirectory(prefix="ringfleet-preview-") as tmp:
        base_root = Path(tmp)
        export_revision(root, commit, base_root)
        present = set(known_envs(root)) | set(known_envs(base_root))
        for env in envs:
            if env not in present:
                raise RingfleetError(
                    "env",
                    f"no Pulumi.{env}.yaml in the working tree or {base_ref} "
                    f"(known envs: {', '.join(sorted(present)) or 'none'})",
                    env,
                )
        names = envs or sorted(present)
        base = Revision("base", f"`{base_ref}` ({commit[:12]})", base_root)
        head = Revision("head", "the working tree", root)
        # Both revisions at once: each is a separate interpreter anyway.
        procs = [start_record(base_root, names), start_record(root, names)]
        try:
            base.envs = finish_record(procs[0], f"base {base_ref}")
            head.envs = finish_record(procs[1], "working tree")
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return render_report(base, head, names, live=live)
