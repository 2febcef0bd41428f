"""GPU pools: the NVIDIA driver built for the running kernel, and the pinned CUDA and NCCL.

CPU pools skip these with the reason, so the report shows they were not forgotten.
"""

from __future__ import annotations


def test_nvidia_module_is_built_for_the_running_kernel(shells, gpu_node, kernels) -> None:
    vermagic = shells[gpu_node].run("modinfo -F vermagic nvidia").stdout.split()
    assert vermagic[:1] == [kernels(gpu_node).stdout.strip()]


def test_nvidia_driver_is_the_pinned_branch(shells, gpu_node, hostvars) -> None:
    loaded = shells[gpu_node].run("cat /sys/module/nvidia/version").stdout.strip()
    assert loaded.split(".")[0] == str(hostvars["nvidia_driver_branch"])


def test_cuda_is_the_pinned_release(shells, gpu_node, hostvars) -> None:
    version = str(hostvars["nvidia_cuda_version"])
    result = shells[gpu_node].run(f"/usr/local/cuda-{version}/bin/nvcc --version")
    assert f"release {version}," in result.stdout


def test_nccl_is_the_pinned_version(shells, gpu_node, hostvars) -> None:
    result = shells[gpu_node].run("dpkg-query -W -f '${Version}' libnccl2")
    assert result.stdout.strip().split("-")[0] == str(hostvars["nvidia_nccl_version"])
