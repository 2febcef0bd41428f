"""`ringfleet images list|lock|build|export|import`, registered onto the app as a command group.

The CLI parses and prints; the catalog is in catalog.py, the archive in archive.py, an added
profile's lock in lock.py.
"""

from __future__ import annotations

from pathlib import Path
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
    images = typer.Typer(
        no_args_is_help=True, help="The node image catalog: list, lock, build, export, import."
    )
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

    @images.command("lock")
    def lock(
        name: Annotated[str, typer.Argument(help="Added profile: profiles/NAME.yaml")],
    ) -> None:
        """Resolve an added profile's pip list on its parent's lock into profiles/NAME.txt."""
        from ringfleet.images.lock import lock_profile
        from ringfleet.spec import project_root

        root = project_root()
        profile = _added(root, name)
        result = lock_profile(profile, root)
        added = ", ".join(f"{p.name}=={p.version}" for p in result.added) or "nothing new"
        console.print(
            f"lock {name}: {len(result.added)} package(s) on {profile.extends}'s lock "
            f"({added}) -> {result.path.relative_to(root)} in {result.seconds:.1f} s",
            highlight=False,
        )

    @images.command("build")
    def build(
        name: Annotated[
            str, typer.Argument(help="Added profile (profiles/NAME.yaml) or built-in, e.g. tf2.15")
        ],
        env: EnvOption = "local",
    ) -> None:
        """Build an added profile's image on its parent's image (only what it adds runs), or
        bake a built-in profile's image with the roles; a cached image is kept."""
        import dataclasses

        from ringfleet import compat
        from ringfleet.images.build import build_added
        from ringfleet.images.catalog import find_profile, profile_pool
        from ringfleet.providers.docker.engine import docker_client
        from ringfleet.providers.docker.images import ensure_node_image
        from ringfleet.spec import load_spec, project_root

        spec, root, client = load_spec(env), project_root(), docker_client()
        if name in {p.name for p in compat.PROFILES}:
            pool, via = profile_pool(spec, find_profile(name))
            tag = ensure_node_image(client, spec, pool, root, console)
            console.print(f"build {name}: {tag}, the image of env {env}'s {via}", highlight=False)
            return
        profile = _added(root, name)
        pool, via = profile_pool(spec, find_profile(profile.extends))
        parent_pool = dataclasses.replace(pool, added=None)
        parent = ensure_node_image(client, spec, parent_pool, root, console)
        built = build_added(client, dataclasses.replace(pool, added=profile), root, parent)
        how = "cached" if built.cached else f"built in {built.seconds:.0f} s"
        console.print(
            f"build {name}: {built.tag} ({how}), on {built.parent}, the image of env {env}'s {via}",
            highlight=False,
        )

    @images.command("export")
    def export(
        profile: Annotated[str, typer.Argument(help="Profile, e.g. tf2.15")],
        output: Annotated[
            Path,
            typer.Option("-o", "--output", help="Archive file (--wheels, --apt: a directory)"),
        ],
        env: EnvOption = "local",
        wheels: Annotated[
            bool,
            typer.Option(
                "--wheels",
                help="Write a wheelhouse instead: the image's Horovod wheel (in the roles' "
                "shared-storage layout), its Python lock and every wheel it pins "
                "(software.wheelhouse)",
            ),
        ] = False,
        apt: Annotated[
            bool,
            typer.Option(
                "--apt",
                help="Write the image's installed Debian packages as a local repository "
                "instead (software.apt_repo)",
            ),
        ] = False,
    ) -> None:
        """Write PROFILE's node image for ENV and its record into one archive (docker save)."""
        from ringfleet.errors import RingfleetError
        from ringfleet.images.archive import archive_record, export_image
        from ringfleet.images.catalog import find_profile, profile_pool
        from ringfleet.images.record import read_record
        from ringfleet.providers.docker.baseimage import find_image
        from ringfleet.providers.docker.engine import docker_client
        from ringfleet.providers.docker.images import node_image_tag
        from ringfleet.spec import load_spec, project_root

        if wheels and apt:
            raise RingfleetError("--apt", "one directory per export: give --wheels or --apt")
        spec, root = load_spec(env), project_root()
        pool, via = profile_pool(spec, find_profile(profile))
        tag = node_image_tag(spec, pool, root)
        client = docker_client()
        image = find_image(client, tag)
        if image is None:
            raise RingfleetError(
                profile,
                f"image {tag} is not built here; `ringfleet up {env}` "
                "bakes it (or import an archive of it)",
            )
        if wheels:
            _export_wheels(console, client, profile, tag, output)
            return
        if apt:
            _export_apt(console, client, profile, tag, output)
            return
        record = archive_record(spec, pool, root, tag, image, read_record(client, tag))
        inputs = record["inputs"]
        g = pool.gpu
        gpu = f"GPU stack {g.driver}/{g.cuda}/{g.nccl}" if g else "no GPU stack"
        console.print(
            f"export {profile}: {tag}, the image of env {env}'s {via} (its tag hashes "
            f"base {inputs['base']}, job user {inputs['ssh_user']}, {gpu})",
            highlight=False,
        )
        moved = export_image(client, record, output)
        console.print(
            f"export {profile}: wrote {output}, {moved.size_bytes / GB:.2f} GB in "
            f"{moved.seconds:.0f} s",
            highlight=False,
        )

    @images.command("import")
    def import_(
        archive: Annotated[Path, typer.Argument(help="Archive written by `images export`")],
    ) -> None:
        """Load a node image archive after checking its record; `up` then uses it, no bake."""
        from ringfleet.images.archive import check_archive, import_image
        from ringfleet.providers.docker.engine import docker_client

        record = check_archive(archive)  # a foreign or damaged file is refused before Docker
        moved = import_image(docker_client(), archive, record)
        r = moved.record
        console.print(
            f"import: loaded {moved.tag} (profile {r['profile']}, env {r['env']}'s "
            f"inputs, lock {r['lock_digest']}) from {moved.size_bytes / GB:.2f} GB "
            f"in {moved.seconds:.0f} s",
            highlight=False,
        )


def _added(root: Path, name: str):
    """The added profile `name`, checked; one line naming the file when there is none."""
    from ringfleet.errors import RingfleetError
    from ringfleet.images.profiles import added_profiles

    profiles = added_profiles(root)
    if name not in profiles:
        known = ", ".join(sorted(profiles)) or "none"
        raise RingfleetError(f"profiles/{name}.yaml", f"no such added profile (added: {known})")
    return profiles[name]


def _export_wheels(console: Console, client, profile: str, tag: str, output: Path) -> None:
    from ringfleet.images.wheels import SHARED_SUBDIR, export_wheels

    done = export_wheels(client, tag, output)
    console.print(
        f"export {profile} --wheels: {done.wheel.name} (sha256 {done.sha256[:12]}...), the "
        f"Horovod build of {tag}, in {done.record_dir}; the Python lock in {done.lock} and "
        f"its {done.wheels} wheels, {done.size_bytes / GB:.2f} GB in {done.seconds:.0f} s",
        highlight=False,
    )
    console.print(
        f"  a site without PyPI: `software: {{wheelhouse: {output}}}` in the spec; with "
        f"PyPI, copy {done.record_dir.name}/ into <shared mount>/{SHARED_SUBDIR}/ on the "
        "cluster's shared storage: `up` then installs this wheel instead of compiling",
        highlight=False,
    )


def _export_apt(console: Console, client, profile: str, tag: str, output: Path) -> None:
    from ringfleet.images.offline import export_apt

    done = export_apt(client, tag, output)
    console.print(
        f"export {profile} --apt: the {done.files} Debian packages installed in {tag}, "
        f"{done.size_bytes / GB:.2f} GB, as a repository in {output} in {done.seconds:.0f} s",
        highlight=False,
    )
    console.print(
        f"  a site without a Debian mirror: `software: {{apt_repo: {output}}}` in the spec",
        highlight=False,
    )
