"""site.yml over SSH as a root admin, with strict known_hosts, on simulated bare metal.

The sudo admin's cold converge, re-converge and what they leave (mesh, MPI subnet,
the admin still let in) are facts of tests/baremetal/test_static_env.py, which reaches
its pair through the spec and `ringfleet up`; a second cold converge of another pair
here only repeated them (130 s of CI). What stays is the root admin: ssh_mesh would
set PermitRootLogin no, and with a root admin it must keep key logins.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ringfleet.nodes import RUNNING
from ringfleet.nodes.ssh import SshNode
from tests.baremetal.conftest import CLUSTER_SUBNET, SHARED_MOUNT
from tests.conftest import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BIN = Path(sys.executable).parent
JOB_USER = "rf"
# The job user's uid the common role gives it on every host; the site made the
# shared file system writable for it beforehand.
JOB_UID = 2000
# The tf2.15 profile's pool variables, as the renderer sets them.
POOL_VARS = {
    "ringfleet_profile": "tf2.15",
    "openmpi_version": "4.1.4",
    "openmpi_debian_version": "4.1.4-3+b1",
    "mkl_version": "2024.2.2",
    "tensorflow_version": "2.15.1",
    "tensorflow_package": "tensorflow-cpu",
    "horovod_version": "0.28.1",
    "ringfleet_pool_slots": 2,
    "ringfleet_pool_cores": 2,
    "ringfleet_threads_per_rank": 1,
}
LEFT_OUT = ("tensorflow", "mkl", "horovod", "nvidia")


def site_runner(nodes: dict[str, SshNode], hosts, admin: str, work: Path, left_out=LEFT_OUT):
    """A function that runs site.yml on `hosts` as `admin`, without the `left_out` components."""
    hostvars = {}
    for host in hosts:
        connection = nodes[host.name].ansible_host_vars()
        connection.update(
            ringfleet_pool="cpu",
            ringfleet_slots=2,
            ringfleet_accelerator=None,
            ringfleet_private_ip=host.address,
        )
        hostvars[host.name] = connection
    inventory = {
        "all": {
            "vars": {
                "ringfleet_cluster": "rf-bm",
                "ringfleet_env": "bm",
                "ringfleet_provider": "static",
                "ringfleet_shared_mount": SHARED_MOUNT,
                "ringfleet_storage_kind": "existing",
                "ringfleet_storage_server": None,
                "ringfleet_storage_export": None,
                "ringfleet_interface": "",
                "ringfleet_subnet": CLUSTER_SUBNET,
                "ringfleet_ssh_user": JOB_USER,
                "ringfleet_ssh_port": 22,
                "ringfleet_admin_user": admin,
                "ansible_python_interpreter": "/usr/bin/python3",
            },
            "children": {
                "pool_cpu": {"hosts": hostvars, "vars": POOL_VARS},
                "cpu_nodes": {"children": {"pool_cpu": {}}},
                "gpu_nodes": {"children": {}},
                "nvidia_gpu": {"children": {}},
                "nfs_server": {"hosts": {}},
                "ringfleet_nodes": {"children": {"pool_cpu": {}}},
            },
        }
    }
    path = work / "hosts.json"
    path.write_text(json.dumps(inventory))
    key = work / "cluster_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    extra = {
        "ringfleet_ssh_private_key_file": str(key),
        "ringfleet_ssh_public_key_file": f"{key}.pub",
        **{f"ringfleet_enable_{name}": False for name in left_out},
    }
    env = {
        **os.environ,
        "ANSIBLE_CONFIG": str(ROOT / "ansible.cfg"),
        "ANSIBLE_NOCOLOR": "1",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
    }

    def run() -> tuple[subprocess.CompletedProcess, float]:
        started = time.monotonic()
        proc = subprocess.run(
            [str(BIN / "ansible-playbook"), "-i", str(path), "site.yml", "-e", json.dumps(extra)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1800,
        )
        return proc, time.monotonic() - started

    return run


def shown(proc) -> str:
    return f"exit {proc.returncode}\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"


def test_root_admin_keeps_its_key_login_after_converge(bare_metal, admin_key, tmp_path):
    """ssh_mesh would set PermitRootLogin no; with a root admin it must keep key logins.

    Checked by hand to fail ('denied') when the inventory does not name the root admin.
    """
    host = bare_metal.host("rootsite", admin="root", sudo="none")
    known = tmp_path / "known_hosts"
    known.write_text(bare_metal.known_hosts_lines(host))
    node = SshNode(
        host.name, host.address, admin_user="root", key_file=admin_key.private, known_hosts=known
    )
    node.run(["chown", f"{JOB_UID}:{JOB_UID}", SHARED_MOUNT])
    # Only what the fact needs: common (the job user) and ssh_mesh; the rest is 30 s of CI.
    left_out = LEFT_OUT + ("openmpi", "site_sources", "ca_trust", "nfs_client")
    run = site_runner({host.name: node}, [host], "root", tmp_path, left_out)
    proc, _ = run()
    assert proc.returncode == 0, shown(proc)
    node.close()  # the master from before the converge would hide a lock-out
    assert node.state() == RUNNING
