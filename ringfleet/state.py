"""Per-environment state kept outside git: the cluster SSH keypair, outputs, runner data."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringfleet import paths
from ringfleet.errors import RingfleetError
from ringfleet.files import private_dir, write_atomic

# Kept importable from here for callers that named them before ringfleet.paths existed.
STATE_DIRNAME = paths.STATE_DIRNAME
KEY_NAME = paths.KEY_NAME
STACK_KEY_NAME = paths.STACK_KEY_NAME
OUTPUTS_NAME = paths.OUTPUTS_NAME
# Any permission for group or others on a private key: ssh itself refuses such a key.
KEY_OPEN_BITS = 0o077
# The controller's CA bundle, trusted by nodes so they reach PyPI through TLS proxies.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def state_dir(root: Path, env: str) -> Path:
    """`.ringfleet/<env>/`, owner only (0700), like `.ringfleet/` itself."""
    private_dir(paths.state_root(root))
    return private_dir(paths.env_state_dir(root, env))


def bake_state_dir(root: Path, env: str, pool: str) -> Path:
    """The state of one image bake (owner only), apart from the env's own."""
    private_dir(paths.state_root(root))
    return private_dir(paths.bake_state_dir(root, env, pool))


def ssh_dir(root: Path, env: str) -> Path:
    state_dir(root, env)
    return private_dir(paths.ssh_dir(root, env))


def check_private_key(path: Path, display: str | None = None) -> Path:
    """Refuse a private key that group or others may read or write: it may have leaked."""
    mode = os.stat(path).st_mode & 0o777
    if mode & KEY_OPEN_BITS:
        raise RingfleetError(
            display or str(path),
            f"private key is open to other users (mode {mode:04o}); "
            f"run `chmod 600 {path}` if it never left this machine, else replace it",
        )
    return path


def _rel(root: Path, path: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def cluster_keypair(root: Path, env: str) -> tuple[Path, Path]:
    """The per-cluster SSH keypair (made once, mode 0600, never in the repo).

    A missing `.pub` is rebuilt from the private key: making a new pair would
    silently lock the controller out of nodes that trust the old one.
    """
    ssh_dir(root, env)
    return _keypair(root, paths.cluster_key_path(root, env), f"ringfleet-{env}")


def controller_keypair(root: Path, env: str) -> tuple[Path, Path]:
    """The controller's root login key for local nodes (made once, 0600, in the 0700 ssh/)."""
    ssh_dir(root, env)
    return _keypair(root, paths.controller_key_path(root, env), f"ringfleet-{env}-controller")


def _keypair(root: Path, private: Path, comment: str) -> tuple[Path, Path]:
    public = private.with_name(f"{private.name}.pub")
    if private.exists():
        check_private_key(private, _rel(root, private))
        if not public.exists():
            try:
                key = serialization.load_ssh_private_key(private.read_bytes(), password=None)
            except (ValueError, TypeError) as exc:
                raise RingfleetError(
                    _rel(root, private), f"not a readable OpenSSH private key: {exc}"
                ) from None
            write_atomic(public, _public_line(key, comment), mode=0o644)
        return private, public
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    )
    write_atomic(private, pem, mode=0o600)
    write_atomic(public, _public_line(key, comment), mode=0o644)
    return private, public


def _public_line(key: Any, comment: str) -> bytes:
    pub = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return pub + f" {comment}\n".encode()


def write_outputs(root: Path, env: str, outputs: dict[str, Any]) -> Path:
    """Save the non-secret stack outputs (0600); secrets never go to this file."""
    state_dir(root, env)
    path = paths.outputs_path(root, env)
    return write_atomic(path, json.dumps(outputs, indent=2, sort_keys=True) + "\n")


def stack_key_path(root: Path, env: str) -> Path:
    state_dir(root, env)
    return paths.stack_key_path(root, env)


def write_stack_key(root: Path, env: str, pem: str) -> Path:
    """The stack's SSH private key, written once to a 0600 file in a 0700 directory.

    Rewritten only when the stack's key changed, so its mtime says when it last did.
    """
    ssh_dir(root, env)
    path = paths.stack_key_path(root, env)
    data = pem if pem.endswith("\n") else pem + "\n"
    if path.exists() and path.read_text(encoding="utf-8", errors="replace") == data:
        check_private_key(path, _rel(root, path))
        return path
    return write_atomic(path, data, mode=0o600)


# Random bytes of a cluster's munge key; base64 text so the converge's fingerprint can read it.
MUNGE_KEY_BYTES = 1024


def munge_key(root: Path, env: str) -> Path:
    """The cluster's munge key, made once: `.ringfleet/<env>/munge.key`, 0600, never in the repo."""
    state_dir(root, env)
    path = paths.munge_key_path(root, env)
    if not path.exists():
        write_atomic(path, base64.b64encode(os.urandom(MUNGE_KEY_BYTES)) + b"\n", mode=0o600)
    return check_private_key(path, _rel(root, path))


def converge_vars(root: Path, env: str, slurm: bool = False) -> dict[str, Any]:
    """Controller-side paths the roles need; passed as extra vars, not stored in inventory.

    `slurm`: the cluster runs Slurm, whose role needs the cluster's munge key.
    """
    private, public = cluster_keypair(root, env)
    bundles = [str(HOST_CA_BUNDLE)] if HOST_CA_BUNDLE.is_file() else []
    values: dict[str, Any] = {
        "ringfleet_ssh_private_key_file": str(private),
        "ringfleet_ssh_public_key_file": str(public),
        "ringfleet_ca_bundles": bundles,
    }
    if slurm:
        values["ringfleet_munge_key_file"] = str(munge_key(root, env))
    stack_key = stack_key_path(root, env)
    if stack_key.is_file():
        # aws nodes admit the login key their stack generated, not the cluster key.
        values["ansible_ssh_private_key_file"] = str(check_private_key(stack_key))
    return values
