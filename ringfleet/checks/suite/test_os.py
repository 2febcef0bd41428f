"""OS release and kernel: what every other layer of the node was built for."""

from __future__ import annotations


def test_os_release_is_the_profiles(shell, profile) -> None:
    found = shell.output('. /etc/os-release && echo "$ID-$VERSION_CODENAME"').strip()
    assert found == profile.os


def test_kernel_is_the_same_as_the_first_node_of_the_pool(node, inventory, kernels) -> None:
    # MPI, drivers and DKMS modules are only comparable across nodes on one kernel.
    first = inventory.pools()[inventory.pool_of(node)][0]
    assert kernels(node).stdout.strip() == kernels(first).stdout.strip()
