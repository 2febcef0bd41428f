"""The air-gapped base image: Debian bookworm made with debootstrap, no registry needed.

Sites without a registry (and this project's CI) cannot `docker pull`. If the
configured base image is neither present nor pullable, ringfleet builds it from
the Debian mirror the host's apt already uses and imports it into Docker.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import docker
import docker.errors

from ringfleet.errors import RingfleetError, RuntimeFailure

SUITE = "bookworm"
# What Ansible needs on a node before any role runs.
INCLUDE = ("python3", "python3-apt", "ca-certificates")
# Bump when the recipe changes, so cached images are rebuilt.
RECIPE_VERSION = "2"
# The Debian packages the base image was built from (`dpkg-query -W`), inside the image:
# the roles pin what they install on top, and this says what debootstrap brought.
BASE_PACKAGES_FILE = "etc/ringfleet/base-packages.txt"
LABEL_BASE_HASH = "ringfleet.base-hash"
APT_SOURCES_DIRS = (Path("/etc/apt/sources.list.d"), Path("/etc/apt"))


def host_mirror() -> str:
    """The Debian mirror of this host's apt configuration (read at run time, never stored)."""
    override = os.environ.get("RINGFLEET_DEBIAN_MIRROR")
    if override:
        return override
    for path in [
        Path("/etc/apt/sources.list.d/debian.sources"),
        *sorted(Path("/etc/apt/sources.list.d").glob("*.sources")),
    ]:
        if path.is_file():
            text = path.read_text()
            for block in text.split("\n\n"):
                if re.search(rf"^Suites:.*\b{SUITE}\b(?!-)", block, re.M):
                    uri = re.search(r"^URIs:\s*(\S+)", block, re.M)
                    if uri:
                        return uri.group(1)
    for path in [Path("/etc/apt/sources.list"), *Path("/etc/apt/sources.list.d").glob("*.list")]:
        if path.is_file():
            for line in path.read_text().splitlines():
                m = re.match(rf"^deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+{SUITE}\s", line)
                if m:
                    return m.group(1)
    raise RingfleetError(
        "base image",
        f"no Debian {SUITE} mirror in this host's apt sources; set RINGFLEET_DEBIAN_MIRROR",
    )


def host_sources() -> str:
    """The host's deb822 apt sources, copied into the image so nodes use the same mirror."""
    path = Path("/etc/apt/sources.list.d/debian.sources")
    if path.is_file():
        return path.read_text()
    mirror = host_mirror()
    return (
        f"Types: deb\nURIs: {mirror}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def recipe_hash(mirror: str, sources: str) -> str:
    text = "\n".join([RECIPE_VERSION, SUITE, ",".join(INCLUDE), mirror, sources])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def find_image(client: docker.DockerClient, tag: str):
    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def ensure_base_image(
    client: docker.DockerClient, tag: str, log: Callable[[str], None] = print
) -> str:
    """Return the id of `tag`, pulling it or building it with debootstrap when absent."""
    image = find_image(client, tag)
    if image is not None:
        return image.id
    if "/" in tag and "." in tag.split("/")[0]:
        # A registry host is named: try it first, it is what the user asked for.
        try:
            log(f"pulling {tag}")
            return client.images.pull(tag).id
        except docker.errors.APIError as exc:
            log(f"pull failed ({str(exc).splitlines()[0][:80]}); building locally")
    return build_base_image(client, tag, log)


def build_base_image(
    client: docker.DockerClient, tag: str, log: Callable[[str], None] = print
) -> str:
    """debootstrap a minimal bookworm and import it as `tag` (about 30-60 s)."""
    if os.geteuid() != 0:
        raise RingfleetError("base image", "building it with debootstrap needs root")
    if not shutil.which("debootstrap"):
        raise RingfleetError(
            "base image", "debootstrap is missing; install it (`apt-get install debootstrap`)"
        )
    mirror = host_mirror()
    sources = host_sources()
    # The recipe's hash is a label for provenance only. It is not used to find a cached
    # base: labels are inherited by every image committed on top, so node images carry
    # it too, and an image without the tag is not reused (a cold build means cold).
    digest = recipe_hash(mirror, sources)
    log(f"building base image {tag} with debootstrap ({SUITE}, minbase)")
    with tempfile.TemporaryDirectory(prefix="ringfleet-base-") as tmp:
        root = Path(tmp) / "rootfs"
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(INCLUDE)}",
            SUITE,
            str(root),
            mirror,
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
            raise RuntimeFailure("base image", "debootstrap failed", " ".join(tail))
        record_packages(root)
        (root / "etc/apt/sources.list").unlink(missing_ok=True)
        (root / "etc/apt/sources.list.d").mkdir(parents=True, exist_ok=True)
        (root / "etc/apt/sources.list.d/debian.sources").write_text(sources)
        # Containers have no init to clean these; apt caches only make the image larger.
        shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
        (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)
        tarball = Path(tmp) / "rootfs.tar"
        subprocess.run(
            ["tar", "--numeric-owner", "-C", str(root), "-cf", str(tarball), "."], check=True
        )
        repo, version = _split_tag(tag)
        client.api.import_image(
            src=str(tarball),
            repository=repo,
            tag=version,
            changes=[
                'CMD ["/bin/bash"]',
                "ENV LANG=C.UTF-8",
                f"LABEL {LABEL_BASE_HASH}={digest}",
            ],
        )
    return client.images.get(tag).id


def record_packages(rootfs: Path) -> Path:
    """Write the packages installed in `rootfs` (dpkg-query -W: name, tab, version) into it."""
    proc = subprocess.run(
        ["dpkg-query", f"--admindir={rootfs / 'var/lib/dpkg'}", "-W"],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:]
        raise RuntimeFailure("base image", "dpkg-query failed", " ".join(tail))
    path = rootfs / BASE_PACKAGES_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(proc.stdout)
    return path


def _split_tag(tag: str) -> tuple[str, str]:
    repo, sep, version = tag.rpartition(":")
    if not sep or "/" in version:
        return tag, "latest"
    return repo, version
