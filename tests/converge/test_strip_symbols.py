"""roles/tensorflow/files/strip_symbols.py on real libraries, with this machine's strip.

A small library compiled with -g stands for the wheels' libraries; numpy's
OpenBLAS from this repo's venv (rewritten by auditwheel's patchelf) is the real
case a plain strip breaks. No Docker is needed.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.converge.test_roles import ROOT

SCRIPT = ROOT / "roles" / "tensorflow" / "files" / "strip_symbols.py"
SITE = Path("lib") / "python3.11" / "site-packages"
SOURCE = "int ringfleet_answer(void) { return 42; }\n"
# numpy's bundled OpenBLAS: patchelf moved its load segments, so a stripped copy no
# longer loads ("ELF load command address/offset not page-aligned").
PATCHELF_LIB_GLOB = "numpy.libs/libscipy_openblas*.so"

pytestmark = pytest.mark.skipif(
    shutil.which("cc") is None or shutil.which("strip") is None,
    reason="needs a C compiler and binutils' strip on this machine",
)


def _run(venv: Path, *extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), str(venv), *extra], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def _compile(dest: Path) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    src = dest.with_suffix(".c")
    src.write_text(SOURCE)
    subprocess.run(["cc", "-g", "-shared", "-fPIC", "-o", str(dest), str(src)], check=True)
    return dest


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    _compile(tmp_path / SITE / "pkg" / "_ext.so")
    _compile(tmp_path / SITE / "pkg.libs" / "libvendored.so")
    return tmp_path


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_list_finds_a_library_with_symbols(venv):
    assert _run(venv, "--list")["files"] == [str(venv / SITE / "pkg" / "_ext.so")]


def test_list_counts_the_bytes_strip_would_remove(venv):
    assert _run(venv, "--list")["bytes"] > 0


def test_list_changes_nothing(venv):
    before = _sha(venv / SITE / "pkg" / "_ext.so")
    _run(venv, "--list")
    assert _sha(venv / SITE / "pkg" / "_ext.so") == before


def test_strip_reports_the_library_stripped(venv):
    assert _run(venv)["stripped"] == 1


def test_a_stripped_library_has_nothing_left_to_strip(venv):
    _run(venv)
    assert _run(venv, "--list")["files"] == []


def test_a_stripped_library_is_smaller(venv):
    lib = venv / SITE / "pkg" / "_ext.so"
    before = lib.stat().st_size
    _run(venv)
    assert lib.stat().st_size < before


def test_a_stripped_library_still_loads_and_answers(venv):
    _run(venv)
    assert ctypes.CDLL(str(venv / SITE / "pkg" / "_ext.so")).ringfleet_answer() == 42


def test_a_stripped_library_keeps_its_mode(venv):
    lib = venv / SITE / "pkg" / "_ext.so"
    lib.chmod(0o750)
    _run(venv)
    assert lib.stat().st_mode & 0o777 == 0o750


def test_an_auditwheel_libs_directory_is_left_alone(venv):
    lib = venv / SITE / "pkg.libs" / "libvendored.so"
    before = _sha(lib)
    _run(venv)
    assert _sha(lib) == before


def test_no_temporary_copy_is_left(venv):
    _run(venv)
    assert list(venv.rglob("*.ringfleet-strip")) == []


def test_usage_error_exits_2(tmp_path):
    assert subprocess.run([sys.executable, str(SCRIPT)], capture_output=True).returncode == 2


@pytest.fixture
def patchelf_venv(tmp_path: Path) -> Path:
    """A venv whose one library is numpy's patchelf-rewritten OpenBLAS, outside a .libs dir."""
    import numpy

    found = sorted(Path(numpy.__file__).parent.parent.glob(PATCHELF_LIB_GLOB))
    if not found:
        pytest.skip(f"this venv's numpy has no {PATCHELF_LIB_GLOB}")
    dest = tmp_path / SITE / "pkg" / found[0].name
    dest.parent.mkdir(parents=True)
    shutil.copy2(found[0], dest)
    return tmp_path


def test_a_copy_that_would_not_load_is_refused(patchelf_venv):
    assert len(_run(patchelf_venv)["refused"]) == 1


def test_a_refused_library_is_left_as_it_was(patchelf_venv):
    lib = next((patchelf_venv / SITE / "pkg").iterdir())
    before = _sha(lib)
    _run(patchelf_venv)
    assert _sha(lib) == before


def test_a_refused_library_still_loads(patchelf_venv):
    _run(patchelf_venv)
    assert ctypes.CDLL(str(next((patchelf_venv / SITE / "pkg").iterdir())))._handle != 0
