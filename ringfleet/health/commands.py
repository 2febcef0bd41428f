"""`ringfleet check ENV`, and the fault-tolerance options of `ringfleet run`.

Registered onto the CLI's app by `register`, so cli.py only names them.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

# An SSH host that stops answering mid-run gets this long to answer again.
DEFAULT_HEAL_TIMEOUT = 300.0

SkipHealth = Annotated[
    bool,
    typer.Option("--skip-health", help="Start ranks without the health gate (experts)"),
]
HealTimeout = Annotated[
    float,
    typer.Option(
        "--heal-timeout",
        min=0,
        metavar="SECONDS",
        help="With job restarts: how long a lost SSH host gets to answer again",
    ),
]
KeepOnFailure = Annotated[
    bool,
    typer.Option(
        "--keep-on-failure",
        help="Leave a failed run's processes and files in place for debugging; says where",
    ),
]


def register(app: typer.Typer, console: Console) -> None:
    """Add `check` to `app`."""

    @app.command()
    def check(env: Annotated[str, typer.Argument(help="Environment: reads Pulumi.<ENV>.yaml")]):
        """Run the health gate on every node of ENV; exit 1 with one line per failure.

        The gate `ringfleet run` runs before any rank starts: reachable, the job user's
        strict-host-key SSH from the first node, shared storage, `import horovod`,
        free disk, and the node's entry in ringfleet.lock when there is one.
        """
        from ringfleet.health.gate import read_env_lock, run_gate
        from ringfleet.providers import for_spec
        from ringfleet.spec import load_spec, project_root

        spec = load_spec(env)
        provider = for_spec(spec)
        provider.require_run()
        nodes = provider.nodes()
        lock = read_env_lock(project_root(), env)
        report = run_gate(spec, nodes, next(iter(nodes)), lock)
        for failure in report.failures:
            console.print(failure.line(), markup=False, highlight=False)
        verdict = "passed" if report.passed else f"{len(report.failures)} failure(s)"
        console.print(
            f"check {env}: {len(nodes)} node(s), health gate {verdict} in {report.seconds:.1f} s",
            markup=False,
            highlight=False,
        )
        if not report.passed:
            raise typer.Exit(1)
