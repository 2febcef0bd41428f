"""The controller's known_hosts for local nodes, from host keys read over the Docker API."""

from __future__ import annotations

import pytest

from ringfleet.providers.docker.login import Login, write_known_hosts

KEYS = "ssh-ed25519 AAAAC3Nza1 root@n1\necdsa-sha2-nistp256 AAAAE2Vj root@n1"


@pytest.mark.parametrize(
    ("port", "first"),
    [(22, "10.0.0.5 ssh-ed25519 AAAAC3Nza1"), (2222, "[10.0.0.5]:2222 ssh-ed25519 AAAAC3Nza1")],
)
def test_known_hosts_names_each_node_by_the_address_ansible_dials(tmp_path, port, first) -> None:
    login = Login(tmp_path / "key", tmp_path / "known_hosts", "10.0.0.1", {"n1": KEYS})
    write_known_hosts(login, {"n1": "10.0.0.5"}, port)
    assert login.known_hosts.read_text().splitlines()[0] == first


def test_known_hosts_holds_every_host_key_of_a_node(tmp_path) -> None:
    login = Login(tmp_path / "key", tmp_path / "known_hosts", "10.0.0.1", {"n1": KEYS})
    write_known_hosts(login, {"n1": "10.0.0.5"}, 22)
    assert len(login.known_hosts.read_text().splitlines()) == 2
