"""Debian packages the roles install, and the Open MPI pin."""

from __future__ import annotations

import pytest

# From the common, ssh_mesh, openmpi, tensorflow and horovod roles.
BASE_PACKAGES = [
    "openssh-server",
    "openssh-client",
    "iproute2",
    "procps",
    "rsync",
    "python3-venv",
    "g++",
    "cmake",
]
OPENMPI_PACKAGES = ["openmpi-bin", "libopenmpi-dev"]


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
