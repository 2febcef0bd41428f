"""Simulated bare metal: hosts ringfleet never configured, reached only over SSH.

A bare host is a container from the base image plus what a site's own install
gives a machine before ringfleet sees it: `openssh-server`, `sudo`, Python 3
and a non-root admin account with a key (and, by default, NOPASSWD sudo). sshd
is the main process (no systemd). The fixture may use Docker to create, connect
and kill these hosts; the code under test gets only what a user would write in
a spec: address, port, admin user, key file and a known_hosts file.

Installing openssh-server takes a while, so the package layer is baked once into
`ringfleet/bare-host:<hash>`, the hash taken over this file's recipe and the base
image's id, and rebuilt whenever that tag is absent.
"""

from __future__ import annotations

import hashlib
import io
import ipaddress
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import report

BASE_TAG = "ringfleet/base:bookworm"
BARE_REPO = "ringfleet/bare-host"
# Every name this fixture makes starts so: never `rf-local-*`, whose env may be up.
PREFIX = "rf-bm-"
LABEL = "ringfleet.test"
LABEL_VALUE = "baremetal"
# Private subnets no spec or test of this repo uses (10.213-10.220 are taken).
CLUSTER_SUBNET = "10.226.0.0/24"
# A host joined to this network first names its cluster interface eth1, not eth0.
FIRST_SUBNET = "10.227.0.0/24"
CLUSTER_NET = f"{PREFIX}net"
FIRST_NET = f"{PREFIX}first"
SHARED_VOLUME = f"{PREFIX}shared"
# The same path as the other envs' shared storage.
SHARED_MOUNT = "/shared"
ADMIN = "ops"
SSH_READY_SECONDS = 30

# What the site installed; host keys are removed so each host makes its own at start.
BAKE_SCRIPT = """
set -eu
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends openssh-server sudo python3 >/dev/null
rm -f /etc/ssh/ssh_host_*
rm -rf /var/lib/apt/lists/*
"""

# The container's command: the site's own account set-up, then sshd in the foreground.
INIT_SCRIPT = r"""#!/bin/sh
set -eu
ssh-keygen -A >/dev/null
if [ "$RF_BM_ADMIN" = root ]; then
    home=/root
else
    useradd --create-home --shell /bin/bash "$RF_BM_ADMIN"
    home=/home/$RF_BM_ADMIN
fi
install -d -m 0700 -o "$RF_BM_ADMIN" -g "$RF_BM_ADMIN" "$home/.ssh"
printf '%s\n' "$RF_BM_PUBKEY" > "$home/.ssh/authorized_keys"
chown "$RF_BM_ADMIN:$RF_BM_ADMIN" "$home/.ssh/authorized_keys"
chmod 0600 "$home/.ssh/authorized_keys"
case "$RF_BM_SUDO" in
    nopasswd) rule="ALL=(ALL:ALL) NOPASSWD: ALL" ;;
    password) rule="ALL=(ALL:ALL) ALL" ;;
    *) rule="" ;;
esac
if [ -n "$rule" ] && [ "$RF_BM_ADMIN" != root ]; then
    printf '%s %s\n' "$RF_BM_ADMIN" "$rule" > /etc/sudoers.d/90-site-admin
    chmod 0440 /etc/sudoers.d/90-site-admin
fi
mkdir -p /run/sshd
exec /usr/sbin/sshd -D -e -p "$RF_BM_PORT"
"""
INIT_PATH = "/usr/local/sbin/rf-bm-init"  # written by put_archive below


def _docker():
    import docker

    return docker.from_env()


def bare_image_tag(base_id: str) -> str:
    recipe = "\n".join([BAKE_SCRIPT, INIT_SCRIPT, INIT_PATH, base_id])
    return f"{BARE_REPO}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def ensure_bare_image(client) -> tuple[str, bool]:
    """The bare-host image's tag, baked when absent; also whether it was baked now."""
    from ringfleet.providers.docker.baseimage import ensure_base_image, find_image

    base_id = ensure_base_image(client, BASE_TAG)
    tag = bare_image_tag(base_id)
    if find_image(client, tag) is not None:
        return tag, False
    name = f"{PREFIX}bake"
    _remove(client.containers, name)
    container = client.containers.run(
        BASE_TAG, ["sleep", "infinity"], name=name, detach=True, labels={LABEL: LABEL_VALUE}
    )
    try:
        code, out = container.exec_run(["/bin/sh", "-c", BAKE_SCRIPT])
        assert code == 0, out.decode(errors="replace")[-2000:]
        assert container.put_archive("/usr/local/sbin", _tar_one("rf-bm-init", INIT_SCRIPT))
        repo, _, version = tag.rpartition(":")
        container.commit(
            repository=repo,
            tag=version,
            changes=[f'CMD ["{INIT_PATH}"]', "EXPOSE 22"],
        )
    finally:
        _remove(client.containers, name)
    return tag, True


def _tar_one(name: str, text: str) -> bytes:
    """A tar holding one executable file, for `put_archive`."""
    data = text.encode()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o755
        tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _remove(collection, name: str) -> None:
    import docker.errors

    try:
        item = collection.get(name)
    except docker.errors.NotFound:
        return
    if hasattr(item, "reload"):
        try:
            item.remove(force=True)
        except TypeError:
            item.remove()


@dataclass(frozen=True)
class AdminKey:
    private: Path
    public: str


@dataclass(frozen=True)
class BareHost:
    """One host as a spec would describe it, plus what the fixture knows of its insides."""

    name: str
    address: str
    port: int
    admin: str
    interface: str
    """The host's own name for its cluster interface (eth0, or eth1 when joined second)."""


@dataclass
class BareMetal:
    """Hosts on their own network, made and removed by the fixture."""

    client: object
    image: str
    key: AdminKey
    hosts: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)

    def host(
        self,
        role: str,
        *,
        admin: str = ADMIN,
        sudo: str = "nopasswd",
        port: int = 22,
        joined_second: bool = False,
        key: AdminKey | None = None,
        volume: str | None = SHARED_VOLUME,
    ) -> BareHost:
        """Start host `rf-bm-<role>`; `joined_second` puts its cluster interface on eth1.

        `volume` is mounted at SHARED_MOUNT: the shared one, another (`rf-bm-*`,
        made here, so that host has a file system of its own there) or none.
        """
        name = f"{PREFIX}{role}"
        _remove(self.client.containers, name)
        mounts = {}
        if volume is not None:
            assert volume.startswith(PREFIX), volume
            if volume != SHARED_VOLUME and volume not in self.volumes:
                self.client.volumes.create(volume, labels={LABEL: LABEL_VALUE})
                self.volumes.append(volume)
            mounts = {volume: {"bind": SHARED_MOUNT, "mode": "rw"}}
        first = FIRST_NET if joined_second else CLUSTER_NET
        container = self.client.containers.create(
            self.image,
            name=name,
            hostname=name,
            init=True,
            network=first,
            environment={
                "RF_BM_ADMIN": admin,
                "RF_BM_PUBKEY": (key or self.key).public,
                "RF_BM_SUDO": sudo,
                "RF_BM_PORT": str(port),
            },
            volumes=mounts,
            labels={LABEL: LABEL_VALUE},
        )
        self.hosts.append(name)
        container.start()
        if joined_second:
            self.client.networks.get(CLUSTER_NET).connect(container)
        container.reload()
        net = container.attrs["NetworkSettings"]["Networks"][CLUSTER_NET]
        address, mac = net["IPAddress"], net["MacAddress"]
        host = BareHost(name, address, port, admin, _interface_with_mac(container, mac))
        _wait_for_sshd(host)
        return host

    def host_keys(self, host: BareHost) -> list[tuple[str, str]]:
        """(type, base64) of each public host key, read from the host's own files."""
        container = self.client.containers.get(host.name)
        code, out = container.exec_run(["/bin/sh", "-c", "cat /etc/ssh/ssh_host_*_key.pub"])
        assert code == 0, out
        return [tuple(line.split()[:2]) for line in out.decode().splitlines() if line.strip()]

    def known_hosts_lines(self, host: BareHost, address: str | None = None) -> str:
        """known_hosts lines for `host`'s keys, under `address` (default: its own)."""
        name = address or host.address
        if host.port != 22:
            name = f"[{name}]:{host.port}"
        return "".join(f"{name} {kind} {key}\n" for kind, key in self.host_keys(host))

    def kill(self, host: BareHost) -> None:
        self.client.containers.get(host.name).kill()

    def close(self) -> None:
        for name in self.hosts:
            _remove(self.client.containers, name)
        self.hosts.clear()
        for name in self.volumes:
            _remove(self.client.volumes, name)
        self.volumes.clear()


def _interface_with_mac(container, mac: str) -> str:
    script = 'for d in /sys/class/net/*; do echo "${d##*/} $(cat $d/address)"; done'
    code, out = container.exec_run(["/bin/sh", "-c", script])
    assert code == 0, out
    for line in out.decode().splitlines():
        nic, _, addr = line.partition(" ")
        if addr.strip().lower() == mac.lower():
            return nic
    raise AssertionError(f"{container.name}: no interface with MAC {mac}: {out!r}")


def _wait_for_sshd(host: BareHost) -> None:
    """Until sshd sends its banner (it starts after the host keys are made)."""
    deadline = time.monotonic() + SSH_READY_SECONDS
    last: object = None
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host.address, host.port), timeout=2) as sock:
                if sock.recv(64).startswith(b"SSH-"):
                    return
        except OSError as exc:
            last = exc
        time.sleep(0.2)
    raise AssertionError(f"{host.name}: sshd not answering on {host.address}:{host.port}: {last}")


def _clear_leftovers(client) -> None:
    """What an interrupted earlier session of these tests left behind (by label only)."""
    for container in client.containers.list(all=True, filters={"label": f"{LABEL}={LABEL_VALUE}"}):
        container.remove(force=True)
    for name in (CLUSTER_NET, FIRST_NET):
        _remove(client.networks, name)
    for volume in client.volumes.list(filters={"label": f"{LABEL}={LABEL_VALUE}"}):
        volume.remove(force=True)


def _check_subnets_free(client) -> None:
    """Refuse to start when another network already uses our subnets."""
    ours = [ipaddress.ip_network(s) for s in (CLUSTER_SUBNET, FIRST_SUBNET)]
    for net in client.networks.list():
        for config in (net.attrs.get("IPAM") or {}).get("Config") or []:
            subnet = config.get("Subnet")
            if subnet and any(ipaddress.ip_network(subnet).overlaps(o) for o in ours):
                pytest.fail(f"docker network {net.name} uses {subnet}, which the fixture needs")


@pytest.fixture(scope="session")
def admin_key(tmp_path_factory) -> AdminKey:
    """The site admin's key pair, made for this test session (private part 0600)."""
    directory = tmp_path_factory.mktemp("bm-admin-key")
    directory.chmod(0o700)
    private = directory / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "ringfleet-bm-test", "-f", private],
        check=True,
    )
    private.chmod(0o600)
    return AdminKey(private, (directory / "id_ed25519.pub").read_text().strip())


@pytest.fixture(scope="module")
def bare_metal(admin_key, request) -> Iterator[BareMetal]:
    """Networks, the shared volume and a host factory; everything removed at module end.

    A module that sets `AIR_GAPPED = True` gets internal networks: its hosts reach each
    other and the controller reaches them, but nothing routes them anywhere else (no
    PyPI, no Debian mirror), as at a site without internet."""
    client = _docker()
    internal = bool(getattr(request.module, "AIR_GAPPED", False))
    started = time.monotonic()
    image, baked = ensure_bare_image(client)
    image_seconds = time.monotonic() - started
    _clear_leftovers(client)
    _check_subnets_free(client)
    for name, subnet in ((CLUSTER_NET, CLUSTER_SUBNET), (FIRST_NET, FIRST_SUBNET)):
        import docker.types

        pool = docker.types.IPAMPool(subnet=subnet)
        client.networks.create(
            name,
            driver="bridge",
            internal=internal,
            ipam=docker.types.IPAMConfig(pool_configs=[pool]),
            labels={LABEL: LABEL_VALUE},
        )
    client.volumes.create(SHARED_VOLUME, labels={LABEL: LABEL_VALUE})
    metal = BareMetal(client, image, admin_key)
    report(
        request,
        f"bare metal: image {image} {'baked' if baked else 'cached'} in {image_seconds:.1f} s"
        + (", networks internal (air-gapped)" if internal else ""),
    )
    try:
        yield metal
    finally:
        metal.close()
        for name in (CLUSTER_NET, FIRST_NET):
            _remove(client.networks, name)
        _remove(client.volumes, SHARED_VOLUME)


@pytest.fixture(scope="module")
def bare_pair(bare_metal, request) -> tuple[BareHost, BareHost]:
    """Two bare hosts sharing the volume; the second one's cluster interface is eth1."""
    started = time.monotonic()
    pair = (bare_metal.host("h1"), bare_metal.host("h2", joined_second=True))
    report(request, f"bare metal: 2 hosts answering SSH in {time.monotonic() - started:.1f} s")
    return pair
