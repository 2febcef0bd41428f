"""Frozen: the record program of revisions from before `ringfleet/preview/record.py` existed.

`ringfleet preview --base REF` evaluates REF with REF's own code. A revision from
before the layout change of #14 (e.g. d872216, the last flat-layout commit) has no
`ringfleet/preview/record.py` to run, so `revision.record_command` runs this file
instead, as a script inside that revision: it is the old `_record` of
`ringfleet/preview.py`, which imported only the revision's public names.

Two old layouts are known, told apart by the files the revision has:
- flat: `ringfleet/inventory.py`, `ringfleet/launch.py`, `stacks/testing.py` ...;
- packages (the first steps of #14, before record.py): `ringfleet/converge/inventory.py`,
  `ringfleet/jobs/render.py`, `stacks/mocks.py` ...

Do not change what this records: old revisions cannot change either. It imports
nothing from the running ringfleet, only from the revision.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
from pathlib import Path
from typing import Any

# Where each name the record uses lives, per old layout.
LAYOUTS = {
    "flat": {
        "load_spec": "ringfleet.spec",
        "run_program": "stacks.testing",
        "role_vars": "ringfleet.inventory",
        "render_inventory": "ringfleet.inventory",
        "static_outputs": "ringfleet.outputs",
        "node_image_tag": "ringfleet.images",
        "load_job": "ringfleet.jobs",
        "render_job": "ringfleet.launch",
    },
    "packages": {
        "load_spec": "ringfleet.spec",
        "run_program": "stacks.mocks",
        "role_vars": "ringfleet.converge.inventory",
        "render_inventory": "ringfleet.converge.inventory",
        "static_outputs": "ringfleet.providers.outputs",
        "node_image_tag": "ringfleet.providers.docker.images",
        "load_job": "ringfleet.jobs.spec",
        "render_job": "ringfleet.jobs.render",
    },
}


def layout(base: Path) -> dict[str, str]:
    return LAYOUTS["flat" if (base / "ringfleet/inventory.py").is_file() else "packages"]


def _record(root: str, envs: list[str]) -> dict:
    """What one revision's code makes of its files: resources, software, job renders."""

    base = Path(root)
    modules = layout(base)

    def name(attr: str) -> Any:
        module = importlib.import_module(modules[attr])
        # An editable install of the running ringfleet finds a submodule the revision
        # lacks in the running tree: that would be the head's code, not the revision's.
        if not Path(module.__file__ or "").resolve().is_relative_to(base.resolve()):
            raise ImportError(f"{modules[attr]} is not in the revision")
        return getattr(module, attr)

    def problem(exc: BaseException) -> str:
        line = getattr(exc, "line", None)
        if callable(line):
            return line()
        text = str(exc).strip().splitlines()
        return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__

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
                spec = name("load_spec")(env, base)
            except Exception as exc:
                entry["spec_error"] = problem(exc)
                continue
            entry["provider"] = spec.cluster.provider
            entry["pool_order"] = list(spec.pools)
            outputs = None
            try:
                run = name("run_program")(spec, base)
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
                role_vars, static_outputs = name("role_vars"), name("static_outputs")
                if outputs is None:
                    outputs = static_outputs(spec)
                entry["pools"] = {
                    pool_name: {
                        "software": pool["software"],
                        "role_vars": role_vars(pool["software"]),
                    }
                    for pool_name, pool in outputs["pools"].items()
                }
            except Exception as exc:
                entry["software_error"] = problem(exc)
            if spec.cluster.provider == "docker":
                try:
                    node_image_tag = name("node_image_tag")
                    pools = spec.pools.items()
                    entry["images"] = {n: node_image_tag(spec, p, base) for n, p in pools}
                except Exception as exc:
                    entry["image_error"] = problem(exc)
            try:
                entry["inventory"] = name("render_inventory")(outputs, spec.display)
            except Exception as exc:
                entry["inventory_error"] = problem(exc)
            jobs: dict = {}
            entry["jobs"] = jobs
            for path in sorted((base / "jobs").glob("*.yaml")):
                try:
                    load_job, render_job = name("load_job"), name("render_job")
                    rendered = render_job(spec, load_job(path, spec, base), base)
                    jobs[f"jobs/{path.name}"] = {
                        "hostfile": rendered.text("hostfile"),
                        "script": rendered.text("script"),
                    }
                except Exception as exc:
                    jobs[f"jobs/{path.name}"] = {"error": problem(exc)}
    return result


if __name__ == "__main__":
    # Run as a script, sys.path[0] is this file's directory in the running ringfleet:
    # the revision's directory (the working directory, argv[1]) takes its place.
    sys.path[0] = str(Path(sys.argv[1]).resolve())
    sys.stdout.write(json.dumps(_record(sys.argv[1], sys.argv[2:]), default=str))
