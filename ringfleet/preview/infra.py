"""Part 1 of the report, the infrastructure: the resource graphs of the two revisions compared
offline (`offline_infrastructure`), or the real `pulumi preview --diff` of a stack (`--live`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ringfleet.preview import graph
from ringfleet.preview.findings import Findings, value
from ringfleet.preview.markdown import code, fenced, table
from ringfleet.preview.revision import Revision

OFFLINE_NOTE = (
    "Offline estimate: the Pulumi program of each revision run under mocks, without "
    "credentials. A resource is replaced when an input that forces replacement for its type "
    "changes (the table `REPLACE_INPUTS` in `ringfleet/preview/graph.py`), or its provider is "
    "replaced; `--live` asks the real providers."
)
LIVE_NOTE = (
    "`pulumi preview --diff` of each env's stack: the working tree against what is "
    "deployed (not against the base)."
)


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
