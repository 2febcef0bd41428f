"""`ringfleet images lock NAME`: the added pip list, resolved by pip from PyPI on the parent's pins.

Real resolutions (a few seconds each, PyPI only): `rich` needs `pygments`, `markdown-it-py`
and `mdurl`, none of which tf2.15 pins, so the lock holds four packages; `requests` is
pinned by the parent, so a package needing it must not list it again.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.conftest import ROOT, run_cli

LOCK = "roles/tensorflow/files/requirements-tf2.15-cpu.txt"
PROFILE = "extends: tf2.15\ndescription: rich reports\npip: [{pins}]\n"
PIN_LINE = re.compile(r"^([A-Za-z0-9._-]+)==(\S+) \\\n    --hash=sha256:[0-9a-f]{64}$", re.M)


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("lockproject")
    (root / LOCK).parent.mkdir(parents=True)
    shutil.copy(ROOT / LOCK, root / LOCK)
    (root / "profiles").mkdir()
    return root


def lock(project, name: str, pins: str):
    (project / "profiles" / f"{name}.yaml").write_text(PROFILE.format(pins=pins))
    return run_cli("images", "lock", name, root=project)


@pytest.fixture(scope="module")
def reports(project):
    proc = lock(project, "reports", "rich==13.9.4")
    assert proc.returncode == 0, proc.stderr
    text = (project / "profiles" / "reports.txt").read_text()
    return proc, {name.lower(): version for name, version in PIN_LINE.findall(text)}


def test_lock_holds_the_package_and_its_new_dependencies(reports) -> None:
    _, pins = reports
    assert sorted(pins) == ["markdown-it-py", "mdurl", "pygments", "rich"]


def test_lock_pins_the_asked_version(reports) -> None:
    _, pins = reports
    assert pins["rich"] == "13.9.4"


def test_lock_says_what_it_added(reports) -> None:
    proc, _ = reports
    assert "lock reports: 4 package(s) on tf2.15's lock" in proc.stdout + proc.stderr


def test_parent_lock_is_unchanged(project, reports) -> None:
    assert (project / LOCK).read_bytes() == (ROOT / LOCK).read_bytes()


def test_a_package_the_parent_pins_is_not_listed_again(project) -> None:
    proc = lock(project, "http", "requests-toolbelt==1.0.0")
    text = (project / "profiles" / "http.txt").read_text()
    assert (proc.returncode, [n.lower() for n, _ in PIN_LINE.findall(text)]) == (
        0,
        ["requests-toolbelt"],
    )


@pytest.mark.parametrize(
    ("name", "pins", "field"),
    [
        ("ghost", "ringfleet-no-such-package-7f3a==1.0", "profiles/ghost.yaml: pip"),
        ("unknown", None, "profiles/unknown.yaml"),
    ],
    ids=["unresolvable", "no-such-profile"],
)
def test_a_lock_that_cannot_be_made_is_one_line_exit_2(project, name, pins, field) -> None:
    proc = lock(project, name, pins) if pins else run_cli("images", "lock", name, root=project)
    assert (
        proc.returncode,
        proc.stderr.count("\n"),
        proc.stderr.startswith(f"ringfleet: error: {field}"),
    ) == (2, 1, True), proc.stderr
