"""sshd hardening, and SSH between every pair of nodes as the job user with host keys checked."""

from __future__ import annotations

import pytest

# Effective values (`sshd -T`) the ssh_mesh role sets.
HARDENED = {
    "passwordauthentication": "no",
    "kbdinteractiveauthentication": "no",
    "pubkeyauthentication": "yes",
    "permitrootlogin": "no",
}


def _settings(sshd_settings, node) -> dict[str, str]:
    result = sshd_settings(node)
    assert result.rc == 0, result.stderr[-500:]
    pairs = (line.split(None, 1) for line in result.stdout.splitlines() if line.strip())
    return {p[0]: (p[1] if len(p) > 1 else "") for p in pairs}


# Where the controller logs in as root (a static env's root admin, every local node:
# the converge goes over SSH), ssh_mesh keeps root's key logins: prohibit-password,
# which `sshd -T` prints under its old name.
ROOT_ADMIN_ROOT_LOGIN = "without-password"


def _hardened(setting: str, hostvars: dict) -> str:
    if setting == "permitrootlogin" and hostvars.get("ringfleet_admin_user") == "root":
        return ROOT_ADMIN_ROOT_LOGIN
    return HARDENED[setting]


@pytest.mark.parametrize("setting", sorted(HARDENED))
def test_sshd_setting_is_hardened(node, sshd_settings, hostvars, setting: str) -> None:
    assert _settings(sshd_settings, node).get(setting) == _hardened(setting, hostvars)


def test_sshd_listens_on_the_cluster_port(shell, hostvars) -> None:
    port = int(hostvars.get("ringfleet_ssh_port", 22))
    # ss -Htln: state, recv-q, send-q, local address:port, peer address:port
    local = [line.split()[3] for line in shell.output("ss -Htln").splitlines() if line.strip()]
    assert [a for a in local if a.rsplit(":", 1)[-1] == str(port)] != [], local


def test_ssh_between_nodes_checks_host_keys(shells, src, dst, job_user, hostnames) -> None:
    # UserKnownHostsFile=/dev/null: only the cluster-wide /etc/ssh/ssh_known_hosts counts,
    # not keys a user once accepted by hand.
    command = (
        "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=/dev/null "
        f"{dst} hostname"
    )
    result = shells[src].run(command, user=job_user)
    assert (result.rc, result.stdout.strip()) == (0, hostnames(dst).stdout.strip()), result.stderr
