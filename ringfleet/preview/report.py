"""`ringfleet preview`: one Markdown report of what a change does to every env.

The working tree (head) is compared with a git revision (base) in three parts:
the infrastructure (the Pulumi program's resources, computed offline under
mocks), the node software (software matrix, role variables and roles per pool,
and the lockfile) and the jobs (every job's hostfile and launch script).

Each revision is evaluated by its own code, in a subprocess (`revision.py` starts
`record.py` inside it): a change to `compat.py`, the launch renderer or `stacks/`
shows up in the report, and Pulumi's mocks, which keep global state, never mix two
revisions. This module assembles the parts (`infra.py`, `software.py`, `jobs.py`)
and decides the exit code.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ringfleet.errors import RingfleetError
from ringfleet.preview import infra, jobs, rolereport, software
from ringfleet.preview.findings import Findings
from ringfleet.preview.markdown import NONE, code, table
from ringfleet.preview.revision import (
    Revision,
    export_revision,
    finish_record,
    resolve_base,
    start_record,
)
from ringfleet.spec import ENV_PATTERN, known_envs

# The first line of every report: the workflow finds its previous PR comment by it.
MARKER = "<!-- ringfleet-preview -->"


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


def render_report(base: Revision, head: Revision, envs: list[str], live: bool = False) -> Report:
    """The Markdown report of every env, with what decides the exit code."""
    found = Findings()
    roles = software.RoleChanges.of(base, head, envs)
    infra_lines, job_lines = [], []
    soft = ["", "### Roles", "", *rolereport.roles_section(roles)]
    for env in envs:
        if live:
            body = infra.live_infrastructure(env, head.root, found)
        else:
            body = infra.offline_infrastructure(env, base, head, found)
        infra_lines += ["", f"### `{env}`", "", *body]
        soft += ["", f"### `{env}`", "", *software.software(env, base, head, found, roles)]
        job_lines += ["", f"### `{env}`", "", *jobs.jobs(env, base, head, found)]
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
    lines += ["", "## 1. Infrastructure", "", infra.LIVE_NOTE if live else infra.OFFLINE_NOTE]
    lines += infra_lines
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
