"""Per-environment state kept outside git: the cluster SSH keypair, outputs, runner data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ringfleet.fileio import write_atomic

STATE_DIRNAME = ".ringfleet"
KEY_NAME = "id_ed25519"
# The controller's CA bundle, trusted by nodes so they reach PyPI through TLS proxies.
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def state_dir(root: Path, env: str) -> Path:
    path = root / STATE_DIRNAME / env
    path.mkdir(parents=True, exist_ok=True)
    return path


def cluster_keypair(root: Path, env: str) -> tuple[Path, Path]:
    """The per-cluster SSH keypair (made once, mode 0600, never in the repo)."""
    ssh = state_dir(root, env) / "ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    private, public = ssh / KEY_NAME, ssh / f"{KEY_NAME}.pub"
    if not private.exists() or not public.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        pub = key.public_key().public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        public.write_bytes(pub + f" ringfleet-{env}\n".encode())
    return private, public


def write_outputs(root: Path, env: str, outputs: dict[str, Any]) -> Path:
    path = state_dir(root, env) / "outputs.json"
    return write_atomic(path, json.dumps(outputs, indent=2, sort_keys=True) + "\n")


def converge_vars(root: Path, env: str) -> dict[str, Any]:
    """Controller-side paths the roles need; passed as extra vars, not stored in inventory."""
    private, public = cluster_keypair(root, env)
    bundles = [str(HOST_CA_BUNDLE)] if HOST_CA_BUNDLE.is_file() else []
    return {
        "ringfleet_ssh_private_key_file": str(private),
        "ringfleet_ssh_public_key_file": str(public),
        "ringfleet_ca_bundles": bundles,
    }
