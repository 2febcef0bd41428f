"""software.wheelhouse and software.apt_repo: a site with no PyPI or Debian mirror.

The spec names directories `images export --wheels` / `--apt` wrote on the controller;
the inventory hands them to roles/site_sources. Bad ones are one line naming the field
and the file, exit 2. The air-gapped converge itself is in tests/baremetal/test_static_env.py.
"""

from __future__ import annotations

import shutil

import pytest
import yaml

from tests.conftest import ROOT, run_cli

LOCK = "roles/tensorflow/files/requirements-tf2.15-cpu.txt"
ENV = "site"


def spec(provider: str = "static", **software) -> str:
    pool = {"name": "cpu", "cpus": 2}
    if provider == "static":
        pool["hosts"] = [{"name": "h1", "address": "10.226.0.2"}]
        storage = {"kind": "existing", "mount": "/shared"}
        ssh = {"admin_user": "ops"}
    else:
        pool.update(count=1, memory="1GiB")
        storage, ssh = {"kind": "volume"}, {}
    cluster = {
        "name": "rf-site",
        "provider": provider,
        "pools": [pool],
        "storage": storage,
        "ssh": ssh,
        "software": {"profile": "tf2.15", **software},
    }
    return yaml.safe_dump({"config": {"ringfleet:cluster": cluster}}, sort_keys=False)


@pytest.fixture
def project(tmp_path):
    """A project with the tf2.15 lock, a wheelhouse `wh` and a repository `apt` as the
    exports write them (only the files the spec check reads)."""
    shutil.copy(ROOT / "Pulumi.yaml", tmp_path / "Pulumi.yaml")
    (tmp_path / LOCK).parent.mkdir(parents=True)
    shutil.copy(ROOT / LOCK, tmp_path / LOCK)
    for name, files in {"wh": ("SHA256SUMS",), "apt": ("SHA256SUMS", "Packages")}.items():
        (tmp_path / name).mkdir()
        for file in files:
            (tmp_path / name / file).write_text("")
    shutil.copy(ROOT / LOCK, tmp_path / "wh" / "requirements.txt")
    return tmp_path


def inventory_vars(project, text: str) -> dict:
    (project / f"Pulumi.{ENV}.yaml").write_text(text)
    proc = run_cli("inventory", ENV, root=project)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)["all"]["children"]["pool_cpu"]["vars"]


@pytest.mark.parametrize(
    ("field", "var", "directory"),
    [("wheelhouse", "ringfleet_wheelhouse", "wh"), ("apt_repo", "ringfleet_apt_repo", "apt")],
)
def test_directory_reaches_the_roles_as_an_absolute_path(project, field, var, directory) -> None:
    found = inventory_vars(project, spec(**{field: directory}))
    assert found[var] == str(project / directory)


def test_without_directories_the_roles_get_none(project) -> None:
    found = inventory_vars(project, spec())
    assert {"ringfleet_wheelhouse", "ringfleet_apt_repo"} & found.keys() == set()


def _wrong_lock(project) -> None:
    (project / "wh" / "requirements.txt").write_text("numpy==1.26.4 --hash=sha256:00\n")


def _no_sums(project) -> None:
    (project / "wh" / "SHA256SUMS").unlink()


def _no_packages(project) -> None:
    (project / "apt" / "Packages").unlink()


# Each bad spec, what is done to the project first, and the whole one-line error.
BAD = {
    "docker nodes": (
        spec("docker", wheelhouse="wh"),
        None,
        "Pulumi.site.yaml: cluster.software.wheelhouse: docker nodes are made from the node "
        "image, which the bake fills from PyPI and the mirror; only static and aws hosts "
        "install from a site's directories (got 'wh')",
    ),
    "missing directory": (
        spec(apt_repo="nowhere"),
        None,
        "Pulumi.site.yaml: cluster.software.apt_repo: no such directory on the controller "
        "(got 'nowhere')",
    ),
    "not an export": (
        spec(wheelhouse="wh"),
        _no_sums,
        "Pulumi.site.yaml: cluster.software.wheelhouse: has no SHA256SUMS: write it with "
        "`ringfleet images export PROFILE --wheels -o wh` (got 'wh')",
    ),
    "repository without an index": (
        spec(apt_repo="apt"),
        _no_packages,
        "Pulumi.site.yaml: cluster.software.apt_repo: has no Packages: write it with "
        "`ringfleet images export PROFILE --apt -o apt` (got 'apt')",
    ),
    "another profile's wheelhouse": (
        spec(wheelhouse="wh"),
        _wrong_lock,
        "Pulumi.site.yaml: cluster.software.wheelhouse: its requirements.txt is not profile "
        "tf2.15's lock (roles/tensorflow/files/requirements-tf2.15-cpu.txt); export the "
        "wheelhouse of the tf2.15 image (got '{project}/wh')",
    ),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_directory_is_one_line(project, case) -> None:
    text, damage, line = BAD[case]
    if damage is not None:
        damage(project)
    (project / f"Pulumi.{ENV}.yaml").write_text(text)
    proc = run_cli("inventory", ENV, root=project)
    expected = f"ringfleet: error: {line.format(project=project)}"
    assert (proc.returncode, proc.stderr.strip().splitlines()) == (2, [expected])
