"""`ringfleet images list`: every profile's node image for one env, and what is in it.

An image tag hashes the env's inputs too (base image, job user, GPU stack, the spec values
the roles bake in), so the catalog is always of one env: the image that env's pools on a
profile use, or, for a profile no pool of the env uses, the image its first pool would
use on that profile.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from ringfleet import compat
from ringfleet.errors import RingfleetError
from ringfleet.images.record import VERSION_FIELDS, read_record
from ringfleet.providers.docker.images import node_image_tag
from ringfleet.spec import ClusterSpec, ResolvedPool

NO_RECORD = "no record"


@dataclass(frozen=True)
class Entry:
    """One row of the catalog."""

    profile: str
    tag: str
    pool: str
    # "pool cpu" when a pool of the env is on the profile, "pool cpu on PROFILE" otherwise.
    via: str
    built: bool
    size_bytes: int | None
    built_at: str | None
    versions: dict | None


def profile_pool(spec: ClusterSpec, profile: compat.Profile) -> tuple[ResolvedPool, str]:
    """The pool of `spec` whose image is `profile`'s, and how it was chosen."""
    pools = list(spec.pools.values())
    for pool in pools:
        if pool.profile.name == profile.name and pool.added is None:
            return pool, f"pool {pool.name}"
    # The first CPU pool stands in: a GPU pool would hash a GPU stack in.
    for pool in sorted(pools, key=lambda p: p.is_gpu):
        if profile.gpu or not pool.is_gpu:
            stand_in = dataclasses.replace(pool, profile=profile, added=None)
            return stand_in, f"pool {pool.name} on {profile.name}"
    raise RingfleetError(spec.display, f"no pool can use profile {profile.name}")


def find_profile(name: str) -> compat.Profile:
    for profile in compat.PROFILES:
        if profile.name == name:
            return profile
    raise RingfleetError("PROFILE", f"unknown profile; known: {compat.profile_names()}", name)


def catalog(spec: ClusterSpec, root: Path, client) -> list[Entry]:
    """Every profile's image for `spec`'s env: built here or not, size, date, versions."""
    from ringfleet.images.profiles import added_profiles

    pools = [profile_pool(spec, profile) for profile in compat.PROFILES]
    # Added profiles (profiles/*.yaml), on their parent's pool; a bad file stops here in
    # one line. One not locked yet has no tag: the tag hashes its lock.
    for added in added_profiles(root).values():
        pool, via = profile_pool(spec, find_profile(added.extends))
        pools.append((dataclasses.replace(pool, added=added), f"{via}, extends {added.extends}"))
    return [_entry(spec, root, client, pool, via) for pool, via in pools]


def _entry(spec: ClusterSpec, root: Path, client, pool: ResolvedPool, via: str) -> Entry:
    from ringfleet.images.lock import profile_lock_path
    from ringfleet.providers.docker.baseimage import find_image

    if pool.added is not None and not profile_lock_path(root, pool.added.name).is_file():
        return Entry(pool.profile_name, "- (not locked)", pool.name, via, False, None, None, None)
    tag = node_image_tag(spec, pool, root)
    image = find_image(client, tag)
    record = read_record(client, tag) if image is not None else None
    return Entry(
        profile=pool.profile_name,
        tag=tag,
        pool=pool.name,
        via=via,
        built=image is not None,
        size_bytes=image.attrs.get("Size") if image is not None else None,
        built_at=(record or {}).get("built_at")
        or (image.attrs.get("Created", "")[:19] + "Z" if image is not None else None),
        versions=(record or {}).get("versions"),
    )


def versions_text(versions: dict | None) -> str:
    """`python 3.11.2, openmpi 4.1.4-3+b1, ...`, or NO_RECORD."""
    if not versions:
        return NO_RECORD
    return ", ".join(f"{f} {versions.get(f) or '-'}" for f in VERSION_FIELDS)
