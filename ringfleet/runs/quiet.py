"""Quieter run output: the banners every rank prints, shown once.

Each TensorFlow rank prints the same start-up banners (oneDNN, CPU features) and
Keras prints the same "callback is slow" warnings; on four ranks that is a wall of
repeats before the first epoch. The console gets each such line once, with
"(same on N ranks)"; the record keeps every rank's full log, and `run --verbose`
turns all of this off.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field

# TensorFlow's C++ logging: 0 all, 1 no INFO (the oneDNN and CPU-feature banners are
# INFO), 2 no WARNING. 1 keeps warnings a user may need to act on.
TF_CPP_MIN_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
QUIET_TF_LOG_LEVEL = "1"
# Lines that are the same on every rank: TensorFlow's C++ log lines (`2026-12-02
# 10:01:02.123456: W tensorflow/...`), its Python warnings, Keras' slow-callback note,
# absl's and the CPU-instructions banner.
BANNER_RE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWEF] )"
    r"|^(WARNING|INFO|E\d{4}|W\d{4}|I\d{4})[:\s]"
    r"|oneDNN|TensorFlow binary is optimized|rebuild TensorFlow|cpu_feature_guard"
    r"|Callback method `on_\w+` is slow|tf\.function retracing"
)
# What differs between ranks inside an otherwise identical banner: times, pids, numbers.
_VARYING_RE = re.compile(r"\d+(\.\d+)?")
# A banner seen on fewer ranks than the job has is printed after this many seconds anyway.
HOLD_SECONDS = 5.0


def rank_env(job_env: dict[str, str], verbose: bool) -> dict[str, str]:
    """The rank variables quieting adds under the job's own (the job's value wins)."""
    if verbose or TF_CPP_MIN_LOG_LEVEL in job_env:
        return {}
    return {TF_CPP_MIN_LOG_LEVEL: QUIET_TF_LOG_LEVEL}


def banner_key(text: str) -> str | None:
    """The line's identity across ranks if it is a banner, else None."""
    if not BANNER_RE.search(text):
        return None
    return _VARYING_RE.sub("#", text.strip())


@dataclass
class _Held:
    first: str
    prefix: str
    since: float
    ranks: set[int] = field(default_factory=set)


class BannerDedupe:
    """Holds banner lines until every rank printed them (or HOLD_SECONDS passed).

    `feed` returns the console lines ready now; `flush` the held ones that are due
    (all at the end). Lines that are not banners pass straight through.
    """

    def __init__(self, ranks: int, clock=time.monotonic):
        self.ranks = ranks
        self.clock = clock
        self.held: dict[str, _Held] = {}
        self.done: set[str] = set()

    def feed(self, rank: int, prefix: str, text: str) -> list[str]:
        key = banner_key(text)
        if key is None:
            return [f"{prefix} {text}"]
        if key in self.done:
            # A straggler of a banner already printed: the record has it.
            return []
        held = self.held.setdefault(key, _Held(text, prefix, self.clock()))
        held.ranks.add(rank)
        if len(held.ranks) >= self.ranks:
            return [self._release(key)]
        return []

    def flush(self, everything: bool = False) -> list[str]:
        now = self.clock()
        due = [k for k, h in self.held.items() if everything or now - h.since >= HOLD_SECONDS]
        return [self._release(key) for key in due]

    def _release(self, key: str) -> str:
        held = self.held.pop(key)
        self.done.add(key)
        count = len(held.ranks)
        if count == 1:
            return f"{held.prefix} {held.first}"
        return f"[{count} ranks] {held.first} (same on {count} ranks)"
