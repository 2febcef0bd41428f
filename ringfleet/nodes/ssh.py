"""Nodes reached over SSH: hosts the user owns (static) and cloud instances (aws).

This uses the OpenSSH client rather than asyncssh or paramiko: it is what the
converge (Ansible) already uses, so one known_hosts file, one key and one
ProxyJump setting behave the same for converge and for run/verify/lock, and a
ControlMaster socket gives one authenticated connection per host that every
later command reuses in milliseconds. Its keepalives also tell a lost host
within seconds, with no event loop or extra dependency in the controller.

Host keys are always checked strictly against the given known_hosts file (never
~/.ssh/known_hosts, never the agent): an unknown or changed key is a one-line
error naming the host, and nothing runs. A non-root admin reaches other users
with `sudo -n`, so a host without passwordless sudo is one line too, not a hang.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.nodes import RUNNING
from ringfleet.state import check_private_key

# Seconds to wait for a host to accept a TCP connection.
CONNECT_TIMEOUT = 5
# A silent connection is dropped after INTERVAL * COUNT seconds: a killed host ends
# its streams and shows as unreachable within that, not after TCP's minutes.
SERVER_ALIVE_INTERVAL = 2
SERVER_ALIVE_COUNT = 3
# How long an idle master connection stays for the next command (or CLI call).
CONTROL_PERSIST_SECONDS = 120
# Upper bound for `state()`: connect plus one round trip.
STATE_TIMEOUT = CONNECT_TIMEOUT + SERVER_ALIVE_INTERVAL * SERVER_ALIVE_COUNT
# ssh's own exit code for its errors (a remote command may use it too; see `_lost`).
SSH_ERROR = 255
# States other than RUNNING.
UNREACHABLE = "unreachable"
UNTRUSTED = "untrusted"
DENIED = "denied"

# What ssh says on stderr, mapped to a state and what to tell the user. The first
# match wins; anything else is `unreachable` with ssh's last line.
_FAILURES = (
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", UNTRUSTED, "host key does not match {kh}"),
    ("Host key verification failed", UNTRUSTED, "host key is not in {kh}"),
    ("Permission denied", DENIED, "key {key} not accepted for user {user}"),
)
_TRUST_HINT = "check the host, then run `{trust}`"
_SUDO_REFUSED = (
    "admin user {user} may not run sudo without a password; "
    "ringfleet needs passwordless sudo (NOPASSWD) for it on every host"
)
# Writes a file atomically as the user running it; argv: path, mode (octal).
_PUT_SCRIPT = (
    'set -e; umask 077; t=$(mktemp "$1.rf-XXXXXX"); trap \'rm -f "$t"\' EXIT; '
    'cat > "$t"; chmod "$2" "$t"; mv -f "$t" "$1"; trap - EXIT'
)


# ssh.proxy_jump: [user@]host[:port], the host an IPv6 address in brackets when a port follows.
_PROXY_JUMP = re.compile(
    r"(?:(?P<user>[A-Za-z0-9._][A-Za-z0-9._-]*)@)?"
    r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<host>[A-Za-z0-9._:-]+?))"
    r"(?::(?P<port>[0-9]{1,5}))?"
)


def parse_proxy_jump(name: str, value: str) -> tuple[str | None, str, int]:
    """(user, host, port) of a `[user@]host[:port]` bastion; anything else is one line."""
    match = _PROXY_JUMP.fullmatch(value)
    host = match and (match.group("v6") or match.group("host"))
    if not match or not host or host.startswith("-"):
        raise RingfleetError(name, "ssh.proxy_jump: not [user@]host[:port]", value)
    if host.count(":") > 1 and match.group("port") and not match.group("v6"):
        # `2001:db8::1:22` is an address, not an address and a port.
        host, port = f"{host}:{match.group('port')}", 22
    else:
        port = int(match.group("port") or 22)
    if not 0 < port < 65536:
        raise RingfleetError(name, "ssh.proxy_jump: port out of range", value)
    return match.group("user"), host, port


def control_dir() -> Path:
    """Where master sockets live: short (socket paths are limited to ~100 bytes), 0700."""
    path = Path(tempfile.gettempdir()) / f"rf-ssh-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if info.st_uid != os.getuid() or info.st_mode & 0o077 or path.is_symlink():
        raise RingfleetError(str(path), "SSH control directory is not private to this user")
    return path


class SshNode:
    """One host reached with the OpenSSH client as `admin_user`."""

    def __init__(
        self,
        name: str,
        address: str,
        *,
        admin_user: str,
        key_file: Path,
        known_hosts: Path,
        port: int = 22,
        proxy_jump: str | None = None,
        trust_command: str = "ringfleet trust ENV",
        sockets: Path | None = None,
    ):
        for label, value in (("address", address), ("admin user", admin_user)):
            if not value or value.startswith("-") or any(c.isspace() for c in value):
                raise RingfleetError(name, f"not a usable SSH {label}", value)
        self._hop = parse_proxy_jump(name, proxy_jump) if proxy_jump is not None else None
        self.name = name
        self.address = address
        self.port = port
        self.admin_user = admin_user
        self.key_file = check_private_key(Path(key_file))
        self.known_hosts = Path(known_hosts)
        self.proxy_jump = proxy_jump
        self.trust_command = trust_command
        self._sudo_checked = False
        self._lock = threading.Lock()
        self._socket = (sockets or control_dir()) / self._socket_name()

    def _socket_name(self) -> str:
        """One master per host *and trust*: a master opened under other keys is never reused.

        A command through a master skips host key checking, so the known_hosts
        content and the key are part of the socket's name.
        """
        try:
            known = self.known_hosts.read_bytes()
        except OSError:
            known = b""
        ident = "\0".join(
            [
                self.address,
                str(self.port),
                self.admin_user,
                str(self.key_file.resolve()),
                self.proxy_jump or "",
                hashlib.sha256(known).hexdigest(),
            ]
        )
        return hashlib.sha256(ident.encode()).hexdigest()[:24]

    # -- the ssh command line ------------------------------------------------------

    def _trust_options(self) -> list[str]:
        """Who to trust and how to log in: the same for the host, its bastion and Ansible.

        No user config (`-F /dev/null`), no agent, no other known_hosts file.
        """
        opts = {
            "BatchMode": "yes",
            "StrictHostKeyChecking": "yes",
            "UserKnownHostsFile": str(self.known_hosts),
            "GlobalKnownHostsFile": "/dev/null",
            "CheckHostIP": "no",
            "IdentitiesOnly": "yes",
            "IdentityAgent": "none",
            "IdentityFile": str(self.key_file),
            "ConnectTimeout": str(CONNECT_TIMEOUT),
            "ServerAliveInterval": str(SERVER_ALIVE_INTERVAL),
            "ServerAliveCountMax": str(SERVER_ALIVE_COUNT),
            "LogLevel": "ERROR",
        }
        args = ["-F", "/dev/null"]
        for key, value in opts.items():
            args += ["-o", f"{key}={value}"]
        return args

    def _options(self) -> list[str]:
        args = [*self._trust_options(), "-p", str(self.port), "-l", self.admin_user]
        args += ["-o", f"ControlPath={self._socket}"]
        if self.proxy_jump:
            args += ["-o", f"ProxyCommand={self._proxy_command()}"]
        return args

    def ansible_host_vars(self) -> dict[str, object]:
        """Inventory variables that make Ansible reach this host as this node does.

        Same key, known_hosts file, strictness and bastion, and the same master
        socket: Ansible's default one (~/.ansible/cp, named by host, port and user
        only) would let a master opened under other trust run commands on a host
        whose key no longer matches. A non-root admin becomes root with sudo, which
        Ansible runs with -n when it has no password.
        """
        common = [*self._trust_options(), "-o", f"ControlPath={self._socket}"]
        if self.proxy_jump:
            common += ["-o", f"ProxyCommand={self._proxy_command()}"]
        hostvars: dict[str, object] = {
            "ansible_host": self.address,
            "ansible_port": self.port,
            "ansible_user": self.admin_user,
            "ansible_ssh_private_key_file": str(self.key_file),
            "ansible_ssh_common_args": shlex.join(common),
        }
        if self.admin_user != "root":
            hostvars.update(ansible_become=True, ansible_become_method="sudo")
        return hostvars

    def _proxy_command(self) -> str:
        """The bastion hop with the same key, known_hosts and strictness as the host.

        `-o ProxyJump` would start the hop's ssh without our command-line options
        (it reads only config files), so the hop is spelled out.
        """
        assert self._hop is not None
        user, host, port = self._hop
        hop = ["ssh", *self._trust_options(), "-p", str(port)]
        if user:
            hop += ["-l", user]
        hop += ["-W", "[%h]:%p", "--", host]
        return shlex.join(hop)

    def ssh_argv(self, remote: list[str]) -> list[str]:
        """argv of one command through the master (or, if it just died, as a new master);
        callers add options after argv[0] (ssh keeps the first value of an option)."""
        return [
            "ssh",
            *self._options(),
            # auto: should the master have gone since `connect`, this one takes over.
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPersist={CONTROL_PERSIST_SECONDS}",
            "-T",
            "--",
            self.address,
            shlex.join(remote),
        ]

    # -- the master connection -----------------------------------------------------

    def _master_alive(self) -> bool:
        if not self._socket.exists():
            return False
        check = ["ssh", *self._options(), "-O", "check", "--", self.address]
        return subprocess.run(check, capture_output=True, timeout=STATE_TIMEOUT).returncode == 0

    def connect(self) -> None:
        """Open the master connection unless one is up; a refusal raises one line.

        `ControlMaster=auto` with a command, not `-M -N -f`: a stale socket is
        replaced, and when two callers race, the loser runs its `true` over a plain
        connection and exits instead of lingering as a second, unmanaged login.
        """
        with self._lock:
            if self._master_alive():
                return
            self._start_master()

    def _start_master(self) -> None:
        argv = [
            "ssh",
            *self._options(),
            "-o",
            "ControlMaster=auto",
            "-o",
            f"ControlPersist={CONTROL_PERSIST_SECONDS}",
            "-T",
            "--",
            self.address,
            "true",
        ]
        # stderr to a file: should the backgrounded master keep it open, a pipe would
        # hold this call until the master exits.
        with tempfile.TemporaryFile() as err:
            try:
                code = subprocess.run(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=err,
                    timeout=STATE_TIMEOUT,
                    start_new_session=True,
                ).returncode
            except subprocess.TimeoutExpired:
                raise self._failure(UNREACHABLE, "no answer", None) from None
            err.seek(0)
            text = err.read().decode(errors="replace")
        if code != 0:
            raise self._classify(text)

    def close(self) -> None:
        """End the master connection now instead of after CONTROL_PERSIST_SECONDS idle."""
        if self._socket.exists():
            subprocess.run(
                ["ssh", *self._options(), "-O", "exit", "--", self.address],
                capture_output=True,
                timeout=STATE_TIMEOUT,
            )

    def _classify(self, stderr: str) -> _SshFailure:
        for needle, state, what in _FAILURES:
            if needle in stderr:
                return self._failure(state, what, None)
        lines = [line for line in stderr.strip().splitlines() if line.strip()]
        return self._failure(UNREACHABLE, "cannot connect", lines[-1] if lines else None)

    def _failure(self, state: str, what: str, got: str | None) -> _SshFailure:
        where = f"{self.name} ({self.address}:{self.port})"
        what = what.format(kh=self.known_hosts, key=self.key_file, user=self.admin_user)
        if state == UNTRUSTED:
            what += "; " + _TRUST_HINT.format(trust=self.trust_command)
        return _SshFailure(state, where, what, got)

    def _lost(self) -> bool:
        """After ssh exited 255: was it the connection (True) or the command's own code?"""
        try:
            return not self._master_alive()
        except subprocess.TimeoutExpired:
            return True

    # -- users ---------------------------------------------------------------------

    def _as_user(self, argv: list[str], user: str) -> list[str]:
        if user == self.admin_user:
            return list(argv)
        if self.admin_user == "root":
            return ["runuser", "-u", user, "--", *argv]
        self.check_sudo()
        if user == "root":
            return ["sudo", "-n", "-H", "--", *argv]
        return ["sudo", "-n", "-H", "-u", user, "--", *argv]

    def check_sudo(self) -> None:
        """Once per node: `sudo -n` must work for a non-root admin, else one line says so.

        Run before a converge too: Ansible's own "Missing sudo password" is neither
        one line nor says what the host needs.
        """
        if self.admin_user == "root":
            return
        if self._sudo_checked:
            return
        code, output = self._run_raw(["sudo", "-n", "true"])
        if code != 0:
            raise RingfleetError(self.name, _SUDO_REFUSED.format(user=self.admin_user))
        self._sudo_checked = True

    # -- the Node protocol ---------------------------------------------------------

    def state(self) -> str:
        try:
            self.connect()
            proc = subprocess.run(
                self.ssh_argv(["true"]),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=STATE_TIMEOUT,
            )
        except _SshFailure as exc:
            return exc.state
        except subprocess.TimeoutExpired:
            return UNREACHABLE
        return RUNNING if proc.returncode == 0 else UNREACHABLE

    def _run_raw(self, remote: list[str], data: bytes | None = None) -> tuple[int, str]:
        self.connect()
        proc = subprocess.run(
            self.ssh_argv(remote),
            input=data if data is not None else b"",
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        if proc.returncode == SSH_ERROR and self._lost():
            raise self._failure(UNREACHABLE, "connection lost", None)
        return proc.returncode, proc.stdout.decode(errors="replace")

    def run(self, argv: list[str], user: str = "root", check: bool = True) -> tuple[int, str]:
        """Run argv to completion as `user`; returns (exit code, combined output)."""
        code, text = self._run_raw(self._as_user(argv, user))
        if check and code != 0:
            raise RingfleetError(
                self.name, f"command failed ({code}): {' '.join(argv)[:80]}", text.strip()[-200:]
            )
        return code, text

    def output(self, argv: list[str], user: str = "root") -> str:
        """stdout of argv as `user`, which must succeed; stderr only names what went wrong.

        Kept apart from stdout so parsers (lock, verify) never read a warning as data.
        """
        self.connect()
        proc = subprocess.run(
            self.ssh_argv(self._as_user(argv, user)),
            stdin=subprocess.DEVNULL,
            capture_output=True,
        )
        if proc.returncode == SSH_ERROR and self._lost():
            raise self._failure(UNREACHABLE, "connection lost", None)
        if proc.returncode != 0:
            text = (proc.stderr or proc.stdout).decode(errors="replace")
            raise RuntimeFailure(
                self.name,
                f"command failed ({proc.returncode}): {' '.join(argv)[:80]}",
                text.strip()[-200:],
            )
        return proc.stdout.decode(errors="replace")

    def put_file(self, path: str, data: bytes, owner: tuple[int, int], mode: int = 0o644) -> None:
        """Write one file atomically (directory must exist), owned by uid/gid `owner`.

        It is written *as* the owner (setpriv), not written by root and chowned:
        shared storage often maps root to nobody (NFS root_squash), and the run
        records this writes live there.
        """
        uid, gid = owner
        write = ["sh", "-c", _PUT_SCRIPT, "sh", path, f"{mode:o}"]
        if uid != 0:
            write = ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", *write]
        code, text = self._run_raw(self._as_user(write, "root"), data)
        if code != 0:
            raise RingfleetError(self.name, f"could not write {path}", text.strip()[-200:])

    def stream(self, argv: list[str], user: str, workdir: str | None = None) -> SshStream:
        """Start argv as `user` (in `workdir`) and return its output as it comes."""
        if workdir is not None:
            argv = ["env", f"--chdir={workdir}", "--", *argv]
        remote = self._as_user(argv, user)
        self.connect()
        proc = subprocess.Popen(
            self.ssh_argv(remote),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            # Ctrl-C is the caller's to handle (it stops ranks on every node), not ssh's.
            start_new_session=True,
        )
        return SshStream(proc, self)


class _SshFailure(RingfleetError):
    """ssh could not reach or log in to a host; `state` says which."""

    def __init__(self, state: str, where: str, what: str, got: str | None):
        self.state = state
        super().__init__(where, what, got)


class SshStream:
    """Lines of a command running over SSH, read on a thread."""

    def __init__(self, proc: subprocess.Popen, node: SshNode):
        self.proc = proc
        self.node = node
        self.lines: list[str] = []
        self.done = False
        self._code: int | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        try:
            for raw in self.proc.stdout:
                with self._cond:
                    self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                    self._cond.notify_all()
        finally:
            code = self.proc.wait()
            if code == SSH_ERROR and self.node._lost():
                with self._cond:
                    self.lines.append(
                        f"[ringfleet] output stream ended: connection to {self.node.name} lost"
                    )
            with self._cond:
                self._code = code
                self.done = True
                self._cond.notify_all()

    def read(self, start: int, wait: float) -> Iterator[str]:
        """Lines from index `start`, waiting up to `wait` seconds for new ones."""
        with self._cond:
            if len(self.lines) <= start and not self.done:
                self._cond.wait(wait)
            return iter(self.lines[start:])

    def exit_code(self) -> int | None:
        with self._cond:
            return self._code
