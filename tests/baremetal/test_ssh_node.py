"""SshNode against simulated bare metal: only address, port, admin, key and known_hosts."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ringfleet.errors import RingfleetError
from ringfleet.nodes import RUNNING, Node
from ringfleet.nodes.ssh import UNREACHABLE, SshNode
from tests.baremetal.conftest import ADMIN
from tests.conftest import ROOT

pytestmark = pytest.mark.docker

# A killed host must show as unreachable and end its streams within this (the
# keepalives give up after 6 s; the rest is slack for a busy machine).
LOST_WITHIN_SECONDS = 20


@pytest.fixture(scope="module")
def known_hosts(bare_metal, bare_pair, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bm-trust") / "known_hosts"
    path.write_text("".join(bare_metal.known_hosts_lines(h) for h in bare_pair))
    return path


def make_node(host, key: Path, known_hosts: Path, **kw) -> SshNode:
    return SshNode(
        host.name,
        host.address,
        port=host.port,
        admin_user=host.admin,
        key_file=key,
        known_hosts=known_hosts,
        **kw,
    )


@pytest.fixture(scope="module")
def node(bare_pair, admin_key, known_hosts) -> SshNode:
    return make_node(bare_pair[0], admin_key.private, known_hosts)


@pytest.fixture(scope="module")
def second(bare_pair, admin_key, known_hosts) -> SshNode:
    return make_node(bare_pair[1], admin_key.private, known_hosts)


def test_ssh_node_implements_the_node_protocol(node):
    assert isinstance(node, Node)


def test_state_of_an_answering_host_is_running(node):
    assert node.state() == RUNNING


def test_run_as_admin(node):
    assert node.run(["id", "-un"], user=ADMIN)[1].strip() == ADMIN


def test_run_as_root_goes_through_sudo(node):
    assert node.run(["id", "-u"])[1].strip() == "0"


def test_run_as_another_user(node):
    assert node.run(["id", "-un"], user="nobody")[1].strip() == "nobody"


def test_run_keeps_arguments_whole(node):
    assert node.run(["printf", "%s|", "a b", "$HOME", "'q'"], user=ADMIN)[1] == "a b|$HOME|'q'|"


def test_run_returns_the_exit_code_unchecked(node):
    assert node.run(["sh", "-c", "exit 7"], check=False)[0] == 7


def test_run_returns_a_commands_own_255_as_its_exit_code(node):
    # 255 is also ssh's own error code; a live connection tells them apart.
    assert node.run(["sh", "-c", "exit 255"], check=False)[0] == 255


def test_run_checked_failure_is_one_line_naming_the_node(node):
    with pytest.raises(RingfleetError) as err:
        node.run(["sh", "-c", "echo boom; exit 3"])
    assert "\n" not in str(err.value) and node.name in str(err.value)


@pytest.mark.parametrize(("owner", "mode"), [("admin", 0o640), ("root", 0o600), ("admin", 0o755)])
def test_put_file_sets_owner_and_mode(node, owner, mode):
    uid = int(node.run(["id", "-u", ADMIN])[1]) if owner == "admin" else 0
    gid = int(node.run(["id", "-g", ADMIN])[1]) if owner == "admin" else 0
    path = f"/tmp/put-{owner}-{mode:o}"
    node.put_file(path, b"payload\n", (uid, gid), mode)
    stat = node.run(["stat", "-c", "%u %g %a", path])[1].split()
    assert stat == [str(uid), str(gid), f"{mode:o}"]


def test_put_file_writes_the_bytes(node):
    data = bytes(range(256)) * 4
    node.put_file("/tmp/put-bytes", data, (0, 0))
    digest = node.run(["sha256sum", "/tmp/put-bytes"])[1].split()[0]
    assert digest == hashlib.sha256(data).hexdigest()


def test_stream_gives_lines_and_exit_code(node):
    stream = node.stream(["sh", "-c", "echo one; echo two >&2; exit 3"], user=ADMIN)
    lines = _read_all(stream)
    assert (lines, stream.exit_code()) == (["one", "two"], 3)


def test_stream_gives_lines_before_the_command_ends(node):
    stream = node.stream(["sh", "-c", "echo first; sleep 5; echo last"], user=ADMIN)
    first = list(stream.read(0, 4))
    assert (first, stream.done) == (["first"], False)
    _read_all(stream)


def test_stream_runs_in_workdir_as_user(node):
    stream = node.stream(["sh", "-c", "echo $(id -un) $(pwd)"], user="nobody", workdir="/tmp")
    assert _read_all(stream) == ["nobody /tmp"]


def test_second_host_cluster_interface_is_not_eth0(bare_pair, second):
    nic = bare_pair[1].interface
    address = second.run(["cat", f"/sys/class/net/{nic}/operstate"])[1].strip()
    assert (nic, address) == ("eth1", "up")


def test_proxy_jump_reaches_the_host_through_the_bastion(bare_pair, admin_key, known_hosts):
    bastion, target = bare_pair
    hop = make_node(target, admin_key.private, known_hosts, proxy_jump=f"{ADMIN}@{bastion.address}")
    seen = hop.run(["sh", "-c", "echo $SSH_CONNECTION"], user=ADMIN)[1].split()
    assert seen[0] == bastion.address


def test_wrong_host_key_is_refused_in_one_line_naming_the_host(
    bare_metal, bare_pair, admin_key, tmp_path
):
    first, other = bare_pair
    wrong = tmp_path / "known_hosts"
    wrong.write_text(bare_metal.known_hosts_lines(other, address=first.address))
    with pytest.raises(RingfleetError) as err:
        make_node(first, admin_key.private, wrong).run(["touch", "/tmp/should-not-exist"])
    text = str(err.value)
    assert ("\n" not in text, first.name in text, "trust" in text) == (True, True, True)


def test_wrong_host_key_runs_nothing(bare_metal, bare_pair, admin_key, tmp_path, node):
    first, other = bare_pair
    wrong = tmp_path / "known_hosts"
    wrong.write_text(bare_metal.known_hosts_lines(other, address=first.address))
    with pytest.raises(RingfleetError):
        make_node(first, admin_key.private, wrong).run(["touch", "/tmp/wrong-key-ran"])
    assert node.run(["test", "-e", "/tmp/wrong-key-ran"], check=False)[0] == 1


def test_unknown_host_is_refused_in_one_line_naming_the_host(bare_pair, admin_key, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(RingfleetError) as err:
        make_node(bare_pair[0], admin_key.private, empty).run(["true"])
    text = str(err.value)
    assert ("\n" not in text, bare_pair[0].name in text, "not in" in text) == (True, True, True)


def test_untrusted_host_state_says_untrusted(bare_pair, admin_key, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    assert make_node(bare_pair[0], admin_key.private, empty).state() == "untrusted"


def test_refused_sudo_is_one_line_saying_passwordless_sudo_is_needed(
    bare_metal, admin_key, tmp_path
):
    host = bare_metal.host("nosudo", sudo="password")
    trusted = tmp_path / "known_hosts"
    trusted.write_text(bare_metal.known_hosts_lines(host))
    with pytest.raises(RingfleetError) as err:
        make_node(host, admin_key.private, trusted).run(["id", "-u"])
    text = str(err.value)
    assert ("\n" not in text, host.name in text, "passwordless sudo" in text) == (True, True, True)


def test_root_admin_runs_as_another_user_without_sudo(bare_metal, admin_key, tmp_path):
    host = bare_metal.host("rootadmin", admin="root", sudo="none", port=2222)
    trusted = tmp_path / "known_hosts"
    trusted.write_text(bare_metal.known_hosts_lines(host))
    out = make_node(host, admin_key.private, trusted).run(["id", "-un"], user="nobody")[1]
    assert out.strip() == "nobody"


def test_killed_host_is_unreachable_within_seconds(bare_metal, admin_key, tmp_path):
    host = bare_metal.host("doomed")
    trusted = tmp_path / "known_hosts"
    trusted.write_text(bare_metal.known_hosts_lines(host))
    doomed = make_node(host, admin_key.private, trusted)
    assert doomed.state() == RUNNING
    bare_metal.kill(host)
    started = time.monotonic()
    state = doomed.state()
    assert (state, time.monotonic() - started < LOST_WITHIN_SECONDS) == (UNREACHABLE, True)


def test_killed_host_ends_its_stream_within_seconds(bare_metal, admin_key, tmp_path):
    host = bare_metal.host("doomed-stream")
    trusted = tmp_path / "known_hosts"
    trusted.write_text(bare_metal.known_hosts_lines(host))
    doomed = make_node(host, admin_key.private, trusted)
    stream = doomed.stream(["sh", "-c", "echo up; sleep 300"], user=ADMIN)
    assert list(stream.read(0, 10)) == ["up"]
    bare_metal.kill(host)
    started = time.monotonic()
    while not stream.done and time.monotonic() - started < LOST_WITHIN_SECONDS:
        list(stream.read(len(stream.lines), 1))
    assert (stream.done, stream.lines[-1]) == (
        True,
        f"[ringfleet] output stream ended: connection to {host.name} lost",
    )


def _read_all(stream, limit: float = 30) -> list[str]:
    deadline = time.monotonic() + limit
    while not stream.done and time.monotonic() < deadline:
        list(stream.read(len(stream.lines), 1))
    assert stream.done, "stream did not end"
    return list(stream.lines)


def test_stale_control_socket_is_replaced(bare_pair, admin_key, known_hosts, tmp_path):
    fresh = make_node(bare_pair[0], admin_key.private, known_hosts, sockets=tmp_path)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(fresh._socket))
    stale.close()
    assert (fresh.state(), fresh._master_alive()) == (RUNNING, True)


def test_close_ends_the_master_connection(bare_pair, admin_key, known_hosts, tmp_path):
    fresh = make_node(bare_pair[0], admin_key.private, known_hosts, sockets=tmp_path)
    fresh.connect()
    fresh.close()
    assert fresh._master_alive() is False


def ansible_adhoc(tmp_path, node: SshNode, *args: str) -> subprocess.CompletedProcess:
    """`ansible` against one host with the inventory variables the node gives."""
    inventory = tmp_path / "hosts.json"
    inventory.write_text(json.dumps({"all": {"hosts": {node.name: node.ansible_host_vars()}}}))
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_PYTHON_INTERPRETER": "/usr/bin/python3",
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "ansible"), "-i", str(inventory), "all", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


def test_ansible_with_the_node_vars_becomes_root_through_sudo(node, tmp_path):
    proc = ansible_adhoc(tmp_path, node, "-m", "ansible.builtin.command", "-a", "id -u")
    assert (proc.returncode, proc.stdout.split()[-1]) == (0, "0"), proc.stdout + proc.stderr


def test_ansible_with_the_node_vars_refuses_a_wrong_host_key(
    bare_metal, bare_pair, admin_key, tmp_path
):
    first, other = bare_pair
    wrong = tmp_path / "known_hosts"
    wrong.write_text(bare_metal.known_hosts_lines(other, address=first.address))
    node = make_node(first, admin_key.private, wrong)
    proc = ansible_adhoc(tmp_path, node, "-m", "ansible.builtin.command", "-a", "touch /tmp/x")
    said = proc.stdout + proc.stderr
    assert (proc.returncode != 0, "UNREACHABLE" in said) == (True, True), said
