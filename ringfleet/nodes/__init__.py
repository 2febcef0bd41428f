"""Node access: one protocol for every way the controller reaches a node.

`run`, `runs`, `status`, `verify` and `lock` talk to nodes only through `Node`.
Local nodes implement it over the Docker API (`nodes.docker.DockerNode`); hosts
the user owns (static, aws) implement it over SSH (#12). Which implementation an
env gets is the provider's choice (`ringfleet.providers`), never the caller's.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Protocol, runtime_checkable

RUNNING = "running"
"""`Node.state()` of a node that answers; any other value says why it does not."""


@runtime_checkable
class Stream(Protocol):
    """Output lines of a command still running on a node."""

    done: bool

    def read(self, start: int, wait: float) -> Iterator[str]:
        """Lines from index `start`, waiting up to `wait` seconds for new ones."""
        ...

    def exit_code(self) -> int | None:
        """The command's exit code once it ended, None while it runs."""
        ...


@runtime_checkable
class Node(Protocol):
    """One cluster node as the controller reaches it."""

    name: str
    """The inventory host name; errors name the node by it."""

    def state(self) -> str:
        """`RUNNING` when the node answers; otherwise a word saying why not."""
        ...

    def run(self, argv: list[str], user: str = "root", check: bool = True) -> tuple[int, str]:
        """Run argv to completion as `user`; returns (exit code, combined output).

        With `check`, a non-zero exit raises a one-line RingfleetError naming the node.
        """
        ...

    def output(self, argv: list[str], user: str = "root") -> str:
        """stdout of argv, which must succeed (stderr is kept out of it, for parsers).

        A failure raises a one-line RuntimeFailure naming the node, the command and
        the end of its stderr.
        """
        ...

    def put_file(self, path: str, data: bytes, owner: tuple[int, int], mode: int = 0o644) -> None:
        """Write one file (its directory must exist) owned by uid/gid `owner`."""
        ...

    def stream(self, argv: list[str], user: str, workdir: str | None = None) -> Stream:
        """Start argv as `user` and return its output as it comes."""
        ...


def user_ids(node: Node, user: str) -> tuple[int, int]:
    """`user`'s uid and gid on `node`: the owner of files put on shared storage for it."""
    uid, gid = (int(node.output(["id", flag, user]).strip()) for flag in ("-u", "-g"))
    return uid, gid


def lost_node(
    nodes: Mapping[str, Node],
    grace: float,
    interval: float,
    names: list[str] | None = None,
    down: Callable[[], set[str]] = set,
) -> str | None:
    """The first of `names` (default: all of `nodes`) not running, or named by `down()`.

    Asked again until `grace` s have passed: a launcher can end within a second of a node's
    loss, before the node's state shows it.
    """
    names = list(nodes) if names is None else names
    deadline = time.monotonic() + grace
    while True:
        gone = down()
        for name in names:
            if name in gone or (name in nodes and nodes[name].state() != RUNNING):
                return name
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)
