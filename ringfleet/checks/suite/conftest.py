"""Fixtures of the verify suite: the inventory's nodes and pairs, and facts read once per node.

Tests are parametrised over what the inventory lists, so a failure names the
node (or the pair of nodes) it is about. Expected values come from the
inventory's variables (the software pins the roles installed) and from the
tested profile it names, never from the spec.
"""

from __future__ import annotations

import itertools
import shlex
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from threading import Lock
from typing import Any

import pytest

from ringfleet import compat
from ringfleet.checks.suite.targets import NVIDIA_GROUP, Inventory, NodeShell, read_inventory
from ringfleet.errors import RingfleetError

INVENTORY_KEY = pytest.StashKey[Inventory]()
# Values of the roles' defaults, used when the inventory does not set them.
DEFAULT_JOB_USER = "rf"
DEFAULT_SHARED_MOUNT = "/shared"


def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("ansible_inventory", None)
    if not path:
        raise pytest.UsageError(
            "the verify suite needs --ansible-inventory FILE (`ringfleet verify ENV` passes it)"
        )
    try:
        config.stash[INVENTORY_KEY] = read_inventory(Path(path))
    except RingfleetError as exc:
        raise pytest.UsageError(exc.line()) from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    inv = metafunc.config.stash[INVENTORY_KEY]
    nodes = inv.hosts()
    names = metafunc.fixturenames
    if "node" in names:
        metafunc.parametrize("node", nodes, ids=nodes)
    if "src" in names and "dst" in names:
        pairs = list(itertools.permutations(nodes, 2))
        metafunc.parametrize(("src", "dst"), pairs, ids=[f"{a}->{b}" for a, b in pairs])
    if "writer" in names and "reader" in names:
        pairs = list(itertools.product(nodes, repeat=2))
        metafunc.parametrize(("writer", "reader"), pairs, ids=[f"{a}->{b}" for a, b in pairs])


class PerNode:
    """One command's result on every node: started on all nodes at once, kept for every test."""

    def __init__(
        self,
        shells: dict[str, NodeShell],
        command: str | Callable[[NodeShell], str],
        user: str | None = None,
    ):
        self.shells = shells
        # A callable builds the command per node (each node has its own venv path).
        self.command = command if callable(command) else (lambda _shell: command)
        self.user = user
        self._futures: dict[str, Future] | None = None
        self._lock = Lock()

    def start(self) -> PerNode:
        """Begin on every node now, without waiting; a test waits when it asks for a result."""
        with self._lock:
            if self._futures is None:
                pool = ThreadPoolExecutor(max_workers=len(self.shells))
                self._futures = {
                    n: pool.submit(s.run, self.command(s), self.user)
                    for n, s in self.shells.items()
                }
                pool.shutdown(wait=False)
        return self

    def __call__(self, node: str):
        return self.start()._futures[node].result()


@pytest.fixture(scope="session")
def inventory(pytestconfig: pytest.Config) -> Inventory:
    return pytestconfig.stash[INVENTORY_KEY]


@pytest.fixture(scope="session")
def shells(inventory: Inventory) -> dict[str, NodeShell]:
    from ringfleet.checks.suite.targets import node_shells

    return node_shells(inventory)


@pytest.fixture
def shell(shells: dict[str, NodeShell], node: str) -> NodeShell:
    return shells[node]


@pytest.fixture
def hostvars(inventory: Inventory, node: str) -> dict[str, Any]:
    return inventory.hostvars[node]


@pytest.fixture(scope="session")
def job_user(inventory: Inventory) -> str:
    return str(inventory.var(inventory.hosts()[0], "ringfleet_ssh_user") or DEFAULT_JOB_USER)


@pytest.fixture(scope="session")
def shared_mount(inventory: Inventory) -> str:
    mount = inventory.var(inventory.hosts()[0], "ringfleet_shared_mount")
    return str(mount or DEFAULT_SHARED_MOUNT)


@pytest.fixture
def profile(hostvars: dict[str, Any]) -> compat.Profile:
    """The tested profile the node's pool was converged with (ringfleet_profile)."""
    name = hostvars.get("ringfleet_profile")
    for p in compat.PROFILES:
        if p.name == name:
            return p
    pytest.fail(f"inventory names profile {name!r}, which is not in the compatibility table")


@pytest.fixture
def gpu_node(inventory: Inventory, node: str) -> str:
    """The node, when its pool has NVIDIA GPUs; CPU pools skip the GPU checks."""
    if node not in inventory.hosts(NVIDIA_GROUP):
        pytest.skip(f"pool {inventory.pool_of(node)} has no NVIDIA GPU")
    return node


@pytest.fixture(scope="session")
def hostnames(shells: dict[str, NodeShell]) -> PerNode:
    return PerNode(shells, "hostname")


@pytest.fixture(scope="session")
def kernels(shells: dict[str, NodeShell]) -> PerNode:
    return PerNode(shells, "uname -r")


@pytest.fixture(scope="session")
def check_build(shells: dict[str, NodeShell]) -> PerNode:
    # Slow (it imports TensorFlow once per feature), so it runs once per node, all nodes at once.
    return PerNode(shells, lambda s: f"{shlex.quote(s.venv)}/bin/horovodrun --check-build")


@pytest.fixture(scope="session")
def runtime(shells: dict[str, NodeShell], job_user: str) -> PerNode:
    """What a rank sees when it imports the stack, as the job user (JSON on the last line)."""
    # TensorFlow's log lines go to stderr; the JSON is the last line of stdout.
    script = (
        "import json, tensorflow as tf, horovod, horovod.tensorflow as hvd; "
        "print(json.dumps({'tensorflow': tf.__version__, 'horovod': horovod.__version__, "
        "'cuda_build': tf.test.is_built_with_cuda(), 'mpi_built': hvd.mpi_built(), "
        "'gloo_built': hvd.gloo_built()}))"
    )
    return PerNode(
        shells,
        lambda s: f"{shlex.quote(s.venv)}/bin/python -c {shlex.quote(script)}",
        user=job_user,
    )


@pytest.fixture(scope="session")
def sshd_settings(shells: dict[str, NodeShell]) -> PerNode:
    return PerNode(shells, "/usr/sbin/sshd -T")


@pytest.fixture(scope="session", autouse=True)
def _slow_facts_first(check_build: PerNode, runtime: PerNode) -> None:
    """Start the TensorFlow-importing commands at once, so the quick checks run meanwhile.

    They take most of the suite's time (`horovodrun --check-build` imports TensorFlow
    once per feature); the quick checks mostly wait on the nodes, so overlapping them
    makes the suite about as long as its slowest command, not the sum.
    """
    check_build.start()
    runtime.start()
