"""Allreduce bandwidth: time Horovod allreduce of one large tensor, report bus bandwidth.

Bus bandwidth follows the NCCL-tests convention: algbw * 2 (n - 1) / n, the
traffic each rank's link carries in a ring allreduce.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import horovod.tensorflow as hvd
import tensorflow as tf


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--megabytes", type=int, default=64)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    args = p.parse_args()
    hvd.init()
    n = hvd.size()
    tensor = tf.ones([args.megabytes * 1024 * 1024 // 4], dtype=tf.float32)
    for i in range(args.warmup):
        hvd.allreduce(tensor, op=hvd.Sum, name=f"warm{i}").numpy()
    times = []
    for i in range(args.iters):
        started = time.perf_counter()
        hvd.allreduce(tensor, op=hvd.Sum, name=f"iter{i}").numpy()
        times.append(time.perf_counter() - started)
    best = min(times)
    size_bytes = args.megabytes * 1024 * 1024
    algbw = size_bytes / best
    busbw = algbw * 2 * (n - 1) / n
    if hvd.rank() == 0:
        result = {
            "ranks": n,
            "megabytes": args.megabytes,
            "best_seconds": best,
            "algbw_gbit_s": algbw * 8 / 1e9,
            "busbw_gbit_s": busbw * 8 / 1e9,
        }
        print(f"allreduce: {json.dumps(result)}")
        out = os.environ.get("RINGFLEET_RUN_DIR")
        if out:
            Path(out, "allreduce.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
