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
