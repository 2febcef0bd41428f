"""Train a Keras MLP on scikit-learn's bundled digits, data-parallel with Horovod.

Nothing is downloaded: the data ship inside scikit-learn. Each rank trains on
its own shard; gradients are averaged by Horovod's DistributedOptimizer.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import horovod.tensorflow.keras as hvd
import numpy as np
import tensorflow as tf
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

SEED = 1234
# Shared by every attempt of a run (`restarts`): rank 0 saves here, every rank resumes.
CHECKPOINTS = os.environ.get("RINGFLEET_CHECKPOINT_DIR", "")


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Rank 0 saves the weights each epoch, then names them in `latest` (an atomic
    rename), so an attempt killed mid-save resumes from the last whole checkpoint."""

    def on_epoch_end(self, epoch, logs=None):
        path = Path(CHECKPOINTS) / f"epoch-{epoch + 1:04d}.weights.h5"
        self.model.save_weights(str(path))
        path.with_name("latest.tmp").write_text(f"{epoch + 1}\n")
        os.replace(path.with_name("latest.tmp"), path.with_name("latest"))
        print(f"checkpoint: epoch {epoch + 1}", flush=True)


def resume(model: tf.keras.Model) -> int:
    """Epochs already trained by an earlier attempt, their weights loaded; 0 if none."""
    latest = Path(CHECKPOINTS) / "latest"
    if not CHECKPOINTS or not latest.is_file():
        return 0
    epoch = int(latest.read_text())
    model.load_weights(str(latest.with_name(f"epoch-{epoch:04d}.weights.h5")))
    return epoch


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=32, help="per rank")
    p.add_argument("--lr", type=float, default=0.001, help="single-rank learning rate")
    p.add_argument("--output", default=os.environ.get("RINGFLEET_RUN_DIR", "."))
    return p.parse_args()


def build_model() -> tf.keras.Model:
    return tf.keras.Sequential(
        [
            tf.keras.layers.Input(shape=(64,)),
            tf.keras.layers.Dense(256, activation="relu"),
            tf.keras.layers.Dense(128, activation="relu"),
            tf.keras.layers.Dense(10, activation="softmax"),
        ]
    )


def main() -> int:
    args = parse_args()
    hvd.init()
    rank, size = hvd.rank(), hvd.size()
    # Same initial weights come from rank 0's broadcast; the seed makes rank 0 repeatable.
    tf.keras.utils.set_random_seed(SEED)

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.2, random_state=SEED, stratify=y
    )
    # Each rank sees a disjoint shard, so an epoch covers the data once across ranks.
    x_shard, y_shard = x_train[rank::size], y_train[rank::size]

    # Linear scaling rule: the global batch grows with the number of ranks.
    scaled_lr = args.lr * size
    # Horovod 0.28 wraps Keras 2's legacy optimizers; the new ones lack the hooks it needs.
    optimizer = hvd.DistributedOptimizer(tf.keras.optimizers.legacy.Adam(learning_rate=scaled_lr))
    model = build_model()
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])
    callbacks = [
        hvd.callbacks.BroadcastGlobalVariablesCallback(0),
        hvd.callbacks.MetricAverageCallback(),
        hvd.callbacks.LearningRateWarmupCallback(initial_lr=scaled_lr, warmup_epochs=3, verbose=0),
    ]
    if rank == 0:
        # Rank 0's per-epoch metrics (already averaged over ranks) for `ringfleet tensorboard`.
        callbacks.append(tf.keras.callbacks.TensorBoard(f"{args.output}/tensorboard"))
    # At least one epoch runs, so the metrics below always exist.
    initial_epoch = min(resume(model), args.epochs - 1)
    if initial_epoch and rank == 0:
        print(f"resumed from checkpoint at epoch {initial_epoch}", flush=True)
    if CHECKPOINTS and rank == 0:
        callbacks.append(EpochCheckpoint())
    started = time.monotonic()
    history = model.fit(
        x_shard,
        y_shard,
        batch_size=args.batch_size,
        epochs=args.epochs,
        initial_epoch=initial_epoch,
        validation_data=(x_val, y_val),
        callbacks=callbacks,
        verbose=2 if rank == 0 else 0,
    )
    seconds = time.monotonic() - started
    val_acc = float(history.history["val_accuracy"][-1])
    val_loss = float(history.history["val_loss"][-1])
    print(f"rank {rank}/{size}: trained {len(x_shard)} samples, val_accuracy={val_acc:.4f}")
    if rank == 0:
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.keras")
        metrics = {
            "val_accuracy": val_acc,
            "val_loss": val_loss,
            "epochs": args.epochs,
            "ranks": size,
            "batch_size_per_rank": args.batch_size,
            "learning_rate": scaled_lr,
            "train_seconds": round(seconds, 2),
            # Per-epoch curves for `ringfleet runs ENV RUN --plot`.
            "history": {k: [float(v) for v in vs] for k, vs in history.history.items()},
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"digits: val_accuracy={val_acc:.4f} ranks={size} artifacts={out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
