"""`ringfleet tensorboard ENV [RUN...]`: TensorBoard over the runs' events, on loopback only.

The events live on the cluster's shared storage, so TensorBoard runs where that
storage is and only its port reaches the controller, bound to 127.0.0.1:

- docker envs: a short-lived container of the node image in the host's network
  namespace with the shared volume mounted read-only; TensorBoard listens on the
  host's 127.0.0.1 (the controller's) and nowhere else. It is removed on Ctrl-C.
- SSH envs (static, aws): TensorBoard on the first node's 127.0.0.1 and an
  `ssh -L 127.0.0.1:PORT:127.0.0.1:PORT` forward; it stops when the SSH session
  ends (its stdin closes).
"""

from __future__ import annotations

import shlex
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from ringfleet import paths
from ringfleet.errors import RingfleetError, RuntimeFailure
from ringfleet.nodes import Node
from ringfleet.runs.record import require_run_id
from ringfleet.spec import ClusterSpec

DEFAULT_PORT = 6006
LOOPBACK = "127.0.0.1"
TENSORBOARD = f"{paths.NODE_VENV}/bin/tensorboard"
EVENTS_DIRNAME = "tensorboard"
# TensorBoard's own list of runs it found; answering it means it is serving.
RUNS_ENDPOINT = "/data/runs"
# TensorBoard imports TensorFlow at start: tens of seconds on a busy 2-core machine.
START_TIMEOUT = 120.0
POLL_SECONDS = 1.0
# Unprivileged: it only reads the events.
CONTAINER_USER = "nobody"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def logdir_args(spec: ClusterSpec, run_ids: list[str]) -> list[str]:
    """Every run's events (TensorBoard finds them under the runs directory), or the named."""
    runs = paths.runs_dir(spec.cluster.storage.mount)
    if not run_ids:
        return ["--logdir", runs]
    named = [f"{r}:{runs}/{require_run_id(r)}/{EVENTS_DIRNAME}" for r in run_ids]
    return ["--logdir_spec", ",".join(named)]


def tensorboard_argv(spec: ClusterSpec, run_ids: list[str], port: int) -> list[str]:
    return [TENSORBOARD, *logdir_args(spec, run_ids), "--host", LOOPBACK, "--port", str(port)]


def require_free_port(port: int) -> None:
    """Refuse a port something on the controller's loopback already serves."""
    with socket.socket() as sock:
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            raise RingfleetError("--port", f"already in use on {LOOPBACK}", port) from None


def serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{LOOPBACK}:{port}{RUNS_ENDPOINT}", timeout=5):
            return True
    except (urllib.error.URLError, OSError):
        return False


class _Stop(Exception):
    pass


def _raise_stop(signum, frame) -> None:
    raise _Stop


def serve(spec: ClusterSpec, node: Node, run_ids: list[str], port: int, say) -> None:
    """Serve until Ctrl-C (or SIGTERM), then stop TensorBoard; nothing is left running."""
    require_free_port(port)
    argv = tensorboard_argv(spec, run_ids, port)
    from ringfleet.nodes.docker import DockerNode

    # The node's kind, not the provider's name: the Node a provider hands out decides.
    if isinstance(node, DockerNode):
        alive, stop, tail = _docker(spec, node, argv, port)
    else:
        alive, stop, tail = _ssh(node, argv, port)
    # Both stop it, even where SIGINT came in ignored (a script's background job).
    previous = {sig: signal.signal(sig, _raise_stop) for sig in STOP_SIGNALS}
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not serving(port):
            if not alive() or time.monotonic() > deadline:
                raise RuntimeFailure(f"tensorboard on {node.name}", "did not start", tail())
            time.sleep(POLL_SECONDS)
        say(f"tensorboard: http://{LOOPBACK}:{port}/ (on {LOOPBACK} only; Ctrl-C stops it)")
        while alive():
            time.sleep(POLL_SECONDS)
        raise RuntimeFailure(f"tensorboard on {node.name}", "stopped", tail())
    except _Stop:
        say("tensorboard: stopping")
    finally:
        # A second Ctrl-C must not leave TensorBoard running: stop first, then restore.
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    say("tensorboard: stopped")


Handles = tuple[Callable[[], bool], Callable[[], None], Callable[[], str]]


def _docker(spec: ClusterSpec, node, argv: list[str], port: int) -> Handles:
    import docker.errors
    import docker.types

    from ringfleet.providers.docker.container import volume_name

    client = node.client
    mount = spec.cluster.storage.mount
    container = client.containers.run(
        node.container().attrs["Image"],
        entrypoint=argv[:1],
        command=argv[1:],
        name=f"ringfleet-tensorboard-{spec.env}-{port}",
        # The host's network namespace: --host 127.0.0.1 is the controller's loopback.
        network_mode="host",
        mounts=[docker.types.Mount(target=mount, source=volume_name(spec), type="volume",
                                   read_only=True)],
        user=CONTAINER_USER,
        environment={"HOME": "/tmp"},
        detach=True,
    )

    def alive() -> bool:
        try:
            container.reload()
        except docker.errors.NotFound:
            return False
        return container.status in ("created", "running")

    def stop() -> None:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass

    def tail() -> str:
        try:
            return container.logs(tail=5).decode(errors="replace").strip()[-300:]
        except docker.errors.NotFound:
            return "container gone"

    return alive, stop, tail


def _ssh(node, argv: list[str], port: int) -> Handles:
    # TensorBoard stops when its stdin closes: when ssh ends, however it ends.
    remote = f"{shlex.join(argv)} & pid=$!; cat >/dev/null; kill $pid"
    forward = f"{LOOPBACK}:{port}:{LOOPBACK}:{port}"
    # A connection of its own (ControlPath=none; ssh keeps the first value of an option),
    # so the forward ends with it; ExitOnForwardFailure: a taken port fails at once.
    base = node.ssh_argv(["/bin/sh", "-c", remote])
    command = [base[0], "-o", "ControlPath=none", "-o", "ExitOnForwardFailure=yes",
               "-L", forward, *base[1:]]
    proc = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def stop() -> None:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()

    def tail() -> str:
        return "" if proc.poll() is None else (proc.stdout.read() or b"").decode()[-300:]

    return lambda: proc.poll() is None, stop, tail
