"""Debian packages the roles install, and the Open MPI pin."""

from __future__ import annotations

import pytest

# From the common, ssh_mesh, openmpi and tensorflow roles.
BASE_PACKAGES = [
    "openssh-server",
    "openssh-client",
    "iproute2",
    "procps",
    "rsync",
    "python3-venv",
]
OPENMPI_PACKAGES = ["openmpi-bin"]
# The horovod role removes the compilers and headers its build installed (a node image
# keeps only the wheel), and the tensorflow role the binutils a bake strips the venv
# with, so a node made from an image has none of them. (openmpi-bin keeps its mpicc
# wrapper, which cannot compile without a compiler.)
BUILD_TOOLS = ["cc", "gcc", "c++", "g++", "cmake", "make", "strip"]
BUILD_PACKAGES = ["g++", "cmake", "python3-dev", "libopenmpi-dev", "binutils"]


def _dpkg(shell, package: str, field: str) -> str:
    result = shell.run(f"dpkg-query -W -f '${{{field}}}' {package}")
    return result.stdout.strip() if result.rc == 0 else "(not known to dpkg)"


@pytest.mark.parametrize("package", BASE_PACKAGES + OPENMPI_PACKAGES)
def test_debian_package_is_installed(shell, package: str) -> None:
    assert _dpkg(shell, package, "db:Status-Status") == "installed"


@pytest.mark.parametrize("package", OPENMPI_PACKAGES)
def test_openmpi_package_is_the_pinned_version(shell, hostvars, package: str) -> None:
    assert _dpkg(shell, package, "Version") == hostvars["openmpi_debian_version"]


@pytest.mark.parametrize("package", OPENMPI_PACKAGES)
def test_openmpi_package_is_held(shell, hostvars, package: str) -> None:
    # Held, so an unattended `apt upgrade` cannot move one node off the pin.
    if not hostvars.get("openmpi_hold", True):
        pytest.skip("openmpi_hold is false in the inventory")
    assert _dpkg(shell, package, "db:Status-Want") == "hold"


def _image_node_only(hostvars) -> None:
    # A host without a node image may have its owner's compiler; the role keeps those.
    if hostvars.get("ringfleet_provider") != "docker":
        pytest.skip("only nodes made from a node image are known to have no compiler")


@pytest.mark.parametrize("tool", BUILD_TOOLS)
def test_image_node_has_no_build_tool(shell, hostvars, tool: str) -> None:
    _image_node_only(hostvars)
    # Asked positively (output fails on a failed command): a lost connection is not "absent".
    assert shell.output(f"command -v {tool} || echo absent").strip() == "absent"


@pytest.mark.parametrize("package", BUILD_PACKAGES)
def test_image_node_has_no_build_package(shell, hostvars, package: str) -> None:
    _image_node_only(hostvars)
    assert _dpkg(shell, package, "db:Status-Status") != "installed"
