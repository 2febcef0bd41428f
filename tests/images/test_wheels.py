"""`images export --wheels` names the record directory as roles/horovod does.

The role names a build's directory on shared storage `horovod_build_record |
to_nice_json(sort_keys=true) | hash('sha256')`, and writes that same JSON as the node's
build marker, which the export hashes. Checked here with Ansible's own filters, so a
change on either side shows before a host compiles a wheel it could have copied.
"""

from __future__ import annotations

import pytest
import yaml
from ansible.plugins.filter.core import get_hash, to_nice_json

from ringfleet.images.wheels import SHARED_SUBDIR, record_hash
from tests.conftest import ROOT

RECORDS = [
    {
        "env": {"HOROVOD_WITH_MPI": "1", "HOROVOD_WITH_TENSORFLOW": "1"},
        "horovod": "0.28.1",
        "patches": {},
        "sdist_sha256": "92a43f5a94c43907a56805bad15f19700c62ffc83b7ca483f9e104e229f67ef0",
        "tensorflow": ["tensorflow-cpu==2.15.1"],
    },
    {
        "env": {"HOROVOD_WITH_MPI": "1"},
        "horovod": "0.28.1",
        "patches": {"horovod-0.28.1-tf2.21.patch": "ab" * 32},
        "sdist_sha256": "0" * 64,
        "tensorflow": ["tensorflow==2.21.0"],
    },
]


@pytest.mark.parametrize("record", RECORDS, ids=["tf2.15", "tf2.21-patched"])
def test_record_hash_is_the_roles_directory_name(record: dict) -> None:
    marker = to_nice_json(record, sort_keys=True)  # what the role writes as the marker
    assert record_hash(marker.encode()) == get_hash(marker, "sha256")[:16]


def test_shared_subdir_is_the_roles_shared_dir() -> None:
    defaults = yaml.safe_load((ROOT / "roles" / "horovod" / "defaults" / "main.yml").read_text())
    assert f"ringfleet_shared_mount ~ '/{SHARED_SUBDIR}'" in defaults["horovod_shared_dir"]
