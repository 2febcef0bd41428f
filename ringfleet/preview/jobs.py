"""Part 3 of the report, the jobs: per env, every job's hostfile and launch script as the
base and the head render them, diffed; a job that does not render on an env says why.
"""

from __future__ import annotations

from ringfleet.preview.findings import Findings
from ringfleet.preview.markdown import code, fenced, paragraphs, unified
from ringfleet.preview.revision import Revision

JOB_FORMATS = ("hostfile", "script")


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
