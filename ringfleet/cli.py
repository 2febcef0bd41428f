"""The `ringfleet` command line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ringfleet.envlock import DEFAULT_LOCK_TIMEOUT
from ringfleet.errors import RingfleetError
from ringfleet.health.commands import (
    DEFAULT_HEAL_TIMEOUT,
    HealTimeout,
    KeepOnFailure,
    SkipHealth,
    register,
)
from ringfleet.images.cli import register as register_images
from ringfleet.runs.cli import register as register_run_views
from ringfleet.slurm.queue import register as register_queue
from ringfleet.spec import load_spec, project_root

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Reproducible TensorFlow + Horovod clusters from one typed spec.",
)
console = Console(soft_wrap=True)
err_console = Console(stderr=True, soft_wrap=True)

EnvArg = Annotated[str, typer.Argument(help="Environment: reads Pulumi.<ENV>.yaml")]
LockTimeout = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        min=0,
        metavar="SECONDS",
        help="Wait this long for another command to finish with ENV; 0 refuses at once",
    ),
]


def _env_lock(env: str, timeout: float):
    """The env's exclusive lock (ringfleet.envlock); the wait is announced on stderr."""
    from ringfleet.envlock import env_lock

    return env_lock(
        project_root(),
        env,
        timeout,
        say=lambda line: err_console.print(f"ringfleet: {line}", markup=False, highlight=False),
    )


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
    from ringfleet.converge.apply import inventory_from_outputs
    from ringfleet.converge.inventory import dump_inventory, write_inventory

    load_spec(env)
    inv = inventory_from_outputs(env, outputs)
    if write:
        path = write_inventory(project_root(), env, inv)
        err_console.print(f"wrote {path}")
    sys.stdout.write(dump_inventory(inv))


def _say(line: str) -> None:
    console.print(line, highlight=False)


@app.command()
def up(
    env: EnvArg,
    no_converge: Annotated[
        bool, typer.Option("--no-converge", help="Create nodes but do not run the roles")
    ] = False,
    force_converge: Annotated[
        bool,
        typer.Option(
            "--converge", help="Run all of site.yml on every node, even when nothing changed"
        ),
    ] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Ansible check mode with diffs: show what would change, change nothing"
        ),
    ] = False,
    limit: Annotated[
        list[str] | None,
        typer.Option("--limit", metavar="HOST", help="Converge only this node (repeatable)"),
    ] = None,
    lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT,
) -> None:
    """Create or update ENV's nodes to match the spec, then converge them with site.yml.

    docker envs run on this machine's Docker engine; aws envs go through Pulumi's
    Automation API (needs the pulumi CLI); static envs create nothing and converge.
    Before touching hosts someone else owns: --check, then --limit HOST.
    """
    from ringfleet.providers import UpOptions, for_spec

    spec = load_spec(env)
    provider = for_spec(spec)
    names = [name for item in limit or [] for name in item.split(",") if name]
    known = {node.name for node in spec.nodes}
    for name in names:
        if name not in known:
            raise RingfleetError(
                "--limit",
                f"no node of that name in {spec.display} ({', '.join(sorted(known))})",
                name,
            )
    if check and no_converge:
        raise RingfleetError("--check", "checks a converge; it cannot go with --no-converge")
    options = UpOptions(
        converge=not no_converge,
        force_converge=force_converge,
        check=check,
        limit=names or None,
        console=err_console,
        say=_say,
    )
    with _env_lock(env, lock_timeout):
        console.print(f"up {env}: cluster {spec.cluster.name} ({provider.name})")
        provider.up(project_root(), options)
        if spec.slurm_controller and options.converge and not check:
            from ringfleet.slurm.service import release_held_nodes

            controller = provider.nodes([spec.slurm_controller])[spec.slurm_controller]
            for name in release_held_nodes(controller):
                _say(f"up {env}: slurm node {name} was held by a job it lost; back in service")


@app.command()
def down(
    env: EnvArg,
    purge: Annotated[
        bool, typer.Option("--purge", help="Also delete the shared volume and local state")
    ] = False,
    lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT,
) -> None:
    """Remove ENV's nodes (docker: shared data kept unless --purge; aws: pulumi destroy)."""
    from ringfleet.providers import UpOptions, for_spec

    spec = load_spec(env)
    with _env_lock(env, lock_timeout):
        for_spec(spec).down(project_root(), purge, UpOptions(console=err_console, say=_say))


@app.command()
def preview(
    envs: Annotated[
        list[str] | None,
        typer.Argument(help="Environments; default: every Pulumi.*.yaml env in either revision"),
    ] = None,
    base: Annotated[
        str, typer.Option("--base", help="Git revision to compare the working tree with")
    ] = "HEAD",
    output: Annotated[
        Path | None, typer.Option("--output", help="Write the Markdown report here, not stdout")
    ] = None,
    allow_replace: Annotated[
        bool,
        typer.Option("--allow-replace", help="Exit 0 even if protected or stateful resources go"),
    ] = False,
    live: Annotated[
        bool,
        typer.Option("--live", help="Infrastructure from the real `pulumi preview --diff`"),
    ] = False,
) -> None:
    """Report what the working tree changes against --base: machines, node software, jobs.

    One Markdown report (docs/preview.md). Exit 1 when a protected or stateful
    resource is replaced or removed (unless --allow-replace) or the head cannot be
    evaluated; exit 2 on a bad revision or env.
    """
    from ringfleet.preview.report import preview as build_preview

    report = build_preview(project_root(), base, envs or [], live=live)
    if output is None:
        sys.stdout.write(report.text)
    else:
        output.write_text(report.text, encoding="utf-8")
        err_console.print(f"wrote {output}", highlight=False, soft_wrap=True)
    code = report.exit_code(allow_replace)
    if code:
        for line in report.unchecked:
            err_console.print(
                f"ringfleet: preview: cannot check {line}", markup=False, soft_wrap=True
            )
        if not allow_replace:
            for line in report.flagged:
                err_console.print(
                    f"ringfleet: preview: flagged {line}", markup=False, soft_wrap=True
                )
        raise typer.Exit(code)


@app.command()
def trust(
    env: EnvArg,
    yes: Annotated[
        bool, typer.Option("--yes", help="Write the host keys without asking (scripts)")
    ] = False,
) -> None:
    """Scan ENV's hosts' SSH keys, print each fingerprint, write ssh.known_hosts on consent.

    Without a terminal to ask on and without --yes nothing is written (exit 2).
    """
    from ringfleet.nodes.trust import trust_hosts
    from ringfleet.providers import for_spec
    from ringfleet.providers.sshreach import known_hosts_file

    spec = load_spec(env)
    provider = for_spec(spec)
    targets = provider.trust_targets()
    vouch = provider.host_key_voucher()
    known = known_hosts_file(spec)
    if yes:
        confirm = lambda: True  # noqa: E731
    elif sys.stdin.isatty():
        confirm = lambda: typer.confirm(f"write these host keys to {known}?")  # noqa: E731
    else:
        confirm = None
    port = spec.cluster.ssh.port
    hosts = [(t.name, t.address, port) for t in targets]
    result = trust_hosts(hosts, known, confirm, _say, vouch=vouch)
    if result.written:
        _say(f"trust {env}: wrote {known}")
    elif all(state == "unchanged" for state in result.status.values()):
        _say(f"trust {env}: every host key is already in {known}")
    else:
        _say(f"trust {env}: nothing written")
        raise typer.Exit(1)


@app.command()
def status(env: EnvArg) -> None:
    """List ENV's nodes with pool, state, IP and image; exit 1 unless all are running."""
    from rich.table import Table

    from ringfleet.providers import for_spec

    spec = load_spec(env)
    rows = for_spec(spec).status()
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
            "--format",
            help="hostfile, script, sbatch, mpijob, or wrapper (the per-rank wrapper); "
            "default: hostfile+script",
        ),
    ] = "",
) -> None:
    """Render JOB for ENV: the hostfile and launch script, or a Slurm / MPIJob form."""
    from ringfleet.jobs.render import render_job
    from ringfleet.jobs.spec import load_job

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
    timeline: Annotated[
        bool,
        typer.Option(
            "--timeline",
            help="Write a Horovod timeline (HOROVOD_TIMELINE) to timeline.json in the run "
            "record; open it in chrome://tracing or https://ui.perfetto.dev",
        ),
    ] = False,
    autotune: Annotated[
        bool,
        typer.Option(
            "--autotune",
            help="Turn on Horovod autotuning (HOROVOD_AUTOTUNE=1); its log goes to "
            "autotune.csv in the run record",
        ),
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", help="Every rank's every line, TensorFlow INFO included")
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Return once the ranks started; see `logs`, `cancel`")
    ] = False,
    skip_health: SkipHealth = False,
    heal_timeout: HealTimeout = DEFAULT_HEAL_TIMEOUT,
    keep_on_failure: KeepOnFailure = False,
) -> None:
    """Launch JOB on ENV's nodes; stream per-rank output; exit with the job's exit code.

    124 means the job's timeout fired, 125 that a node was lost mid-job or failed the
    health gate, 130 that Ctrl-C or SIGTERM stopped it (every rank is stopped and the
    record written). With the job's `restarts`, a lost node is healed and the job resumed.
    """
    from ringfleet.jobs.attempts import Policy
    from ringfleet.jobs.run import run_job

    spec = load_spec(env)
    policy = Policy(False, False, skip_health, heal_timeout, keep_on_failure)  # job fills restarts
    result = run_job(spec, job, console, timeline, autotune, policy, verbose=verbose, detach=detach)
    raise typer.Exit(result.exit_code)


@app.command("lock")
def lock_nodes(env: EnvArg, lock_timeout: LockTimeout = DEFAULT_LOCK_TIMEOUT) -> None:
    """Record each pool's node software in inventories/<ENV>/ringfleet.lock.

    Per pool: OS release, kernel, Debian packages and the node venv's Python
    packages. Commit it for long-lived nodes (docs/verify.md). Exit 1, writing
    nothing, when nodes of one pool differ.
    """
    import time

    started = time.monotonic()
    spec = load_spec(env)  # an unknown env or a broken spec stops here, before any node is read
    with _env_lock(env, lock_timeout):
        _lock(spec, started)


def _lock(spec, started: float) -> None:
    import time

    from ringfleet.checks import lock as lockmod
    from ringfleet.checks.inventory import require_inventory
    from ringfleet.checks.verify import Report as VerifyReport
    from ringfleet.checks.verify import print_report, rel
    from ringfleet.providers import for_spec

    env = spec.env
    root = project_root()
    path = lockmod.lock_path(root, env)
    previous = lockmod.read_lock(path, rel(path, root))
    # A missing inventory is the user's next step (`up`), said before any provider is
    # asked for its nodes (which, for local, needs a running Docker engine).
    require_inventory(root, env)
    read = lockmod.lock_env(root, env, for_spec(spec).nodes(), previous)
    if read.drifts:
        print_report(VerifyReport(env, drift=read.drifts, drift_against="pool peers"), console)
        err_console.print(
            f"ringfleet: lock: nodes of a pool differ, so {rel(path, root)} was not written; "
            "converge them (`ringfleet up`) and lock again",
            markup=False,
        )
        raise typer.Exit(1)
    lockmod.write_lock(path, read.lock)
    for pool, nodes in read.pools.items():
        f = read.facts[nodes[0]]
        console.print(
            f"  pool {pool}: {len(nodes)} node(s); {f.os}, kernel {f.kernel}; "
            f"{len(f.debian)} Debian and {len(f.python)} Python packages",
            highlight=False,
        )
    for pool in read.kept:
        console.print(f"  pool {pool}: no nodes now; its locked entry is kept", highlight=False)
    console.print(
        f"lock {env}: wrote {rel(path, root)} in {time.monotonic() - started:.0f} s",
        highlight=False,
    )


@app.command("verify")
def verify_nodes(
    env: EnvArg,
    perf: Annotated[
        bool, typer.Option("--perf", help="Also run the benchmarks and compare with baselines")
    ] = False,
    tolerance: Annotated[
        float, typer.Option("--tolerance", help="Fail a benchmark below this fraction of baseline")
    ] = 0.8,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Write a Markdown summary (PR comment) here")
    ] = None,
    suite: Annotated[
        bool, typer.Option("--suite/--no-suite", help="Run the testinfra node checks")
    ] = True,
    record_baseline: Annotated[
        bool, typer.Option("--record-baseline", help="With --perf: record results as baselines")
    ] = False,
) -> None:
    """Check ENV's nodes: testinfra suite, drift from ringfleet.lock, and with --perf the gate.

    Exit 0 all good; 1 a check failed, a node drifted or a benchmark fell below
    tolerance; 2 bad input (env, inventory, lock, baselines, tolerance).
    """
    from ringfleet.checks.verify import markdown as render_markdown
    from ringfleet.checks.verify import print_report, verify

    spec = load_spec(env)
    report, _ = verify(
        spec,
        project_root(),
        perf=perf,
        tolerance=tolerance,
        suite=suite,
        record_baseline=record_baseline,
        console=console,
    )
    print_report(report, console)
    if markdown is not None:
        markdown.write_text(render_markdown(report), encoding="utf-8")
        err_console.print(f"wrote {markdown}", highlight=False, soft_wrap=True)
    if not report.passed:
        raise typer.Exit(1)


register_run_views(app, console)
register_queue(app, console)
register(app, console)
register_images(app, console)


def main() -> None:
    """Entry point: errors are one line on stderr; the exit code is the error's own
    (2 bad input, 3 a runtime failure, 75 env busy; README "Exit codes")."""
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
