"""`ringfleet images list`, registered onto the app as a command group.

The CLI parses and prints; the catalog is in catalog.py, the archive in archive.py.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

EnvOption = Annotated[
    str,
    typer.Option(
        "--env",
        help="Whose image: the tag hashes this env's base image, job user and GPU stack too",
    ),
]
# Decimal gigabytes, as the docs give image sizes (3.09 GB for tf2.15).
GB = 1e9


def register(app: typer.Typer, console: Console) -> None:
    """Add the `images` command group to `app`."""
    images = typer.Typer(no_args_is_help=True, help="The node image catalog.")
    app.add_typer(images, name="images")

    @images.command("list")
    def list_images(
        env: EnvOption = "local",
        as_json: Annotated[bool, typer.Option("--json", help="The rows as a JSON list")] = False,
    ) -> None:
        """Every profile's node image for ENV: tag, built here?, size, date, versions inside."""
        import dataclasses
        import json

        from rich.table import Table

        from ringfleet.images.catalog import catalog, versions_text
        from ringfleet.providers.docker.engine import docker_client
        from ringfleet.spec import load_spec, project_root

        spec = load_spec(env)
        entries = catalog(spec, project_root(), docker_client())
        if as_json:
            print(json.dumps([dataclasses.asdict(e) for e in entries], indent=2))
            return
        table = Table(
            "profile",
            "image",
            "built",
            "size",
            "built at",
            "versions (image record)",
            title=f"node images of env {env}",
        )
        for e in entries:
            size = f"{e.size_bytes / GB:.2f} GB" if e.size_bytes else "-"
            table.add_row(
                e.profile,
                e.tag,
                "yes" if e.built else "no",
                size,
                e.built_at or "-",
                versions_text(e.versions) if e.built else "-",
            )
        console.print(table)
