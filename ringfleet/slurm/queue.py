"""`ringfleet queue ENV`: Slurm's queue of a `scheduler: slurm` cluster, from its controller."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.spec import ClusterSpec, load_spec

EnvArg = Annotated[str, typer.Argument(help="Environment: reads Pulumi.<ENV>.yaml")]
# Job id, partition, name, user, state, time used, nodes, and why a job waits.
SQUEUE_FORMAT = "%.8i %.9P %.20j %.8u %.10T %.10M %.6D %R"


def squeue_argv() -> list[str]:
    return ["squeue", "-o", SQUEUE_FORMAT]


def queue_text(spec: ClusterSpec) -> str:
    """squeue's table, run on the controller; one-line errors without Slurm or a controller."""
    from ringfleet.providers import for_spec

    controller = spec.slurm_controller
    if controller is None:
        raise RingfleetError(
            f"{spec.display}: cluster.scheduler", "no scheduler; set it to slurm", "none"
        )
    node = for_spec(spec).nodes([controller])[controller]
    code, output = node.run(squeue_argv(), check=False)
    if code != 0:
        raise RuntimeFailure(f"queue {spec.env}: squeue on {controller}", "failed", output.strip())
    return output


def register(app: typer.Typer, console: Console) -> None:
    """Add `queue` to the command line."""

    @app.command()
    def queue(env: EnvArg) -> None:
        """Show Slurm's queue of ENV (a cluster with `scheduler: slurm`)."""
        console.print(queue_text(load_spec(env)), end="", highlight=False, markup=False)
