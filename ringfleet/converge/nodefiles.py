"""Which project files can change a node: one rule for the image content hash and the preview.

A file under the image inputs (`roles/`, `playbooks/`, `site.yml`, `ansible.cfg`) reaches a
node unless it is documentation: Ansible never reads a Markdown file or a role README, so an
edit to one must neither rebake an image nor count as a node-software change in a preview.
"""

from __future__ import annotations

from pathlib import PurePosixPath

# Files whose content decides a node image, relative to the project root.
IMAGE_INPUTS = ("roles", "playbooks", "site.yml", "ansible.cfg")
# Documentation: what Ansible never reads (suffixes compared case-insensitively).
DOC_SUFFIXES = (".md", ".rst", ".txt.license")
DOC_NAMES = ("README", "LICENSE", "CHANGELOG", "NOTICE")


def is_image_input(relpath: str) -> bool:
    """True when `relpath` (POSIX, relative to the project root) is under the image inputs."""
    parts = PurePosixPath(relpath).parts
    return bool(parts) and parts[0] in IMAGE_INPUTS


def reaches_node(relpath: str) -> bool:
    """True when a change to `relpath` can change what a node holds or runs."""
    path = PurePosixPath(relpath)
    if not is_image_input(relpath) or "__pycache__" in path.parts:
        return False
    name = path.name
    if name.lower().endswith(DOC_SUFFIXES):
        return False
    return name.split(".")[0].upper() not in DOC_NAMES
