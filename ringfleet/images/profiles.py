"""Added profiles: `profiles/<name>.yaml`, a built-in profile plus the user's own packages.

    extends: tf2.15                  # the built-in profile whose image it builds on
    description: tabulate for job reports
    pip: ["tabulate==0.9.0"]         # requirement specifiers, resolved against the parent
    apt: [jq]                        # Debian packages

Read and checked here, each problem one line naming the file and field. A pip specifier
that the parent's own lock cannot satisfy (numpy==1.25.0 on a parent pinning 1.26.4) is
refused: what the parent pins does not move for an added profile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ringfleet import compat
from ringfleet.errors import RingfleetError
from ringfleet.images.record import lock_file
from ringfleet.yamlio import read_yaml

PROFILES_DIR = "profiles"
FIELDS = ("extends", "description", "pip", "apt")
NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,39}")
# A Debian package name (Debian Policy 5.6.1), optionally `=version`.
APT_PATTERN = re.compile(r"[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+~:-]+)?")
LOCK_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s\\;]+)", re.M)


@dataclass(frozen=True)
class AddedProfile:
    """One `profiles/<name>.yaml`, checked."""

    name: str
    extends: str
    description: str
    pip: tuple[str, ...]
    apt: tuple[str, ...]
    path: Path


def parent_pins(root: Path, parent: str) -> dict[str, str]:
    """`{canonical name: version}` of the parent's CPU lock."""
    text = lock_file(root, parent, gpu=False).read_text(encoding="utf-8")
    return {canonicalize_name(n): v for n, v in LOCK_PIN.findall(text)}


def added_profiles(root: Path) -> dict[str, AddedProfile]:
    """Every `profiles/*.yaml` of the project, by name; a bad one stops with one line."""
    folder = root / PROFILES_DIR
    found = {}
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else []:
        profile = read_profile(path, root)
        found[profile.name] = profile
    return found


def find_added(root: Path, name: str) -> AddedProfile | None:
    """The added profile `name` of the project at `root`, checked; None if it has none."""
    path = root / PROFILES_DIR / f"{name}.yaml"
    return read_profile(path, root) if NAME_PATTERN.fullmatch(name) and path.is_file() else None


def read_profile(path: Path, root: Path) -> AddedProfile:
    where = f"{PROFILES_DIR}/{path.name}"
    name = path.name[: -len(".yaml")]
    builtin = {p.name: p for p in compat.PROFILES}
    if not NAME_PATTERN.fullmatch(name) or name in builtin:
        raise RingfleetError(
            where, "the file name must be a new profile name (a-z, 0-9, '.', '_', '-')", name
        )
    doc = read_yaml(path, where)
    if not isinstance(doc, dict):
        raise RingfleetError(where, "must be a mapping of " + ", ".join(FIELDS), doc)
    for key in doc:
        if key not in FIELDS:
            raise RingfleetError(f"{where}: {key}", f"unknown field; fields: {', '.join(FIELDS)}")
    parent = doc.get("extends")
    if parent not in builtin:
        raise RingfleetError(
            f"{where}: extends", f"must be a built-in profile ({compat.profile_names()})", parent
        )
    description = doc.get("description")
    if not isinstance(description, str) or not description.strip():
        raise RingfleetError(f"{where}: description", "required: one line of text", description)
    pip = _strings(doc.get("pip"), f"{where}: pip")
    apt = _strings(doc.get("apt"), f"{where}: apt")
    pins = parent_pins(root, parent)
    for i, text in enumerate(pip):
        _check_pip(text, pins, parent, f"{where}: pip[{i}]")
    for i, text in enumerate(apt):
        if not APT_PATTERN.fullmatch(text):
            raise RingfleetError(f"{where}: apt[{i}]", "not a Debian package name", text)
    return AddedProfile(name, parent, description.strip(), pip, apt, path)


def _strings(value, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RingfleetError(where, "must be a list of strings", value)
    return tuple(value)


def _check_pip(text: str, pins: dict[str, str], parent: str, where: str) -> None:
    try:
        req = Requirement(text)
    except InvalidRequirement:
        raise RingfleetError(where, "not a pip requirement specifier", text) from None
    if req.url:
        raise RingfleetError(where, "a URL cannot be locked by hash here; name a release", text)
    pinned = pins.get(canonicalize_name(req.name))
    if pinned is not None and not req.specifier.contains(pinned, prereleases=True):
        raise RingfleetError(
            where, f"conflicts with {parent}'s pin {canonicalize_name(req.name)}=={pinned}", text
        )


def added_pins(profile: AddedProfile) -> dict[str, str]:
    """`{canonical name: version}` of the profile's own lock (profiles/<name>.txt); {}
    before `images lock` wrote it."""
    lock = profile.path.with_suffix(".txt")
    text = lock.read_text(encoding="utf-8") if lock.is_file() else ""
    return {canonicalize_name(n): v for n, v in LOCK_PIN.findall(text)}
