"""Horovod's timeline and autotuning switches, set by `ringfleet run --timeline/--autotune`."""

from __future__ import annotations

# Horovod's own switches, set in the ranks' environment by `run --timeline/--autotune`.
# HOROVOD_TIMELINE: rank 0 writes every tensor's negotiate/allreduce phases as Chrome
# trace events (a JSON array) to this file, viewable in chrome://tracing or Perfetto.
HOROVOD_TIMELINE = "HOROVOD_TIMELINE"
# HOROVOD_AUTOTUNE=1 searches fusion threshold, cycle time and response cache while the
# job trains; HOROVOD_AUTOTUNE_LOG gets one CSV line per tried setting and its score.
HOROVOD_AUTOTUNE = "HOROVOD_AUTOTUNE"
HOROVOD_AUTOTUNE_LOG = "HOROVOD_AUTOTUNE_LOG"
TIMELINE_FILENAME = "timeline.json"
AUTOTUNE_LOG_FILENAME = "autotune.csv"
PERFETTO_URL = "https://ui.perfetto.dev"


def horovod_env(run_dir: str, timeline: bool, autotune: bool) -> dict[str, str]:
    """Horovod's timeline and autotuning switches, writing into the run's record."""
    env: dict[str, str] = {}
    if timeline:
        env[HOROVOD_TIMELINE] = f"{run_dir}/{TIMELINE_FILENAME}"
    if autotune:
        env[HOROVOD_AUTOTUNE] = "1"
        env[HOROVOD_AUTOTUNE_LOG] = f"{run_dir}/{AUTOTUNE_LOG_FILENAME}"
    return env
