"""Added profiles (`profiles/<name>.yaml`): a good file is read; a bad one is one line.

A pin the parent's lock cannot satisfy is refused: the parent's pins do not move.
"""

from __future__ import annotations

import shutil

import pytest

from ringfleet.errors import RingfleetError
from ringfleet.images.profiles import added_profiles, parent_pins
from tests.conftest import ROOT

LOCK = "roles/tensorflow/files/requirements-tf2.15-cpu.txt"
GOOD = "extends: tf2.15\ndescription: tabulate for job reports\npip: [tabulate==0.9.0]\napt: [jq]\n"


@pytest.fixture
def project(tmp_path):
    (tmp_path / LOCK).parent.mkdir(parents=True)
    shutil.copy(ROOT / LOCK, tmp_path / LOCK)
    (tmp_path / "profiles").mkdir()
    return tmp_path


def write(project, text: str, name: str = "reports"):
    (project / "profiles" / f"{name}.yaml").write_text(text, encoding="utf-8")
    return project


def test_good_profile_is_read(project) -> None:
    added = added_profiles(write(project, GOOD))["reports"]
    assert (added.extends, added.pip, added.apt) == ("tf2.15", ("tabulate==0.9.0",), ("jq",))


def test_parent_pins_are_read_from_its_lock(project) -> None:
    assert parent_pins(project, "tf2.15")["numpy"] == "1.26.4"


# Each bad file and its whole one-line error.
BAD = {
    "conflicting pin": (
        GOOD.replace("tabulate==0.9.0", "numpy==1.25.0"),
        "reports",
        "profiles/reports.yaml: pip[0]: conflicts with tf2.15's pin numpy==1.26.4 "
        "(got 'numpy==1.25.0')",
    ),
    "conflicting range": (
        GOOD.replace("tabulate==0.9.0", "Protobuf>=5"),
        "reports",
        "profiles/reports.yaml: pip[0]: conflicts with tf2.15's pin protobuf==4.25.9 "
        "(got 'Protobuf>=5')",
    ),
    "unknown parent": (
        GOOD.replace("tf2.15", "tf9"),
        "reports",
        "profiles/reports.yaml: extends: must be a built-in profile (tf2.15, tf2.21) (got 'tf9')",
    ),
    "not a specifier": (
        GOOD.replace("tabulate==0.9.0", "'tabulate ==='"),
        "reports",
        "profiles/reports.yaml: pip[0]: not a pip requirement specifier (got 'tabulate ===')",
    ),
    "unknown field": (
        GOOD + "conda: [x]\n",
        "reports",
        "profiles/reports.yaml: conda: unknown field; fields: extends, description, pip, apt",
    ),
    "bad apt name": (
        GOOD.replace("[jq]", "['jq; rm -rf /']"),
        "reports",
        "profiles/reports.yaml: apt[0]: not a Debian package name (got 'jq; rm -rf /')",
    ),
    "built-in name": (
        GOOD,
        "tf2.21",
        "profiles/tf2.21.yaml: the file name must be a new profile name (a-z, 0-9, '.', '_', "
        "'-') (got 'tf2.21')",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_profile_is_one_line(project, case) -> None:
    text, name, line = BAD[case]
    with pytest.raises(RingfleetError) as caught:
        added_profiles(write(project, text, name))
    assert caught.value.line() == f"ringfleet: error: {line}"
