"""Node images: the base image converged by the same roles, committed and tagged by content.

There is no second definition of node software in a Dockerfile. The tag is a
digest of everything that decides what the roles install for a pool, so a
cached image is reused exactly when the result would be the same.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from ringfleet.spec import DEFAULT_DOCKER_IMAGE, ClusterSpec, ResolvedPool

NODE_IMAGE_REPO = "ringfleet/node"
# Files whose content decides a node image, relative to the project root.
IMAGE_INPUTS = ("roles", "playbooks", "site.yml", "ansible.cfg")


def _tree_digest(root: Path, names: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for name in names:
        top = root / name
        paths = sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else [top]
        for path in paths:
            if not path.is_file() or "__pycache__" in path.parts:
                continue
            h.update(str(path.relative_to(root)).encode() + b"\0")
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
    return {
        "roles": _tree_digest(root, IMAGE_INPUTS),
        "software": json.dumps(software, sort_keys=True),
        "base": base_image(pool),
        "ssh_user": spec.cluster.ssh.user,
    }


def node_image_tag(spec: ClusterSpec, pool: ResolvedPool, root: Path) -> str:
    """`ringfleet/node:<profile>-<digest>` for one pool."""
    data = json.dumps(image_inputs(spec, pool, root), sort_keys=True)
    digest = hashlib.sha256(data.encode()).hexdigest()[:16]
    return f"{NODE_IMAGE_REPO}:{pool.profile.name}-{digest}"


LABEL_IMAGE_INPUTS = "ringfleet.image-inputs"
LABEL_BAKE = "ringfleet.bake"
# What the bake leaves behind that must not be in an image: per-node host keys
# (every node would share them) and package caches (size only).
BAKE_CLEANUP = "rm -f /etc/ssh/ssh_host_* && apt-get clean && rm -rf /root/.cache /tmp/* /var/tmp/*"


def ensure_node_image(client, spec: ClusterSpec, pool: ResolvedPool, root: Path, console) -> str:
    """Return the node image tag of `pool`, baking it with the roles when it is not cached."""
    from ringfleet.baseimage import ensure_base_image, find_image

    tag = node_image_tag(spec, pool, root)
    if find_image(client, tag) is not None:
        console.print(f"  image {tag}: cached", highlight=False)
        return tag
    ensure_base_image(client, base_image(pool), log=lambda m: console.print(f"  {m}"))
    console.print(f"  image {tag}: baking from {base_image(pool)} with the roles", highlight=False)
    bake_image(client, spec, pool, root, tag, console)
    return tag


def bake_image(client, spec: ClusterSpec, pool: ResolvedPool, root: Path, tag: str, console):
    """Converge a throwaway container with site.yml (baking mode) and commit it as `tag`."""
    import time

    from ringfleet.converge import converge
    from ringfleet.errors import RingfleetError
    from ringfleet.inventory import render_inventory, write_inventory_file
    from ringfleet.outputs import OUT_POOLS, static_outputs
    from ringfleet.state import converge_vars, state_dir

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
        bake_env = f"{spec.env}-bake-{pool.name}"
        inventory = render_inventory(outputs, "bake")
        inv_path = write_inventory_file(state_dir(root, bake_env) / "hosts.yml", inventory)
        extravars = {**converge_vars(root, spec.env), "ringfleet_baking": True}
        converge(
            root,
            inv_path,
            state_dir(root, bake_env),
            extravars=extravars,
            label=f"bake {pool.name}",
            console=console,
        )
        code, output = container.exec_run(["/bin/sh", "-c", BAKE_CLEANUP])
        if code != 0:
            raise RingfleetError(f"bake {pool.name}", "cleanup failed", output.decode()[-200:])
        repo, _, version = tag.rpartition(":")
        container.commit(
            repository=repo,
            tag=version,
            changes=[f"LABEL {LABEL_IMAGE_INPUTS}={tag}"],
        )
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
