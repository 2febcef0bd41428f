"""ringfleet.images.offline without Docker: the Packages index and the sums of a directory.

A package built here with dpkg-deb is indexed as Debian's own dpkg-scanpackages indexes
it, and `sha256sum --check` (what roles/site_sources runs on each host) accepts the sums.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from ringfleet.errors import RingfleetError
from ringfleet.images.offline import deb_control, packages_index, write_sums

CONTROL = """\
Package: rf-probe
Version: 1:1.2-3+deb12u1
Architecture: all
Maintainer: ringfleet <ringfleet@example.invalid>
Depends: libc6 (>= 2.36)
Description: a package ringfleet's tests index
"""


def _stanza(text: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in text.strip().splitlines() if ": " in line)


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """A directory holding one package built by dpkg-deb (xz control archive)."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb is not installed on this machine")
    root = tmp_path_factory.mktemp("repo")
    tree = root / "tree"
    (tree / "DEBIAN").mkdir(parents=True)
    (tree / "DEBIAN" / "control").write_text(CONTROL)
    (tree / "usr" / "share" / "rf-probe").mkdir(parents=True)
    (tree / "usr" / "share" / "rf-probe" / "note").write_text("probe\n")
    out = root / "repo"
    out.mkdir()
    deb = out / "rf-probe_1.2-3+deb12u1_all.deb"
    subprocess.run(["dpkg-deb", "-Zxz", "--root-owner-group", "--build", tree, deb],
                   check=True, capture_output=True)  # fmt: skip
    return out


def test_control_is_read_from_the_package(repo) -> None:
    (deb,) = repo.glob("*.deb")
    assert deb_control(deb.read_bytes(), deb.name) == CONTROL


@pytest.mark.parametrize("field", ["Package", "Version", "Depends", "Filename", "Size", "SHA256"])
def test_index_field_matches_dpkg_scanpackages(repo, field) -> None:
    if shutil.which("dpkg-scanpackages") is None:
        pytest.skip("dpkg-scanpackages (dpkg-dev) is not installed on this machine")
    theirs = subprocess.run(["dpkg-scanpackages", "--multiversion", "."], cwd=repo,
                            capture_output=True, text=True, check=True).stdout  # fmt: skip
    assert _stanza(packages_index(repo))[field] == _stanza(theirs)[field]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04 a zip file", "not a Debian package (no ar header)"),
        (b"!<arch>\n", "not a Debian package (no control.tar member)"),
    ],
)
def test_foreign_file_is_refused_in_one_line(data, message) -> None:
    with pytest.raises(RingfleetError) as caught:
        deb_control(data, "x.deb")
    assert str(caught.value) == f"ringfleet: error: x.deb: {message}"


def test_sums_pass_sha256sum_check(tmp_path) -> None:
    (tmp_path / "horovod" / "0123").mkdir(parents=True)
    (tmp_path / "horovod" / "0123" / "horovod.whl").write_bytes(b"wheel")
    (tmp_path / "requirements.txt").write_text("six==1.17.0\n")
    write_sums(tmp_path)
    proc = subprocess.run(["sha256sum", "--check", "--strict", "SHA256SUMS"], cwd=tmp_path,
                          capture_output=True, text=True)  # fmt: skip
    assert (proc.returncode, proc.stdout.count(": OK")) == (0, 2), proc.stdout + proc.stderr
