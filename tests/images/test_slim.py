"""What a bake leaves out of a node image (#21 part 4), read on the image the local cluster uses.

One throwaway container of the tf2.15 image answers every file-system fact; the
image's size against the 2.0 GB target is a benchmark (bench/image_size.py), not a test.
"""

from __future__ import annotations

import json

import pytest

from ringfleet.paths import NODE_VENV
from ringfleet.providers.docker.images import LABEL_IMAGE_INPUTS
from tests.conftest import ROOT

pytestmark = pytest.mark.docker

STRIP_DIR = ROOT / "roles" / "tensorflow" / "files"
STRIP_MOUNT = "/ringfleet-strip"
HOROVOD_DIR = "/site-packages/horovod/"
EMPTIED = ["/usr/share/man", "/usr/share/info", "/usr/share/locale"]
# Prints one JSON object: the facts below, read in one container.
PROBE = f"""
unstripped=$({NODE_VENV}/bin/python {STRIP_MOUNT}/strip_symbols.py {NODE_VENV} --list)
printf '{{"unstripped": %s, "entries": {{' "$unstripped"
sep=''
for d in {" ".join(EMPTIED)}; do
  printf '%s"%s": %d' "$sep" "$d" "$(find "$d" -mindepth 1 | wc -l)"; sep=', '
done
printf '}}, "doc_other": %d, "doc_copyright": %d}}' \\
  "$(find /usr/share/doc ! -type d ! -name copyright | wc -l)" \\
  "$(find /usr/share/doc -name copyright | wc -l)"
"""


@pytest.fixture(scope="module")
def image(client, tag):
    return client.images.get(tag)


@pytest.fixture(scope="module")
def probe(client, tag) -> dict:
    container = client.containers.run(
        tag,
        ["sleep", "infinity"],
        detach=True,
        init=True,
        labels={"ringfleet.test": "slim"},
        volumes={str(STRIP_DIR): {"bind": STRIP_MOUNT, "mode": "ro"}},
    )
    try:
        code, (out, err) = container.exec_run(["/bin/sh", "-c", PROBE], demux=True)
    finally:
        container.remove(force=True)
    assert code == 0, (err or b"").decode()[-2000:]
    return json.loads(out)


def test_image_is_one_layer(image) -> None:
    # What the bake removed from the base's layer is gone, not hidden under whiteouts.
    assert len(image.attrs["RootFS"]["Layers"]) == 1


def test_image_keeps_the_base_locale(image) -> None:
    assert "LANG=C.UTF-8" in image.attrs["Config"]["Env"]


def test_image_is_labelled_with_its_inputs(image, tag) -> None:
    assert image.attrs["Config"]["Labels"][LABEL_IMAGE_INPUTS] == tag


def test_lock_libraries_carry_no_symbol_tables(probe) -> None:
    # Horovod is built and installed after the strip; its library is linked without
    # debug info (horovod_ldflags) and keeps its 0.4 MB symbol table.
    assert [f for f in probe["unstripped"]["files"] if HOROVOD_DIR not in f] == []


@pytest.mark.parametrize("directory", EMPTIED)
def test_documentation_directory_is_empty(probe, directory: str) -> None:
    assert probe["entries"][directory] == 0


def test_doc_keeps_only_copyright_files(probe) -> None:
    assert probe["doc_other"] == 0


def test_doc_keeps_the_copyright_files(probe) -> None:
    # Debian's licences travel with the binaries they cover.
    assert probe["doc_copyright"] > 100
