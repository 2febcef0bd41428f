"""The `ringfleet` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ringfleet.errors import RingfleetError
from ringfleet.spec import load_spec, project_root

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Reproducible TensorFlow + Horovod clusters from one typed spec.",
)
console = Console()
err_console = Console(stderr=True)

EnvArg = Annotated[str, typer.Argument(help="Environment: reads Pulumi.<ENV>.yaml")]


@app.command()
def validate(env: EnvArg) -> None:
    """Check Pulumi.<ENV>.yaml against the spec and the compatibility table."""
    spec = load_spec(env)
    c = spec.cluster
    console.print(f"{spec.display}: ok ({c.provider}, cluster {c.name})")
    for pool in spec.pools.values():
        kind = (
            f"{pool.pool.accelerator.count}x {pool.pool.accelerator.model}"
            if pool.is_gpu
            else (f"{pool.cores} cores")
        )
        console.print(
            f"  pool {pool.name}: {len(pool.nodes)} node(s), {kind}, "
            f"{pool.slots} slot(s) per node, profile {pool.profile.name}"
        )


@app.command()
def inventory(
    env: EnvArg,
    outputs: Annotated[
        Path | None,
        typer.Option("--outputs", help="Stack outputs JSON (`pulumi stack output --json`)"),
    ] = None,
    write: Annotated[
        bool, typer.Option("--write", help="Also write inventories/<ENV>/hosts.yml")
    ] = False,
) -> None:
    """Print the Ansible inventory of ENV, from stack outputs or (static envs) the spec."""
    from ringfleet.inventory import dump_inventory, load_outputs, render_inventory, write_inventory
    from ringfleet.outputs import static_outputs

    spec = load_spec(env)
    if outputs is not None:
        data = load_outputs(outputs)
        where = str(outputs)
    elif spec.cluster.provider == "static":
        data = static_outputs(spec)
        where = spec.display
    else:
        raise RingfleetError(
            "inventory",
            f"env {env!r} is provider {spec.cluster.provider}: pass --outputs FILE "
            "(from `pulumi stack output --json`), or run `ringfleet up` first",
        )
    inv = render_inventory(data, where)
    if write:
        path = write_inventory(project_root(), env, inv)
        err_console.print(f"wrote {path}")
    sys.stdout.write(dump_inventory(inv))


@app.command()
def up(
    env: EnvArg,
    no_converge: Annotated[
        bool, typer.Option("--no-converge", help="Create nodes but do not run the roles")
    ] = False,
) -> None:
    """Create or update ENV's nodes to match the spec, then converge them with site.yml."""
    from ringfleet import local

    spec = load_spec(env)
    console.print(f"up {env}: cluster {spec.cluster.name} ({spec.cluster.provider})")
    report = local.up(spec, project_root(), console=err_console, converge_nodes=not no_converge)
    parts = [
        f"{len(getattr(report, k))} {k}"
        for k in ("created", "recreated", "started", "removed", "unchanged")
        if getattr(report, k)
    ]
    changed = report.converge.total_changed if report.converge else "skipped"
    console.print(
        f"up {env}: ready in {report.seconds:.0f} s; nodes: {', '.join(parts) or 'none'}; "
        f"ansible changed={changed}; inventory {report.inventory}",
        highlight=False,
    )


@app.command()
def down(
    env: EnvArg,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the shared volume and local state")
    ] = False,
) -> None:
    """Remove ENV's nodes and network; shared data is kept unless --purge."""
    from ringfleet import local

    spec = load_spec(env)
    removed = local.down(spec, project_root(), purge=purge, console=err_console)
    console.print(f"down {env}: removed {len(removed)} node(s)")


@app.command()
def status(env: EnvArg) -> None:
    """List ENV's nodes with pool, state, IP and image; exit 1 unless all are running."""
    from rich.table import Table

    from ringfleet import local

    spec = load_spec(env)
    rows = local.status(spec)
    table = Table("node", "pool", "state", "ip", "image", title=f"{spec.cluster.name} ({env})")
    for r in rows:
        table.add_row(r.name, r.pool, r.state, r.ip, r.image)
    console.print(table)
    if any(r.state != "running" for r in rows):
        raise typer.Exit(1)


@app.command()
def render(
    env: EnvArg,
    job: Annotated[Path, typer.Argument(help="Job spec, e.g. jobs/digits.yaml")],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", help="hostfile, script, sbatch or mpijob; default: hostfile+script"
        ),
    ] = "",
) -> None:
    """Render JOB for ENV: the hostfile and launch script, or a Slurm / MPIJob form."""
    from ringfleet.jobs import load_job
    from ringfleet.launch import render_job

    spec = load_spec(env)
    rendered = render_job(spec, load_job(job, spec))
    if fmt:
        sys.stdout.write(rendered.text(fmt))
        return
    sys.stdout.write(rendered.text("hostfile"))
    sys.stdout.write("\n")
    sys.stdout.write(rendered.text("script"))


@app.command()
def run(
    env: EnvArg,
    job: Annotated[Path, typer.Argument(help="Job spec, e.g. jobs/digits.yaml")],
) -> None:
    """Launch JOB on ENV's nodes; stream per-rank output; exit with the job's exit code.

    124 means the job's timeout fired, 125 that a node was lost mid-job.
    """
    from ringfleet.run import run_job

    spec = load_spec(env)
    result = run_job(spec, job, console=console)
    raise typer.Exit(result.exit_code)


@app.command()
def runs(env: EnvArg) -> None:
    """List ENV's past runs recorded on shared storage."""
    from rich.table import Table

    from ringfleet.run import list_runs

    spec = load_spec(env)
    table = Table("run", "exit", "reason", "seconds", "ranks", "started", title=f"runs of {env}")
    for r in list_runs(spec):
        table.add_row(
            str(r.get("run_id")),
            str(r.get("exit_code")),
            str(r.get("reason")),
            str(r.get("seconds")),
            str(r.get("ranks")),
            str(r.get("started")),
        )
    console.print(table)


def main() -> None:
    """Entry point: user errors are one line on stderr and exit code 2."""
    try:
        app()
    except RingfleetError as exc:
        err_console.print(exc.line(), markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("ringfleet: interrupted", markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
