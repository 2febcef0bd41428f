"""Docker provider: local containers that behave like hosts (sshd, own IP, shared volume).

  container.py  the one definition of a node container (also the Pulumi docker stack's)
  cluster.py    up / down / status of the containers, fingerprints of what a converge used
  images.py     node images: the base image converged by the roles, tagged by content
  baseimage.py  the air-gapped Debian base image (debootstrap)
  engine.py     the Docker engine connection

This module holds the provider class and the docker rules of the spec, and loads the
Docker SDK only when an env is acted on.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from ringfleet.errors import RingfleetError
from ringfleet.providers import NodeStatus, Outputs, UpOptions
from ringfleet.providers.base import ProviderBase
from ringfleet.providers.docker.container import DEFAULT_DOCKER_IMAGE
from ringfleet.spec.checks import where
from ringfleet.spec.model import size_bytes

__all__ = ["DEFAULT_DOCKER_IMAGE", "DOCKER_CONNECTION", "DockerProvider"]

if TYPE_CHECKING:
    from rich.console import Console

    from ringfleet.nodes import Node
    from ringfleet.spec.model import Cluster, Pool

# Local nodes are converged through the Docker API: it works before sshd exists.
DOCKER_CONNECTION = "community.docker.docker_api"
# Below this a node cannot hold sshd, Python and a TensorFlow import.
MIN_MEMORY_BYTES = 256 * 1024**2


class DockerProvider(ProviderBase):
    name: ClassVar[str] = "docker"
    storage_kinds: ClassVar[tuple[str, ...]] = ("volume",)
    runs_jobs: ClassVar[bool] = True
    converges_hosts: ClassVar[bool] = False

    @classmethod
    def check_cluster(cls, cluster: Cluster, display: str) -> None:
        super().check_cluster(cluster, display)
        # The controller reaches containers through the Docker API, not SSH.
        cls.forbid_ssh(cluster, display, "admin_user", "key_file", "known_hosts", "proxy_jump")

    @classmethod
    def check_pool(cls, cluster: Cluster, index: int, pool: Pool, display: str) -> None:
        cls.forbid(pool, index, display, "instance_type", "hosts", "spot")
        cls.need(pool, index, display, "count", "how many containers to run")
        cls.need(pool, index, display, "cpus", "the CPU limit of each container")
        cls.need(pool, index, display, "memory", "the memory limit of each container")
        if size_bytes(pool.memory) < MIN_MEMORY_BYTES:
            raise RingfleetError(
                where(display, f"cluster.pools[{index}].memory"),
                "must be at least 256MiB",
                pool.memory,
            )

    @classmethod
    def host_vars(cls, node: dict[str, Any], at: str) -> dict[str, Any]:
        return {
            "ansible_connection": DOCKER_CONNECTION,
            "ansible_host": node["name"],
            "ansible_user": "root",
        }

    def up(self, root: Path, options: UpOptions) -> None:
        from ringfleet.providers.docker import cluster

        if options.check or options.limit:
            # Its containers are ringfleet's own: the converge plan already picks the nodes.
            raise RingfleetError(
                "--check/--limit",
                "for hosts ringfleet does not make (static, aws), not provider docker",
                self.spec.env,
            )

        report = cluster.up(
            self.spec,
            root,
            console=options.console,
            converge_nodes=options.converge,
            force_converge=options.force_converge,
        )
        parts = [
            f"{len(getattr(report, k))} {k}"
            for k in ("created", "recreated", "started", "removed", "unchanged")
            if getattr(report, k)
        ]
        if report.converge:
            converged = (
                f"converged ({report.mode}), ansible changed={report.converge.total_changed}"
            )
        else:
            converged = report.mode or "not converged (--no-converge)"
        options.say(
            f"up {self.spec.env}: ready in {report.seconds:.1f} s; nodes: "
            f"{', '.join(parts) or 'none'}; {converged}; inventory {report.inventory}"
        )

    def heal(self, root: Path, name: str, timeout: float, console: Console) -> None:
        """A lost node is brought back as `ringfleet up` brings back a removed or stopped
        one: recreated (or started) from its pool's image, then converged, under the
        env's lock; `timeout` bounds only the wait for that lock."""
        from ringfleet.envlock import env_lock

        def say(line: str) -> None:
            console.print(f"heal {name}: {line}", markup=False, highlight=False)

        with env_lock(root, self.spec.env, timeout, say=say):
            self.up(root, UpOptions(console=console, say=say))

    def down(self, root: Path, purge: bool, options: UpOptions) -> None:
        from ringfleet.providers.docker import cluster

        removed = cluster.down(self.spec, root, purge=purge, console=options.console)
        options.say(f"down {self.spec.env}: removed {len(removed)} node(s)")

    def status(self) -> list[NodeStatus]:
        from ringfleet.providers.docker import cluster

        return cluster.status(self.spec)

    def outputs(self, root: Path) -> Outputs:
        """The outputs `up` saved: the local cluster has no Pulumi stack to ask."""
        from ringfleet.converge.inventory import load_outputs
        from ringfleet.paths import outputs_path

        env = self.spec.env
        saved = outputs_path(root, env)
        if not saved.is_file():
            why = f"no outputs for {env!r} yet; run `ringfleet up {env}`"
            raise RingfleetError("inventory", why)

        return Outputs(load_outputs(saved), str(saved))

    def nodes(self, names: list[str] | None = None) -> dict[str, Node]:
        """Node containers, reached through the Docker API (no SSH from the controller)."""
        from ringfleet.nodes.docker import DockerNode
        from ringfleet.providers.docker.engine import docker_client

        client = docker_client()
        wanted = names if names is not None else [n.name for n in self.spec.nodes]
        return {name: DockerNode(client, name) for name in wanted}
