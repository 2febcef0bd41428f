"""Host key trust: scan, show fingerprints, write known_hosts only when confirmed."""

from __future__ import annotations

import stat
import subprocess

import pytest

from ringfleet.errors import USAGE_EXIT, RingfleetError
from ringfleet.nodes import RUNNING
from ringfleet.nodes.ssh import SshNode
from ringfleet.nodes.trust import (
    CHANGED,
    NEW,
    UNCHANGED,
    known_hosts_name,
    scan_host_keys,
    trust_hosts,
)

docker = pytest.mark.docker
OTHER_LINE = (
    "bastion.example.org ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherHostKeyKeptAsItWas0000000000"
)


@pytest.mark.parametrize(
    ("address", "port", "name"),
    [
        ("192.0.2.7", 22, "192.0.2.7"),
        ("192.0.2.7", 2222, "[192.0.2.7]:2222"),
        ("2001:db8::7", 2222, "[2001:db8::7]:2222"),
        ("gpu01.example.org", 22, "gpu01.example.org"),
    ],
)
def test_known_hosts_name_brackets_only_other_ports(address, port, name):
    assert known_hosts_name(address, port) == name


@pytest.mark.parametrize("address", ["-oProxyCommand=x", "a b", ""])
def test_unusable_address_is_refused_before_scanning(address):
    with pytest.raises(RingfleetError, match="not a usable SSH address"):
        scan_host_keys([("h", address, 22)])


def targets(*hosts):
    return [(h.name, h.address, h.port) for h in hosts]


def keygen_fingerprints(lines: str) -> set[str]:
    """What ssh-keygen itself says the keys' fingerprints are."""
    out = subprocess.run(
        ["ssh-keygen", "-l", "-E", "sha256", "-f", "-"],
        input=lines,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split()[1] for line in out.splitlines()}


@docker
def test_scan_fingerprints_are_the_hosts_own(bare_metal, bare_pair):
    first = bare_pair[0]
    scanned = {k.fingerprint for k in scan_host_keys(targets(first))}
    assert scanned == keygen_fingerprints(bare_metal.known_hosts_lines(first))


@docker
def test_scan_of_a_host_without_sshd_is_one_line_naming_it():
    with pytest.raises(RingfleetError) as err:
        scan_host_keys([("ghost", "127.0.0.1", 1)], timeout=2)
    assert str(err.value).startswith("ringfleet: error: ghost: no SSH host key from 127.0.0.1")


@docker
def test_confirmed_trust_lets_ssh_node_in(bare_pair, admin_key, tmp_path):
    known = tmp_path / "known_hosts"
    trust_hosts(targets(*bare_pair), known, confirm=lambda: True, show=lambda line: None)
    states = [
        SshNode(
            h.name, h.address, admin_user=h.admin, key_file=admin_key.private, known_hosts=known
        ).state()
        for h in bare_pair
    ]
    assert states == [RUNNING, RUNNING]


@docker
def test_trust_shows_one_line_per_key_with_its_fingerprint(bare_pair, tmp_path):
    shown: list[str] = []
    result = trust_hosts(targets(*bare_pair), tmp_path / "kh", lambda: True, show=shown.append)
    assert shown == [f"{k.host} {k.address} {k.kind} {k.fingerprint} ({NEW})" for k in result.keys]


@docker
def test_declined_trust_writes_nothing(bare_pair, tmp_path):
    known = tmp_path / "known_hosts"
    result = trust_hosts(targets(*bare_pair), known, confirm=lambda: False, show=lambda _: None)
    assert (result.written, known.exists()) == (False, False)


@docker
def test_no_terminal_and_no_yes_writes_nothing_and_exits_2(bare_pair, tmp_path):
    known = tmp_path / "known_hosts"
    with pytest.raises(RingfleetError) as err:
        trust_hosts(targets(*bare_pair), known, confirm=None, show=lambda _: None)
    assert (err.value.exit_code, known.exists()) == (USAGE_EXIT, False)


@docker
def test_trusted_file_is_public_0644(bare_pair, tmp_path):
    known = tmp_path / "known_hosts"
    trust_hosts(targets(*bare_pair), known, confirm=lambda: True, show=lambda _: None)
    assert stat.S_IMODE(known.stat().st_mode) == 0o644


@docker
def test_retrust_of_unchanged_keys_asks_nothing(bare_pair, tmp_path):
    known = tmp_path / "known_hosts"
    trust_hosts(targets(*bare_pair), known, confirm=lambda: True, show=lambda _: None)
    again = trust_hosts(targets(*bare_pair), known, confirm=None, show=lambda _: None)
    assert (set(again.status.values()), again.written) == ({UNCHANGED}, False)


@docker
def test_changed_key_is_shown_as_changed(bare_metal, bare_pair, tmp_path):
    first, other = bare_pair
    known = tmp_path / "known_hosts"
    known.write_text(bare_metal.known_hosts_lines(other, address=first.address))
    result = trust_hosts(targets(first), known, confirm=lambda: False, show=lambda _: None)
    assert result.status == {first.name: CHANGED}


@docker
def test_rewrite_replaces_the_hosts_lines_and_keeps_others(bare_metal, bare_pair, tmp_path):
    first, other = bare_pair
    known = tmp_path / "known_hosts"
    known.write_text(OTHER_LINE + "\n" + bare_metal.known_hosts_lines(other, first.address))
    trust_hosts(targets(first), known, confirm=lambda: True, show=lambda _: None)
    assert known.read_text() == OTHER_LINE + "\n" + bare_metal.known_hosts_lines(first)


@docker
def test_host_on_another_port_is_written_bracketed(bare_metal, tmp_path):
    host = bare_metal.host("port2222", port=2222)
    known = tmp_path / "known_hosts"
    trust_hosts(targets(host), known, confirm=lambda: True, show=lambda _: None)
    names = {line.split()[0] for line in known.read_text().splitlines()}
    assert names == {f"[{host.address}]:2222"}
