"""Open MPI on every node, and MPI across all of them as the job user."""

from __future__ import annotations

import re
import secrets
import shlex

import pytest

# Horovod's background thread calls MPI while TensorFlow's threads run.
THREAD_MULTIPLE = "MPI_THREAD_MULTIPLE: yes"
MCA_PARAMS_FILE = "/etc/openmpi/openmpi-mca-params.conf"
# MCA parameters the openmpi role sets from the inventory's ringfleet_interface.
INTERFACE_PARAMS = ["btl_tcp_if_include", "oob_tcp_if_include"]

# A token goes once around the ring of ranks, one rank per node; each rank prints
# its host as it passes the token on, so a broken link names where it stopped. Nodes
# have no compiler (roles/horovod removes it), so the ring is Python calling Open MPI's
# C library through ctypes: plain MPI point-to-point, no Horovod or TensorFlow involved.
# MPI_COMM_WORLD and MPI_INT are, in Open MPI's mpi.h, the addresses of these symbols.
RING_SOURCE = r"""
import ctypes
import socket

mpi = ctypes.CDLL("libmpi.so.40", mode=ctypes.RTLD_GLOBAL)


def handle(name):
    return ctypes.c_void_p(ctypes.addressof(ctypes.c_char.in_dll(mpi, name)))


world, mpi_int = handle("ompi_mpi_comm_world"), handle("ompi_mpi_int")
rank, size, token = ctypes.c_int(), ctypes.c_int(), ctypes.c_int(0)
mpi.MPI_Init(None, None)
mpi.MPI_Comm_rank(world, ctypes.byref(rank))
mpi.MPI_Comm_size(world, ctypes.byref(size))
nxt, prev = (rank.value + 1) % size.value, (rank.value + size.value - 1) % size.value
if rank.value != 0:
    mpi.MPI_Recv(ctypes.byref(token), 1, mpi_int, prev, 0, world, None)
token.value += 1
print(f"ring rank {rank.value} host {socket.gethostname()} token {token.value}", flush=True)
mpi.MPI_Send(ctypes.byref(token), 1, mpi_int, nxt, 0, world)
if rank.value == 0:
    mpi.MPI_Recv(ctypes.byref(token), 1, mpi_int, prev, 0, world, None)
    print(f"ring closed token {token.value}", flush=True)
mpi.MPI_Finalize()
"""


def _mca_params(text: str) -> dict[str, str]:
    params = {}
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and not name.strip().startswith("#"):
            params[name.strip()] = value.strip()
    return params


def test_openmpi_is_the_pinned_release(shell, hostvars) -> None:
    first = shell.output("mpirun --version").splitlines()[0]
    assert first == f"mpirun (Open MPI) {hostvars['openmpi_version']}"


def test_openmpi_supports_mpi_thread_multiple(shell) -> None:
    assert THREAD_MULTIPLE in shell.output("ompi_info")


def _interface(hostvars) -> str:
    """The inventory's interface; empty when each host's is found on the subnet."""
    return hostvars.get("ringfleet_interface", "eth0")


@pytest.mark.parametrize("param", INTERFACE_PARAMS)
def test_mca_param_names_the_cluster_interface(shell, hostvars, param: str) -> None:
    """The interface, or (hosts naming it differently) the cluster subnet as a CIDR."""
    params = _mca_params(shell.output(f"cat {MCA_PARAMS_FILE}"))
    assert params.get(param) == (_interface(hostvars) or hostvars.get("ringfleet_subnet"))


def test_cluster_interface_exists(shell, hostvars) -> None:
    if not _interface(hostvars):
        pytest.skip("no interface named: each host's is found on the subnet")
    assert shell.run(f"ip -o link show dev {shlex.quote(_interface(hostvars))}").rc == 0


def test_node_has_an_address_on_the_subnet(shell, hostvars) -> None:
    if _interface(hostvars):
        pytest.skip("the interface is named; its address is the site's to choose")
    subnet = shlex.quote(hostvars["ringfleet_subnet"])
    assert shell.output(f"ip -o addr show to {subnet}").strip() != ""


@pytest.fixture(scope="module")
def all_nodes(inventory) -> list[str]:
    return inventory.hosts()


@pytest.fixture(scope="module")
def launcher(shells, all_nodes):
    return shells[all_nodes[0]]


def _mpirun(nodes: list[str], command: str) -> str:
    hosts = ",".join(f"{n}:1" for n in nodes)
    return f"mpirun --host {shlex.quote(hosts)} -np {len(nodes)} {command}"


def test_mpirun_starts_a_rank_on_every_node(launcher, all_nodes, job_user, hostnames) -> None:
    result = launcher.run(_mpirun(all_nodes, "hostname"), user=job_user)
    assert result.rc == 0, result.stderr[-1000:]
    expected = sorted(hostnames(n).stdout.strip() for n in all_nodes)
    assert sorted(result.stdout.split()) == expected


@pytest.fixture(scope="module")
def ring_program(shells, all_nodes, job_user):
    """The ring program, written on every node at the same path (no shared storage needed)."""
    path = f"/tmp/ringfleet-verify-ring-{secrets.token_hex(4)}.py"
    write = f"printf '%s' {shlex.quote(RING_SOURCE)} > {path}"
    for node in all_nodes:
        result = shells[node].run(write, user=job_user)
        assert result.rc == 0, f"{node}: writing the ring program failed: {result.stderr[-500:]}"
    yield path
    for node in all_nodes:
        shells[node].run(f"rm -f {path}", user=job_user)


def test_mpi_ring_passes_a_token_through_every_node(
    launcher, all_nodes, job_user, hostnames, ring_program
) -> None:
    result = launcher.run(_mpirun(all_nodes, f"python3 {ring_program}"), user=job_user)
    assert result.rc == 0, result.stderr[-1000:]
    seen = sorted(re.findall(r"^ring rank \d+ host (\S+)", result.stdout, re.M))
    closed = re.findall(r"^ring closed token (\d+)$", result.stdout, re.M)
    expected = sorted(hostnames(n).stdout.strip() for n in all_nodes)
    assert (seen, closed) == (expected, [str(len(all_nodes))]), result.stdout


# Each rank joins Horovod over MPI, sums a one across all ranks, and says where it ran.
HVD_INIT = (
    "import socket, horovod.tensorflow as hvd, tensorflow as tf; hvd.init(); "
    "s = int(hvd.allreduce(tf.ones([1]), op=hvd.Sum).numpy()[0]); "
    "print('hvd rank %d size %d sum %d host %s'"
    " % (hvd.rank(), hvd.size(), s, socket.gethostname()))"
)
HVD_LINE = re.compile(r"^hvd rank (\d+) size (\d+) sum (\d+) host (\S+)$", re.M)


@pytest.fixture(scope="module")
def pool_nodes(inventory, all_nodes) -> list[str]:
    """The launcher's pool: Horovod jobs run within one pool (one software profile)."""
    return inventory.pools()[inventory.pool_of(all_nodes[0])]


def test_horovod_init_under_mpirun_spans_every_node_of_the_pool(
    launcher, pool_nodes, job_user, hostnames
) -> None:
    command = f"-x TF_CPP_MIN_LOG_LEVEL=2 {launcher.venv}/bin/python -c {shlex.quote(HVD_INIT)}"
    result = launcher.run(_mpirun(pool_nodes, command), user=job_user)
    assert result.rc == 0, result.stderr[-1500:]
    n = len(pool_nodes)
    ranks = sorted((int(r), int(s), int(t), h) for r, s, t, h in HVD_LINE.findall(result.stdout))
    hosts = sorted(hostnames(node).stdout.strip() for node in pool_nodes)
    assert ([r[:3] for r in ranks], sorted(r[3] for r in ranks)) == (
        [(rank, n, n) for rank in range(n)],
        hosts,
    ), result.stdout[-1500:]
