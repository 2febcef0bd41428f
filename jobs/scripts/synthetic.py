"""Horovod-style synthetic benchmark: images/second per rank and in total, on random data.

Modelled on the shape of Horovod's tensorflow2 synthetic benchmark (warm-up,
then timed iterations of several batches), written for a 2-core machine: the
default model is a small CNN rather than ResNet-50.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import horovod.tensorflow as hvd
import numpy as np
import tensorflow as tf


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--model", choices=["cnn", "mlp"], default="cnn")
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--num-warmup-batches", type=int, default=3)
    p.add_argument("--num-batches-per-iter", type=int, default=5)
    p.add_argument("--num-iters", type=int, default=5)
    p.add_argument("--output", default=os.environ.get("RINGFLEET_RUN_DIR", ""))
    p.add_argument("--checkpoint-every", type=int, default=5, help="iterations; 0: never")
    return p.parse_args()


def build_model(kind: str) -> tuple[tf.keras.Model, tuple[int, ...]]:
    if kind == "mlp":
        shape = (784,)
        layers = [
            tf.keras.layers.Dense(1024, activation="relu"),
            tf.keras.layers.Dense(256, activation="relu"),
        ]
    else:
        shape = (32, 32, 3)
        layers = [
            tf.keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            tf.keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
            tf.keras.layers.MaxPooling2D(),
            tf.keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
            tf.keras.layers.MaxPooling2D(),
            tf.keras.layers.Flatten(),
            tf.keras.layers.Dense(256, activation="relu"),
        ]
    model = tf.keras.Sequential(
        [tf.keras.layers.Input(shape=shape), *layers, tf.keras.layers.Dense(10)]
    )
    return model, shape


def main() -> int:
    args = parse_args()
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    model, shape = build_model(args.model)
    # Horovod 0.28 broadcasts optimizer state through the legacy optimizer API.
    optimizer = tf.keras.optimizers.legacy.SGD(0.01)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rng = np.random.default_rng(rank)
    data = tf.constant(rng.random((args.batch_size, *shape), dtype=np.float32))
    target = tf.constant(rng.integers(0, 10, size=(args.batch_size,)))

    @tf.function
    def step(first: bool) -> None:
        with tf.GradientTape() as tape:
            loss = loss_fn(target, model(data, training=True))
        tape = hvd.DistributedGradientTape(tape)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        if first:
            hvd.broadcast_variables(model.variables, root_rank=0)
            hvd.broadcast_variables(optimizer.variables(), root_rank=0)

    # Shared by every attempt of a run (`restarts`): rank 0 saves, every rank resumes.
    checkpoints = Path(os.environ.get("RINGFLEET_CHECKPOINT_DIR") or "/nonexistent")
    first_iter = 0
    if (checkpoints / "latest").is_file():
        first_iter = int((checkpoints / "latest").read_text())
        model.load_weights(str(checkpoints / f"iter-{first_iter:06d}.weights.h5"))
        if rank == 0:
            print(f"resumed from checkpoint at iteration {first_iter}", flush=True)
    step(True)
    for _ in range(args.num_warmup_batches):
        step(False)
    rates = []
    # Rank 0's throughput per iteration as TensorBoard events (`ringfleet tensorboard`).
    events = rank == 0 and args.output
    writer = tf.summary.create_file_writer(f"{args.output}/tensorboard") if events else None
    saving = checkpoints.is_dir() and args.checkpoint_every > 0
    for i in range(first_iter, max(args.num_iters, first_iter + 1)):
        if saving and i > first_iter and i % args.checkpoint_every == 0:
            if rank == 0:
                model.save_weights(str(checkpoints / f"iter-{i:06d}.weights.h5"))
                (checkpoints / "latest.tmp").write_text(f"{i}\n")
                os.replace(checkpoints / "latest.tmp", checkpoints / "latest")
            # Every rank waits here for rank 0's save, outside the timing: otherwise the
            # other ranks' next timed allreduce would wait for it and count the save as
            # training time (a few % of img/s at 1 rank per node, bench (e)).
            hvd.allreduce(tf.constant(0.0), name=f"checkpoint_{i}")
        started = time.perf_counter()
        for _ in range(args.num_batches_per_iter):
            step(False)
        rate = args.batch_size * args.num_batches_per_iter / (time.perf_counter() - started)
        rates.append(rate)
        print(f"rank {rank}: iter #{i}: {rate:.1f} img/sec")
        if writer is not None:
            with writer.as_default():
                tf.summary.scalar("img_sec", rate, step=i)
    mean = float(np.mean(rates))
    print(f"rank {rank}: {mean:.1f} img/sec (+-{1.96 * float(np.std(rates)):.1f})")
    total = float(hvd.allreduce(tf.constant(mean), op=hvd.Sum).numpy())
    if rank == 0:
        params = model.count_params()
        print(f"total: {total:.1f} img/sec on {size} rank(s) ({args.model}, {params} params)")
        if args.output:
            out = Path(args.output)
            out.mkdir(parents=True, exist_ok=True)
            result = {
                "model": args.model,
                "params": params,
                "ranks": size,
                "batch_size": args.batch_size,
                "per_rank_img_s": mean,
                "total_img_s": total,
                "history": {"img_sec": rates},
            }
            (out / "synthetic.json").write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
