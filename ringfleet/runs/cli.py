"""`ringfleet runs`, `logs`, `cancel`, `tensorboard`: seeing runs, registered onto the app.

The CLI parses and prints; the work is in this package's other modules.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from ringfleet.errors import RingfleetError
from ringfleet.spec import load_spec

EnvArg = Annotated[str, typer.Argument(help="Environment: reads Pulumi.<ENV>.yaml")]
RunArg = Annotated[str, typer.Argument(help="Run id, as `ringfleet runs ENV` lists it")]


def register(app: typer.Typer, console: Console) -> None:
    """Add the run-viewing commands to `app`."""

    @app.command()
    def runs(
        env: EnvArg,
        run: Annotated[
            str | None, typer.Argument(help="One run's id: its status, metrics, throughput")
        ] = None,
        as_json: Annotated[
            bool, typer.Option("--json", help="Records as a JSON list, newest first")
        ] = False,
        plot: Annotated[
            Path | None, typer.Option("--plot", metavar="FILE.png", help="Training curves PNG")
        ] = None,
        html: Annotated[
            Path | None,
            typer.Option("--html", metavar="FILE", help="Self-contained HTML report of RUN"),
        ] = None,
        prune: Annotated[
            bool, typer.Option("--prune", help="Remove runs older than --older-than")
        ] = False,
        older_than: Annotated[
            str | None, typer.Option("--older-than", metavar="AGE", help="With --prune: 30d, 12h")
        ] = None,
    ) -> None:
        """List ENV's runs (newest first), or show one RUN; --prune removes old ones."""
        from ringfleet.runs.access import any_node
        from ringfleet.runs.record import require_run_id

        if run is not None:
            require_run_id(run)
        if (plot or html) and run is None:
            raise RingfleetError("--plot/--html", "need a RUN id")
        if prune != (older_than is not None):
            raise RingfleetError("--prune", "goes with --older-than AGE (e.g. 30d)")
        spec = load_spec(env)
        if prune:
            _prune(spec, console, older_than or "")
        elif run is None:
            _list(spec, as_json)
        else:
            _show(spec, any_node(spec, "runs"), run, as_json, plot, html, console)

    @app.command()
    def tensorboard(
        env: EnvArg,
        run_ids: Annotated[
            list[str] | None, typer.Argument(metavar="[RUN]...", help="Runs to show; default all")
        ] = None,
        port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 6006,
    ) -> None:
        """Serve the runs' TensorBoard events on this machine's 127.0.0.1:PORT; Ctrl-C stops it."""
        from ringfleet.runs.access import any_node
        from ringfleet.runs.record import require_run_id
        from ringfleet.runs.tensorboard import serve

        for run_id in run_ids or []:
            require_run_id(run_id)
        spec = load_spec(env)
        say = lambda line: console.print(line, highlight=False)  # noqa: E731
        serve(spec, any_node(spec, "tensorboard"), run_ids or [], port, say)

    @app.command()
    def logs(
        env: EnvArg,
        run: RunArg,
        follow: Annotated[
            bool, typer.Option("--follow", "-f", help="Keep printing until the run ends")
        ] = False,
        verbose: Annotated[
            bool, typer.Option("--verbose", help="Every line; banners not folded")
        ] = False,
    ) -> None:
        """Print RUN's output from its record (rank-tagged); -f follows a running one."""
        from ringfleet.runs import follow as runlogs
        from ringfleet.runs.access import any_node
        from ringfleet.runs.record import require_run_id

        require_run_id(run)
        spec = load_spec(env)
        write = lambda line: console.print(line, highlight=False, markup=False)  # noqa: E731
        runlogs.follow(spec, any_node(spec, "logs"), run, follow, verbose, write)

    @app.command()
    def cancel(env: EnvArg, run: RunArg) -> None:
        """Stop RUN: every rank on every node; its record says cancelled."""
        from ringfleet.providers import for_spec
        from ringfleet.runs import follow as runlogs
        from ringfleet.runs.access import any_node
        from ringfleet.runs.record import require_run_id

        require_run_id(run)
        spec = load_spec(env)
        write = lambda line: console.print(line, highlight=False, markup=False)  # noqa: E731
        runlogs.cancel(spec, any_node(spec, "cancel"), for_spec(spec).nodes(), run, write)


def _list(spec, as_json: bool) -> None:
    from ringfleet.runs.access import list_runs
    from ringfleet.runs.record import with_defaults

    # Newest first by start time (run ids begin with the job's name, not the time).
    records = sorted(
        list_runs(spec), key=lambda r: (r.get("started") or "", r["run_id"]), reverse=True
    )
    if as_json:
        sys.stdout.write(json.dumps([with_defaults(r) for r in records], indent=2) + "\n")
        return
    # Plain columns: run ids stay whole and greppable at any terminal width.
    header = ("RUN", "EXIT", "SECONDS", "RANKS", "RECOVERIES", "STARTED", "REASON")
    rows = [
        tuple(str(r.get(k)) for k in ("run_id", "exit_code", "seconds", "ranks"))
        + (str(r.get("recoveries") or 0), str(r.get("started")), str(r.get("reason")))
        for r in records
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [c.ljust(w) for c, w in zip(row, widths, strict=False)]
        sys.stdout.write("  ".join([*cells, row[-1]]) + "\n")
    if not rows:
        sys.stdout.write(f"no runs yet on {spec.cluster.storage.mount}/runs\n")


def _show(spec, node, run_id, as_json, plot, html, console) -> None:
    from ringfleet.runs.access import read_record
    from ringfleet.runs.report import load_report, text

    report = load_report(spec, node, read_record(spec, node, run_id))
    if as_json:
        out = {**report.record, "metrics": report.metrics, "throughput": report.throughput}
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
    else:
        sys.stdout.write(text(report))
    if plot or html:
        from ringfleet.runs.plot import html_report, png

        image = png(report)
        if plot:
            plot.write_bytes(image)
            console.print(f"wrote {plot}", highlight=False)
        if html:
            html.write_text(html_report(report, image), encoding="utf-8")
            console.print(f"wrote {html}", highlight=False)


def _prune(spec, console, older_than: str) -> None:
    from ringfleet.runs.access import any_node
    from ringfleet.runs.prune import human_bytes, parse_age, prune

    age = parse_age(older_than)
    removed, freed = prune(spec, any_node(spec, "runs --prune"), age)
    for run_id in removed:
        console.print(f"removed {run_id}", highlight=False)
    console.print(
        f"pruned {len(removed)} run(s) older than {older_than}; freed {human_bytes(freed)}",
        highlight=False,
    )
