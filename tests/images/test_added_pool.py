"""A pool selects an added profile with `software: {profile: NAME}`.

The roles still install the parent (the pool's built-in profile); the image tag hashes the
parent's tag, the profile file and its lock, so a new lock is a new image.
"""

from __future__ import annotations

import shutil

import pytest

from ringfleet.errors import RingfleetError
from ringfleet.providers.docker.images import node_image_tag
from ringfleet.spec import load_spec
from tests.conftest import ROOT, run_cli

LOCK = "roles/tensorflow/files/requirements-tf2.15-cpu.txt"
PROFILE = "extends: tf2.15\ndescription: tables in job reports\npip: [tabulate==0.9.0]\n"
ADDED_LOCK = "tabulate==0.9.0 \\\n    --hash=sha256:" + "0" * 64 + "\n"


@pytest.fixture
def project(tmp_path):
    (tmp_path / LOCK).parent.mkdir(parents=True)
    shutil.copy(ROOT / LOCK, tmp_path / LOCK)
    text = (ROOT / "Pulumi.local.yaml").read_text()
    (tmp_path / "Pulumi.local.yaml").write_text(text.replace("profile: tf2.15", "profile: tables"))
    (tmp_path / "profiles").mkdir()
    (tmp_path / "profiles" / "tables.yaml").write_text(PROFILE)
    (tmp_path / "profiles" / "tables.txt").write_text(ADDED_LOCK)
    return tmp_path


def cpu_pool(project):
    return load_spec("local", project).pools["cpu"]


def test_pool_on_an_added_profile_names_it(project) -> None:
    assert cpu_pool(project).profile_name == "tables"


def test_pool_on_an_added_profile_installs_its_parent(project) -> None:
    assert cpu_pool(project).profile.name == "tf2.15"


def test_added_profile_image_is_tagged_with_its_own_name(project) -> None:
    assert node_image_tag(load_spec("local", project), cpu_pool(project), project).startswith(
        "ringfleet/node:tables-"
    )


def test_a_new_lock_is_a_new_image(project) -> None:
    spec = load_spec("local", project)
    before = node_image_tag(spec, cpu_pool(project), project)
    (project / "profiles" / "tables.txt").write_text(ADDED_LOCK.replace("0" * 64, "1" * 64))
    assert node_image_tag(spec, cpu_pool(project), project) != before


def test_an_added_profile_without_its_lock_has_no_image(project) -> None:
    (project / "profiles" / "tables.txt").unlink()
    with pytest.raises(RingfleetError) as info:
        node_image_tag(load_spec("local", project), cpu_pool(project), project)
    assert info.value.line().startswith("ringfleet: error: profiles/tables.txt: missing;")


def test_a_lock_missing_a_listed_package_is_refused(project) -> None:
    (project / "profiles" / "tables.yaml").write_text(PROFILE.replace("]", ", rich==13.9.4]"))
    with pytest.raises(RingfleetError) as info:
        node_image_tag(load_spec("local", project), cpu_pool(project), project)
    assert "does not lock rich" in info.value.line()


def test_an_unknown_profile_names_the_field_in_one_line(project) -> None:
    (project / "profiles" / "tables.yaml").unlink()
    proc = run_cli("status", "local", root=project)
    assert (proc.returncode, proc.stderr.strip().splitlines()) == (
        2,
        [
            "ringfleet: error: Pulumi.local.yaml: cluster.software.profile: unknown software "
            "profile; tested: tf2.15, tf2.21, or one of your own in profiles/<name>.yaml "
            "(got 'tables')"
        ],
    )


def pool_hostvars(project) -> dict:
    from ringfleet.converge.inventory import render_inventory
    from ringfleet.providers.outputs import static_outputs

    inventory = render_inventory(static_outputs(load_spec("local", project)))
    group = next(
        g
        for g in inventory["all"]["children"].values()
        if g.get("vars", {}).get("ringfleet_added_profile")
    )
    return group["vars"]


def test_inventory_gives_verify_the_added_pins(project) -> None:
    assert pool_hostvars(project)["ringfleet_added_pip"] == {"tabulate": "0.9.0"}
