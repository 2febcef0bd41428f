"""Every on-disk location ringfleet reads or writes, named once.

Controller side, under the project root:
  inventories/<env>/hosts.yml            the rendered Ansible inventory
  inventories/<env>/ringfleet.lock       the node lockfile (commit it)
  inventories/<env>/perf-baseline.json   the perf gate's baselines
  inventories/<env>/known_hosts          host keys of SSH-reached nodes (commit it)
  .ringfleet/<env>.lock                  the env's exclusive lock (beside the state dir,
                                         so `down --purge` cannot delete it while held)
  .ringfleet/<env>/                      per-env state, owner only: outputs.json,
                                         fingerprints.json, ssh/, ansible-runner data
  .ringfleet/<env>/ssh/                  the cluster key (id_ed25519), aws's stack_key, and
                                         for local nodes the controller's root login key
                                         (controller_ed25519) and their known_hosts
Node side: the node venv the tensorflow role builds, and the runs directory on shared storage.

Only names and path arithmetic live here; creating directories with the right modes
is `ringfleet.state`'s job.
"""

from __future__ import annotations

from pathlib import Path

STATE_DIRNAME = ".ringfleet"
INVENTORIES_DIRNAME = "inventories"
INVENTORY_NAME = "hosts.yml"
LOCK_NAME = "ringfleet.lock"
BASELINE_NAME = "perf-baseline.json"
KNOWN_HOSTS_NAME = "known_hosts"
# The controller's login key for static hosts when the spec names none (ssh.key_file).
DEFAULT_ADMIN_KEY = "~/.ssh/id_ed25519"
OUTPUTS_NAME = "outputs.json"
FINGERPRINTS_NAME = "fingerprints.json"
SSH_DIRNAME = "ssh"
# The per-cluster key ringfleet makes; the login key a Pulumi stack generated (aws).
KEY_NAME = "id_ed25519"
STACK_KEY_NAME = "stack_key"
# The controller's own root login on local nodes (the converge over SSH), apart from the
# cluster key every node holds: a node must not be able to log in as root on its peers.
CONTROLLER_KEY_NAME = "controller_ed25519"

# On the nodes: the venv the tensorflow role builds (horovodrun and python come from it).
NODE_VENV = "/opt/ringfleet/venv"
# On shared storage: one directory per run, under <mount>/runs.
RUNS_DIRNAME = "runs"


def state_root(root: Path) -> Path:
    """`.ringfleet/`: all controller-side state, kept out of git."""
    return root / STATE_DIRNAME


def env_state_dir(root: Path, env: str) -> Path:
    """`.ringfleet/<env>/`."""
    return state_root(root) / env


def bake_state_dir(root: Path, env: str, pool: str) -> Path:
    """The state of one image bake: its own inventory and runner data."""
    return env_state_dir(root, f"{env}-bake-{pool}")


def env_lock_path(root: Path, env: str) -> Path:
    """`.ringfleet/<env>.lock`."""
    return state_root(root) / f"{env}.lock"


def outputs_path(root: Path, env: str) -> Path:
    """`.ringfleet/<env>/outputs.json`: the non-secret stack outputs."""
    return env_state_dir(root, env) / OUTPUTS_NAME


def fingerprints_path(root: Path, env: str) -> Path:
    """`.ringfleet/<env>/fingerprints.json`: per node, what its last converge depended on."""
    return env_state_dir(root, env) / FINGERPRINTS_NAME


def ssh_dir(root: Path, env: str) -> Path:
    """`.ringfleet/<env>/ssh/`."""
    return env_state_dir(root, env) / SSH_DIRNAME


def cluster_key_path(root: Path, env: str) -> Path:
    """The cluster's private SSH key; its public half is beside it with `.pub`."""
    return ssh_dir(root, env) / KEY_NAME


def controller_key_path(root: Path, env: str) -> Path:
    """The controller's root login key for local nodes; `.pub` beside it."""
    return ssh_dir(root, env) / CONTROLLER_KEY_NAME


def controller_known_hosts_path(root: Path, env: str) -> Path:
    """`.ringfleet/<env>/ssh/known_hosts`: local nodes' host keys, read over Docker."""
    return ssh_dir(root, env) / KNOWN_HOSTS_NAME


def munge_key_path(root: Path, env: str) -> Path:
    """The cluster's munge key (Slurm's authentication), made once by ringfleet."""
    return env_state_dir(root, env) / "munge.key"


def stack_key_path(root: Path, env: str) -> Path:
    """The aws stack's login key, from its secret output."""
    return ssh_dir(root, env) / STACK_KEY_NAME


def inventory_dir(root: Path, env: str) -> Path:
    """`inventories/<env>/`."""
    return root / INVENTORIES_DIRNAME / env


def inventory_path(root: Path, env: str) -> Path:
    """`inventories/<env>/hosts.yml`."""
    return inventory_dir(root, env) / INVENTORY_NAME


def lock_path(root: Path, env: str) -> Path:
    """`inventories/<env>/ringfleet.lock`."""
    return inventory_dir(root, env) / LOCK_NAME


def baseline_path(root: Path, env: str) -> Path:
    """`inventories/<env>/perf-baseline.json`."""
    return inventory_dir(root, env) / BASELINE_NAME


def known_hosts_path(root: Path, env: str) -> Path:
    """`inventories/<env>/known_hosts`: the default ssh.known_hosts."""
    return inventory_dir(root, env) / KNOWN_HOSTS_NAME


def runs_dir(mount: str) -> str:
    """`<mount>/runs` on shared storage, as the nodes see it."""
    return f"{mount.rstrip('/')}/{RUNS_DIRNAME}"


def run_dir(mount: str, run_id: str) -> str:
    """One run's record directory on shared storage."""
    return f"{runs_dir(mount)}/{run_id}"
