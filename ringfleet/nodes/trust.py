"""Trust on first use, made explicit: scan hosts' SSH keys, show them, write known_hosts.

SshNode (and the converge) check host keys strictly against an env's known_hosts
file and never add to it. This is the one place keys enter that file: after the
user has seen each host's fingerprint and confirmed, or passed `--yes`. The file
holds only public keys and is meant to be committed, so a later change of a
host's key shows in review as well as in ssh's refusal.

Keys are read with `ssh-keyscan` from the controller, so a host behind a
bastion (`ssh.proxy_jump`) cannot be scanned this way; its keys go into the file
by hand.
"""

from __future__ import annotations

import base64
import hashlib
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ringfleet.errors import RingfleetError
from ringfleet.files import write_atomic

# Seconds ssh-keyscan waits for a host before giving up on it.
SCAN_TIMEOUT = 5
DEFAULT_SSH_PORT = 22
# Public keys, meant to be committed: readable by all, like ~/.ssh/known_hosts.
KNOWN_HOSTS_MODE = 0o644
NEW, UNCHANGED, CHANGED = "new", "unchanged", "CHANGED"
NO_TERMINAL = (
    "not written: no terminal to confirm these host keys; "
    "check the fingerprints above and re-run with --yes"
)


@dataclass(frozen=True)
class HostKey:
    """One public host key a host offered."""

    host: str
    address: str
    port: int
    kind: str
    key: str

    @property
    def known_name(self) -> str:
        return known_hosts_name(self.address, self.port)

    @property
    def fingerprint(self) -> str:
        """`SHA256:...`, as `ssh-keygen -l` and ssh's own prompts show it."""
        digest = hashlib.sha256(base64.b64decode(self.key)).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    def line(self) -> str:
        return f"{self.known_name} {self.kind} {self.key}"


@dataclass
class TrustResult:
    """What `trust_hosts` found and did."""

    keys: list[HostKey]
    status: dict[str, str] = field(default_factory=dict)
    """Per host name: `new` (not in the file), `unchanged` or `CHANGED`."""
    written: bool = False


def known_hosts_name(address: str, port: int) -> str:
    """How known_hosts names a host: the bare address on port 22, else `[address]:port`."""
    return address if port == DEFAULT_SSH_PORT else f"[{address}]:{port}"


def _check_target(name: str, address: str, port: int) -> None:
    if not address or address.startswith("-") or any(c.isspace() for c in address):
        raise RingfleetError(name, "not a usable SSH address", address)
    if not 0 < port < 65536:
        raise RingfleetError(name, "not a usable SSH port", port)


def scan_host_keys(
    hosts: Sequence[tuple[str, str, int]], timeout: int = SCAN_TIMEOUT
) -> list[HostKey]:
    """Every public host key each (name, address, port) offers, in the order given.

    A host that offers none (down, filtered, no sshd) is a one-line error naming it.
    """
    by_port: dict[int, list[tuple[str, str]]] = {}
    for name, address, port in hosts:
        _check_target(name, address, port)
        by_port.setdefault(port, []).append((name, address))
    offered: dict[str, list[tuple[str, str]]] = {}
    errors: dict[int, str] = {}
    for port, targets in by_port.items():
        addresses = list(dict.fromkeys(address for _, address in targets))
        proc = subprocess.run(
            ["ssh-keyscan", "-T", str(timeout), "-p", str(port), "--", *addresses],
            capture_output=True,
            text=True,
        )
        errors[port] = proc.stderr
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3 and not parts[0].startswith("#"):
                offered.setdefault(parts[0], []).append((parts[1], parts[2]))
    keys: list[HostKey] = []
    for name, address, port in hosts:
        found = offered.get(known_hosts_name(address, port), [])
        if not found:
            said = [line for line in errors[port].splitlines() if line and not line.startswith("#")]
            raise RingfleetError(
                name,
                f"no SSH host key from {address} port {port}; is sshd running and reachable?",
                said[-1] if said else None,
            )
        keys += [HostKey(name, address, port, kind, key) for kind, key in sorted(set(found))]
    return keys


def read_known_hosts(path: Path) -> dict[str, set[tuple[str, str]]]:
    """Plain (unhashed) entries of a known_hosts file: name -> {(type, key)}."""
    entries: dict[str, set[tuple[str, str]]] = {}
    if not path.exists():
        return entries
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 3 or parts[0].startswith(("#", "|", "@")):
            continue
        for name in parts[0].split(","):
            entries.setdefault(name, set()).add((parts[1], parts[2]))
    return entries


def trust_hosts(
    hosts: Sequence[tuple[str, str, int]],
    known_hosts: Path,
    confirm: Callable[[], bool] | None,
    show: Callable[[str], None] = print,
    vouch: Callable[[list[HostKey]], None] | None = None,
) -> TrustResult:
    """Scan `hosts` (name, address, port), show each key's fingerprint, write on consent.

    `show` gets one line per key: host name, known_hosts name, key type,
    fingerprint and whether it is new, unchanged or CHANGED against the file.
    When every key is already in the file, nothing is asked or written.
    Otherwise `confirm()` decides; pass `lambda: True` for `--yes`, and None when
    there is no terminal to ask on and no `--yes`: that raises a one-line
    RingfleetError (exit code 2) and writes nothing. A declined confirmation
    returns with `written` False. Writing replaces the scanned hosts' entries and
    keeps every other line of the file, atomically, mode 0644.
    `vouch`, when given, checks the scanned keys against a second source (aws: the
    instances' console output) and raises before anything is shown or written.
    """
    keys = scan_host_keys(hosts)
    if vouch is not None:
        vouch(keys)
    existing = read_known_hosts(known_hosts)
    result = TrustResult(keys)
    for name, address, port in hosts:
        offered = {(k.kind, k.key) for k in keys if k.host == name}
        recorded = existing.get(known_hosts_name(address, port), set())
        if not recorded:
            result.status[name] = NEW
        elif offered <= recorded and recorded <= offered:
            result.status[name] = UNCHANGED
        else:
            result.status[name] = CHANGED
    for key in keys:
        show(
            f"{key.host} {key.known_name} {key.kind} {key.fingerprint} ({result.status[key.host]})"
        )
    if all(state == UNCHANGED for state in result.status.values()):
        return result
    if confirm is None:
        raise RingfleetError(str(known_hosts), NO_TERMINAL)
    if not confirm():
        return result
    write_atomic(known_hosts, _merged(known_hosts, keys), mode=KNOWN_HOSTS_MODE)
    result.written = True
    return result


def _merged(path: Path, keys: list[HostKey]) -> str:
    """The file's other lines, as they were, then the scanned keys.

    A line naming a scanned host along with others keeps the others' names.
    """
    scanned = {key.known_name for key in keys}
    kept: list[str] = []
    if path.exists():
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            first, sep, rest = line.partition(" ")
            names = first.split(",")
            if line.startswith(("#", "|", "@")) or not scanned.intersection(names):
                kept.append(line)
                continue
            others = [name for name in names if name not in scanned]
            if others:
                kept.append(",".join(others) + sep + rest)
    return "".join(f"{line}\n" for line in [*kept, *(key.line() for key in keys)])
