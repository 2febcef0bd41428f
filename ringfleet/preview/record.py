"""What one revision's code makes of its files: resources, software, job renders.

`ringfleet preview` runs this module inside each revision it compares, as
`python -m ringfleet.preview.record ROOT ENV...` with the revision's directory as the
working directory, so the revision's own `ringfleet` and `stacks` are imported (and
Pulumi's mocks, which keep global state, see one revision only). It prints one JSON
object, env -> entry, on stdout; everything else goes to stderr.

Each step imports what it needs inside its own `try`: a revision whose Pulumi program
or renderer fails still records the rest, and the report says which step failed.
Keep to the public names of ringfleet and stacks. A revision without this file is
recorded by `record_flat.py` (revision.py chooses).
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import Any


def problem(exc: BaseException) -> str:
    """The one-line form of an error: a RingfleetError's own line, else type and first line."""
    line = getattr(exc, "line", None)
    if callable(line):
        return line()
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def resources(spec: Any, root: Path) -> tuple[list[dict], dict]:
    """The resources the revision's Pulumi program registers under mocks, and its outputs."""
    from stacks.mocks import run_program

    run = run_program(spec, root)
    registered = [
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
    return registered, run.outputs


def jobs(spec: Any, root: Path) -> dict[str, dict[str, str]]:
    """Every job's hostfile and launch script on this env, or why it does not render."""
    rendered: dict[str, dict[str, str]] = {}
    for path in sorted((root / "jobs").glob("*.yaml")):
        try:
            from ringfleet.jobs.render import render_job
            from ringfleet.jobs.spec import load_job

            job = render_job(spec, load_job(path, spec, root), root)
            rendered[f"jobs/{path.name}"] = {
                "hostfile": job.text("hostfile"),
                "script": job.text("script"),
            }
        except Exception as exc:
            rendered[f"jobs/{path.name}"] = {"error": problem(exc)}
    return rendered


def record_env(env: str, root: Path) -> dict[str, Any]:
    """The record of one env; a step that fails leaves `<step>_error` instead of its keys."""
    entry: dict[str, Any] = {}
    if not (root / f"Pulumi.{env}.yaml").is_file():
        entry["missing"] = True
        return entry
    try:
        from ringfleet.spec import load_spec

        spec = load_spec(env, root)
    except Exception as exc:
        entry["spec_error"] = problem(exc)
        return entry
    entry["provider"] = spec.cluster.provider
    entry["pool_order"] = list(spec.pools)
    outputs = None
    try:
        entry["resources"], outputs = resources(spec, root)
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

            entry["images"] = {n: node_image_tag(spec, p, root) for n, p in spec.pools.items()}
        except Exception as exc:
            entry["image_error"] = problem(exc)
    try:
        from ringfleet.converge.inventory import render_inventory

        entry["inventory"] = render_inventory(outputs, spec.display)
    except Exception as exc:
        entry["inventory_error"] = problem(exc)
    entry["jobs"] = jobs(spec, root)
    return entry


def record(root: str, envs: list[str]) -> dict[str, dict[str, Any]]:
    base = Path(root)
    # Only the JSON result may reach stdout.
    with contextlib.redirect_stdout(sys.stderr):
        return {env: record_env(env, base) for env in envs}


def borrowed(root: Path) -> list[str]:
    """Modules of ringfleet or stacks loaded from outside the revision at `root`.

    An editable install of the running ringfleet finds a subpackage the revision lacks
    in the running tree: the record would then show the head's code as the revision's.
    """
    inside = root.resolve()
    return sorted(
        name
        for name, module in list(sys.modules.items())
        if name.split(".")[0] in ("ringfleet", "stacks")
        and getattr(module, "__file__", None)
        and not Path(module.__file__).resolve().is_relative_to(inside)
    )


def main(argv: list[str]) -> None:
    result = record(argv[0], argv[1:])
    foreign = borrowed(Path(argv[0]))
    if foreign:
        sys.exit(f"modules from outside the revision: {', '.join(foreign)}")
    sys.stdout.write(json.dumps(result, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
