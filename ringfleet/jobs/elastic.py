"""Elastic runs (#18): Horovod's elastic driver, with a host list ringfleet keeps live.

A job with `elastic: {min_processes, max_processes}` launches `horovodrun` in elastic
mode (Gloo controller). The driver runs a discovery script every second; the script
prints `<run dir>/hosts`, one `host:slots` line per live node of the placement, which
this module rewrites as `ringfleet run` sees nodes lost and healed. A lost node leaves
the list (`lost NODE; continuing with K ranks`) and is healed in the background by
its provider, as a restart would heal it; once back it returns to the list (`returned`),
and Horovod starts ranks on it at the survivors' next commit (`rejoined`, seen when those
ranks announce themselves). The launch node runs the driver itself, so losing it ends the
run as a lost node does without elastic.

Which node a rank runs on changes as ranks come and go, so each rank's wrapper
(rankexec.py) announces its rank and node in its first line, which `run` reads.
"""

from __future__ import annotations

import posixpath
import re
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ringfleet.errors import one_line
from ringfleet.jobs.rankexec import ANNOUNCE_PREFIX
from ringfleet.nodes import Node

DISCOVERY_NAME = "discover-hosts.sh"
HOSTS_NAME = "hosts"
# What each rank's wrapper prints first: `ringfleet rankexec: rank 2 on rf-local-cpu-2`.
ANNOUNCE_RE = re.compile(rf"^{re.escape(ANNOUNCE_PREFIX)}rank (\d+) on (\S+)$")


def hosts_path(discovery_path: str) -> str:
    """The live list sits beside the discovery script that prints it."""
    return posixpath.join(posixpath.dirname(discovery_path), HOSTS_NAME)


def discovery_script(hosts: str) -> str:
    """The script `--host-discovery-script` names: it prints the live host list."""
    return (
        "#!/bin/sh\n"
        "# Horovod's elastic driver runs this every second. ringfleet rewrites the list\n"
        "# as nodes are lost and healed: one `host:slots` line per live node.\n"
        f"exec cat {shlex.quote(hosts)}\n"
    )


def hosts_text(slots: dict[str, int], live: list[str]) -> str:
    """The discovery list: `host:slots` for each live node, in placement order."""
    return "".join(f"{name}:{ranks}\n" for name, ranks in slots.items() if name in live)


def announced(text: str) -> tuple[int, str] | None:
    """(rank, node) from a wrapper's announcement line, else None."""
    match = ANNOUNCE_RE.match(text.strip())
    return (int(match.group(1)), match.group(2)) if match else None


@dataclass
class Event:
    """One change of the live list, as the run record keeps it."""

    event: str
    """lost; returned (healed and back on the host list); rejoined (ranks started on it
    again, as their wrappers announced); or heal failed."""
    node: str
    seconds: float
    """Since the run started."""
    ranks: int
    """Ranks the live list allows after the change (at most max_processes)."""
    detail: str = ""


@dataclass
class ElasticRun:
    """The live list of one elastic run, its file on shared storage and its heals."""

    slots: dict[str, int]
    """Ranks per node of the placement, in order; the list never holds other nodes."""
    launch_node: str
    hosts_path: str
    min_processes: int
    max_processes: int
    nodes: dict[str, Node]
    """The run's nodes; a heal replaces the entry of the node it brought back."""
    heal: Callable[[str], None]
    say: Callable[[str], None]
    owner: tuple[int, int]
    user: str
    check: Callable[[str], str | None] = lambda name: None
    """The health gate on a healed node: why it is not fit to run ranks, or None. Horovod
    starts ranks on a listed node at once, so a node goes back on the list only once its
    SSH, storage and venv answer; a half-ready one would fail them and cost a reset."""
    live: list[str] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _heals: list[threading.Thread] = field(default_factory=list)
    _returned: set[str] = field(default_factory=set)
    """Nodes back on the list whose ranks have not announced themselves yet."""

    def __post_init__(self) -> None:
        self.live = list(self.slots)

    @classmethod
    def of(cls, rendered, nodes, heal, say, owner, user, check=None) -> ElasticRun | None:
        """The live list of a rendered launch; None unless its job is elastic."""
        job = rendered.job
        if not job.elastic or rendered.discovery_path is None:
            return None
        return cls(
            dict(rendered.placement), rendered.launch_node, hosts_path(rendered.discovery_path),
            job.elastic.min_processes, job.elastic.max_processes, nodes, heal, say, owner, user,
            *([check] if check else []),
        )  # fmt: skip

    def put_files(self, node: Node, rendered) -> None:
        """The discovery script and the first list, made with the run's other files."""
        node.put_file(rendered.discovery_path, rendered.discovery.encode(), self.owner, 0o755)
        self.write(node)

    def ranks(self) -> int:
        return min(sum(self.slots[name] for name in self.live), self.max_processes)

    def write(self, node: Node | None = None) -> None:
        """The live list to shared storage, through the launch node; renamed into place,
        so the driver never reads half a list."""
        node = node or self.nodes[self.launch_node]
        temporary = f"{self.hosts_path}.new"
        node.put_file(temporary, hosts_text(self.slots, self.live).encode(), self.owner)
        node.run(["mv", "-f", temporary, self.hosts_path], user=self.user)

    def tolerate(self, dead: list[str]) -> bool:
        """Take dead nodes off the list and start healing them; False when the run cannot
        go on (the launch node, where the driver runs, is among them)."""
        if self.launch_node in dead:
            return False
        for name in dead:
            with self._lock:
                if name not in self.live:
                    continue  # already off the list, being healed
                self.live.remove(name)
                self.write()
                self._note("lost", name)
            left = self.ranks()
            if left >= self.min_processes:
                self.say(f"lost {name}; continuing with {left} ranks")
            else:
                self.say(
                    f"lost {name}; {left} ranks left, fewer than min_processes "
                    f"{self.min_processes}: waiting for it to heal"
                )
            thread = threading.Thread(target=self._heal, args=(name,), daemon=True)
            self._heals.append(thread)
            thread.start()
        return True

    def _heal(self, name: str) -> None:
        try:
            self.heal(name)
            why = self.check(name)
        except Exception as exc:  # noqa: BLE001 - the run goes on without it; the record says why
            why = one_line(str(exc))[:200]
        if why:
            with self._lock:
                self._note("heal failed", name, why)
            self.say(f"heal {name} failed ({why}); continuing with {self.ranks()} ranks")
            return
        with self._lock:
            self.live.append(name)
            self.write()
            self._note("returned", name)
            self._returned.add(name)
        self.say(
            f"healed {name}; back on the host list: up to {self.ranks()} ranks from the next commit"
        )

    def rank_started(self, rank: int, node: str) -> None:
        """A rank announced itself (rankexec.py): the first on a returned node means
        Horovod has started that node's ranks again, so the node has rejoined."""
        with self._lock:
            if node not in self._returned:
                return  # a rank of the first launch, or a node that never left
            self._returned.discard(node)
            self._note("rejoined", node, f"rank {rank} started on it")
        self.say(f"{node} rejoined: rank {rank} started on it")

    def _note(self, event: str, name: str, detail: str = "") -> None:
        seconds = round(time.monotonic() - self.started, 2)
        self.events.append(Event(event, name, seconds, self.ranks(), detail))

    def finish(self, timeout: float) -> None:
        """Wait for heals still under way, so the run leaves its nodes as it found them."""
        deadline = time.monotonic() + timeout
        for thread in self._heals:
            thread.join(max(0.0, deadline - time.monotonic()))

    def record(self) -> dict:
        """What status.json adds for an elastic run."""
        return {
            "elastic": {
                "min_processes": self.min_processes,
                "max_processes": self.max_processes,
                "events": [asdict(e) for e in self.events],
            },
            "lost_nodes": [e.node for e in self.events if e.event == "lost"],
        }

    @property
    def rejoins(self) -> int:
        return sum(1 for e in self.events if e.event == "rejoined")
