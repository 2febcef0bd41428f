"""SshNode's inputs, checked before any ssh runs (no Docker, no host)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ringfleet.errors import RingfleetError
from ringfleet.nodes.ssh import SshNode, parse_proxy_jump


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("bastion", (None, "bastion", 22)),
        ("ops@bastion.example.org", ("ops", "bastion.example.org", 22)),
        ("ops@192.0.2.1:2222", ("ops", "192.0.2.1", 2222)),
        ("[2001:db8::1]:2222", (None, "2001:db8::1", 2222)),
        ("ops@[2001:db8::1]", ("ops", "2001:db8::1", 22)),
        ("2001:db8::1", (None, "2001:db8::1", 22)),
    ],
)
def test_proxy_jump_is_parsed(value, parsed):
    assert parse_proxy_jump("gpu01", value) == parsed


@pytest.mark.parametrize("value", ["-oProxyCommand=touch", "a b", "ops@", "ops@host:99999", ""])
def test_bad_proxy_jump_is_one_line_naming_the_host(value):
    with pytest.raises(RingfleetError) as err:
        parse_proxy_jump("gpu01", value)
    assert str(err.value).startswith("ringfleet: error: gpu01: ssh.proxy_jump: ")


@pytest.fixture()
def key(tmp_path) -> Path:
    path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_key_open_to_others_is_refused(key, tmp_path, mode):
    key.chmod(mode)
    with pytest.raises(RingfleetError, match="open to other users"):
        SshNode("gpu01", "192.0.2.1", admin_user="ops", key_file=key, known_hosts=tmp_path / "kh")


@pytest.mark.parametrize(
    ("field", "value"), [("address", "-oProxyCommand=x"), ("admin user", "a b")]
)
def test_unusable_address_or_user_is_refused(key, tmp_path, field, value):
    args = {"address": "192.0.2.1", "admin user": "ops", field: value}
    with pytest.raises(RingfleetError, match=f"not a usable SSH {field}"):
        SshNode(
            "gpu01",
            args["address"],
            admin_user=args["admin user"],
            key_file=key,
            known_hosts=tmp_path / "kh",
        )


def test_ansible_vars_become_root_for_a_non_root_admin(key, tmp_path):
    node = SshNode(
        "gpu01", "192.0.2.1", admin_user="ops", key_file=key, known_hosts=tmp_path / "kh"
    )
    assert node.ansible_host_vars()["ansible_become"] is True


def test_ansible_vars_check_host_keys_against_the_given_file(key, tmp_path):
    known = tmp_path / "kh"
    node = SshNode("gpu01", "192.0.2.1", admin_user="root", key_file=key, known_hosts=known)
    common = node.ansible_host_vars()["ansible_ssh_common_args"]
    assert (f"UserKnownHostsFile={known}" in common, "StrictHostKeyChecking=yes" in common) == (
        True,
        True,
    )
