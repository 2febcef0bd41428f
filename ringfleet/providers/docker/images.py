"""Node images: the base image converged by the same roles, committed and tagged by content.

There is no second definition of node software in a Dockerfile. The tag is a
digest of everything that decides what the roles install for a pool, so a
cached image is reused exactly when the result would be the same.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

from ringfleet import paths
from ringfleet.converge.nodefiles import IMAGE_INPUTS, reaches_node
from ringfleet.images.lock import added_image_tag, lock_for
from ringfleet.images.record import NODE_IMAGE_FILE, NODE_IMAGE_REPO
from ringfleet.paths import NODE_VENV
from ringfleet.providers.docker.container import DEFAULT_DOCKER_IMAGE
from ringfleet.spec import ClusterSpec, ResolvedPool
from ringfleet.state import HOST_CA_BUNDLE


def node_input_files(root: Path, names: tuple[str, ...] = IMAGE_INPUTS) -> list[Path]:
    """The files under `names` that can change a node (nodefiles rule), sorted by path."""
    found = []
    for name in names:
        top = root / name
        paths = top.rglob("*") if top.is_dir() else [top]
        for path in paths:
            if path.is_file() and reaches_node(path.relative_to(root).as_posix()):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def node_inputs_digest(root: Path, names: tuple[str, ...] = IMAGE_INPUTS) -> str:
    """sha256 over the path and content of every file that can change a node.

    Documentation (README.md and the like) is left out: editing it must not rebake.
    """
    h = hashlib.sha256()
    for path in node_input_files(root, names):
        h.update(path.relative_to(root).as_posix().encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()


def base_image(pool: ResolvedPool) -> str:
    return pool.pool.image or DEFAULT_DOCKER_IMAGE


def image_inputs(spec: ClusterSpec, pool: ResolvedPool, root: Path) -> dict[str, str]:
    """What the node image of `pool` is made from; its digest is the image tag."""
    software = {
        "profile": pool.profile.name,
        **pool.profile.versions(),
        "gpu": [pool.gpu.driver, pool.gpu.cuda, pool.gpu.nccl] if pool.gpu else None,
    }
    # The spec values the image part of the roles reads (thread defaults, MPI interface
    # and port, the controller's CA bundles): a node made from the image gets only the
    # node part, so a change to any of them must make a new image.
    config = {
        "threads_per_rank": pool.pool.threads_per_rank,
        "interface": spec.interface,
        "ssh_port": spec.cluster.ssh.port,
        "provider": spec.cluster.provider,
        "ca_bundles": _file_digest(HOST_CA_BUNDLE),
    }
    return {
        "roles": node_inputs_digest(root, IMAGE_INPUTS),
        "software": json.dumps(software, sort_keys=True),
        "config": json.dumps(config, sort_keys=True),
        "base": base_image(pool),
        "ssh_user": spec.cluster.ssh.user,
    }


def _file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def node_image_tag(spec: ClusterSpec, pool: ResolvedPool, root: Path) -> str:
    """`ringfleet/node:<profile>-<digest>` for one pool; an added profile's tag hashes its
    parent's tag, its file and its lock (ringfleet/images/build.py)."""
    data = json.dumps(image_inputs(spec, pool, root), sort_keys=True)
    digest = hashlib.sha256(data.encode()).hexdigest()[:16]
    tag = f"{NODE_IMAGE_REPO}:{pool.profile.name}-{digest}"
    if pool.added is None:
        return tag
    return added_image_tag(tag, pool.added, lock_for(pool.added, root))


LABEL_IMAGE_INPUTS = "ringfleet.image-inputs"
LABEL_BAKE = "ringfleet.bake"
# What the bake leaves behind that must not be in an image: per-node host keys (every
# node would share them), package caches and apt's index (size only: the roles install
# nothing on a node made from the image, and anything that does runs `apt-get update`),
# and TensorFlow's C++ headers, which only the Horovod build reads (172 MB). Also Debian's
# documentation, manual pages and message translations (59 MB): as in Debian's own slim
# images, the copyright files stay, and locale.alias, which setlocale reads.
BAKE_CLEANUP = (
    "rm -f /etc/ssh/ssh_host_* && apt-get clean && rm -rf /root/.cache /tmp/* /var/tmp/*"
    " /var/lib/apt/lists/* " + NODE_VENV + "/lib/python3*/site-packages/tensorflow/include"
    " /usr/share/man/* /usr/share/info/*"
    " && find /usr/share/doc -mindepth 1 ! -type d ! -name copyright -delete"
    " && find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +"
)


def ensure_node_image(client, spec: ClusterSpec, pool: ResolvedPool, root: Path, console) -> str:
    """Return the node image tag of `pool`, baking it with the roles when it is not cached."""
    from ringfleet.providers.docker.baseimage import ensure_base_image, find_image

    if pool.added is not None:
        from ringfleet.images.build import build_added

        parent_pool = dataclasses.replace(pool, added=None)
        parent = ensure_node_image(client, spec, parent_pool, root, console)
        built = build_added(client, pool, root, parent)
        how = "cached" if built.cached else f"built on {built.parent} in {built.seconds:.0f} s"
        console.print(f"  image {built.tag}: {how}", highlight=False)
        return built.tag
    tag = node_image_tag(spec, pool, root)
    if find_image(client, tag) is not None:
        console.print(f"  image {tag}: cached", highlight=False)
        return tag
    ensure_base_image(client, base_image(pool), log=lambda m: console.print(f"  {m}"))
    console.print(f"  image {tag}: baking from {base_image(pool)} with the roles", highlight=False)
    bake_image(client, spec, pool, root, tag, console)
    return tag


def commit_flat(client, container, repository: str, tag: str, labels: dict[str, str]) -> None:
    """Commit `container` as an image of one layer, keeping its Env, Cmd and labels.

    A plain commit stacks the bake's layer on the base image's, so what the bake removed
    or replaced from the base (documentation, packages apt upgraded, dpkg's database)
    still counts in the image under whiteouts: 0.12 GB of tf2.15's size (measured).
    """
    config = container.attrs["Config"]
    changes = []
    for env in config.get("Env") or []:
        key, _, value = env.partition("=")
        changes.append(f"ENV {key}={json.dumps(value)}")
    if config.get("Cmd"):
        changes.append("CMD " + json.dumps(config["Cmd"]))
    for key, value in sorted({**(config.get("Labels") or {}), **labels}.items()):
        changes.append(f"LABEL {key}={json.dumps(value)}")
    client.api.import_image_from_stream(
        client.api.export(container.id), repository=repository, tag=tag, changes=changes
    )


def bake_image(client, spec: ClusterSpec, pool: ResolvedPool, root: Path, tag: str, console):
    """Converge a throwaway container with site.yml (baking mode) and commit it as `tag`."""
    import time

    from ringfleet.converge.apply import apply
    from ringfleet.errors import RuntimeFailure
    from ringfleet.images.record import lock_digest, make_record, read_versions, write_record
    from ringfleet.providers.outputs import OUT_POOLS, OUT_SCHEDULER, static_outputs
    from ringfleet.state import bake_state_dir, converge_vars

    name = "ringfleet-bake-" + tag.rsplit("-", 1)[-1][:12]
    _remove_container(client, name)
    started = time.monotonic()
    container = client.containers.run(
        base_image(pool),
        command=["sleep", "infinity"],
        name=name,
        hostname=name,
        detach=True,
        init=True,
        labels={LABEL_BAKE: tag},
    )
    try:
        outputs = static_outputs(spec)
        only = outputs[OUT_POOLS][pool.name]
        only["nodes"] = [{"name": name, "privateIp": None, "publicIp": None}]
        outputs[OUT_POOLS] = {pool.name: only}
        # Slurm is the node part only (roles/slurm/README.md): one image serves every cluster.
        outputs.pop(OUT_SCHEDULER, None)
        bake_dir = bake_state_dir(root, spec.env, pool.name)
        apply(
            root,
            spec.env,
            outputs,
            where="bake",
            label=f"bake {pool.name}",
            console=console,
            extravars=lambda: {**converge_vars(root, spec.env), "ringfleet_baking": True},
            inventory_file=bake_dir / paths.INVENTORY_NAME,
            state=bake_dir,
        )
        record = f"mkdir -p {Path(NODE_IMAGE_FILE).parent} && echo {tag} > {NODE_IMAGE_FILE}"
        code, output = container.exec_run(["/bin/sh", "-c", f"{BAKE_CLEANUP} && {record}"])
        if code != 0:
            raise RuntimeFailure(f"bake {pool.name}", "cleanup failed", output.decode()[-200:])
        # The image's own record (`ringfleet images list`, export): versions read on it now.
        record = make_record(
            tag,
            pool.profile.name,
            image_inputs(spec, pool, root),
            lock_digest(root, pool.profile.name, pool.gpu is not None),
            read_versions(container),
        )
        write_record(container, record)
        repo, _, version = tag.rpartition(":")
        commit_flat(client, container, repo, version, {LABEL_IMAGE_INPUTS: tag})
    finally:
        _remove_container(client, name)
    size = client.images.get(tag).attrs.get("Size", 0) / 1024**2
    console.print(
        f"  image {tag}: baked in {time.monotonic() - started:.0f} s, {size:.0f} MiB",
        highlight=False,
    )


def _remove_container(client, name: str) -> None:
    import docker.errors

    try:
        client.containers.get(name).remove(force=True)
    except docker.errors.NotFound:
        pass
