"""The nvidia role in Ansible check mode against a Debian 12 host, with aws-dev's GPU pool vars.

GPU pools on aws run the same Debian 12 AMI as CPU pools, so the nvidia role, not the
image, brings the driver, CUDA and NCCL. The host here is a container from the local
base image (`ringfleet/base:bookworm`, debootstrap bookworm, the same release as the
AMI), reached with Ansible's docker connection: this machine is a test target, not a
user's controller. Check mode changes nothing on it; no GPU and no NVIDIA repository
are needed, which is also what it cannot show: whether apt resolves the pinned packages
from NVIDIA's Debian 12 repository, and whether DKMS builds the module on the AMI's
cloud kernel, need a real GPU instance (docs/pulumi.md says so).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ringfleet.converge.inventory import render_inventory
from tests.conftest import ROOT

pytestmark = pytest.mark.docker

BIN = Path(sys.executable).parent
CONTAINER = "rf-test-nvidia-debian12"
LABEL = {"ringfleet.test": "nvidia-debian12"}
PLAYBOOK = ROOT / "tests" / "data" / "roles" / "nvidia_check.yml"
SAMPLE = ROOT / "tests" / "data" / "outputs-aws-dev.json"
SHOW_TASK = "nvidia : Show the NVIDIA packages this node gets."
NVIDIA_DEBIAN12_REPO = "https://developer.download.nvidia.com/compute/cuda/repos/debian12/x86_64/"


def _remove(client) -> None:
    import docker.errors

    try:
        client.containers.get(CONTAINER).remove(force=True)
    except docker.errors.NotFound:
        pass


@pytest.fixture(scope="module")
def gpu_vars(tmp_path_factory) -> Path:
    """aws-dev's GPU pool variables as the renderer writes them, as an extra-vars file."""
    outputs = json.loads(SAMPLE.read_text(encoding="utf-8"))
    pool = render_inventory(outputs)["all"]["children"]["pool_gpu"]["vars"]
    path = tmp_path_factory.mktemp("nvidia") / "gpu.yml"
    path.write_text(yaml.safe_dump(pool), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def check_run(gpu_vars) -> dict:
    """One check-mode run of the role on a fresh Debian 12 container; its JSON result."""
    import docker

    from ringfleet.providers.docker.baseimage import ensure_base_image
    from ringfleet.providers.docker.container import DEFAULT_DOCKER_IMAGE

    client = docker.from_env()
    ensure_base_image(client, DEFAULT_DOCKER_IMAGE)
    _remove(client)
    client.containers.run(
        DEFAULT_DOCKER_IMAGE,
        ["sleep", "infinity"],
        name=CONTAINER,
        hostname=CONTAINER,
        labels=LABEL,
        detach=True,
    )
    try:
        proc = subprocess.run(
            [
                str(BIN / "ansible-playbook"),
                "-i",
                f"{CONTAINER},",
                "-c",
                "community.docker.docker",
                "--check",
                "--diff",
                "-e",
                f"@{gpu_vars}",
                str(PLAYBOOK),
            ],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=600,
            env={**os.environ, "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"},
        )
        facts = client.containers.get(CONTAINER).exec_run(
            ["test", "-e", "/etc/apt/sources.list.d/nvidia-cuda.sources"]
        )
    finally:
        _remove(client)
    assert proc.returncode == 0, f"{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}"
    # The JSON document starts on a line of its own; the timing callback prints around it.
    text = proc.stdout
    result, _ = json.JSONDecoder().raw_decode(text[text.index("\n{") + 1 :])
    return {"result": result, "repo_file_written": facts.exit_code == 0}


def _task(check_run: dict, name: str) -> dict:
    (task,) = [t for t in check_run["result"]["plays"][0]["tasks"] if t["task"]["name"] == name]
    return task["hosts"][CONTAINER]


def test_the_host_is_debian_12(check_run):
    facts = _task(check_run, "Gathering Facts")["ansible_facts"]
    assert (facts["ansible_distribution"], facts["ansible_distribution_major_version"]) == (
        "Debian",
        "12",
    )


def test_check_mode_fails_no_task(check_run):
    stats = check_run["result"]["stats"][CONTAINER]
    assert (stats["failures"], stats["unreachable"]) == (0, 0)


def test_the_repository_is_nvidias_debian_12_one(check_run):
    diff = _task(check_run, "nvidia : Ensure NVIDIA's CUDA repository is configured.")["diff"]
    after = diff[0]["after"] if isinstance(diff, list) else diff["after"]
    assert f"URIs: {NVIDIA_DEBIAN12_REPO}" in after


@pytest.mark.parametrize(
    "package",
    ["cuda-drivers-535", "cuda-toolkit-12-2", "libnccl2=2.18.5-1+cuda12.2", "dkms"],
)
def test_the_role_would_install_the_pinned_stack(check_run, package):
    assert package in _task(check_run, SHOW_TASK)["nvidia_packages"]


def test_kernel_headers_follow_the_running_kernel(check_run):
    facts = _task(check_run, "Gathering Facts")["ansible_facts"]
    packages = _task(check_run, SHOW_TASK)["nvidia_packages"]
    assert f"linux-headers-{facts['ansible_kernel']}" in packages


def test_check_mode_changed_nothing_on_the_host(check_run):
    assert check_run["repo_file_written"] is False
