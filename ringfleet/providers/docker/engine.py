"""Connecting to the Docker engine, with one clear error when it is not there."""

from __future__ import annotations

import docker
import docker.errors

from ringfleet.errors import RingfleetError

START_HINT = (
    "start it with `dockerd > /var/log/dockerd.log 2>&1 &` "
    "(Debian: `apt-get install docker.io`), or run `make setup`"
)


def docker_client() -> docker.DockerClient:
    """A client that has answered a ping; otherwise a one-line RingfleetError."""
    try:
        client = docker.from_env(timeout=300)
        client.ping()
    except docker.errors.DockerException as exc:
        reason = str(exc).splitlines()[0]
        if len(reason) > 120:
            reason = reason[:117] + "..."
        raise RingfleetError("docker", f"engine unreachable; {START_HINT}", reason) from None
    return client


def has_nvidia_runtime(client: docker.DockerClient) -> bool:
    return "nvidia" in (client.info().get("Runtimes") or {})
