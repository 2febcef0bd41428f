"""digits (scikit-learn's bundled digits, a Keras MLP) written for Horovod's elastic mode.

Launched by `ringfleet run` with `elastic:` in the job (jobs/digits-elastic.yaml). The
training state (weights, optimizer, epoch) is committed in memory at the end of every
epoch; when a node is lost, the surviving ranks roll back to the last commit and go on
with fewer ranks, and when a node rejoins, its new ranks get the state by broadcast.
Each (re)start shards the data and scales the learning rate by the current size.
Nothing is downloaded: the data ship inside scikit-learn.
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


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--epochs", type=int, default=40)
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


class CommitEachEpoch(tf.keras.callbacks.Callback):
    """Commit the state after each epoch (after UpdateEpochStateCallback has counted it).

    A commit is also where Horovod raises HostsUpdatedInterrupt when nodes joined or
    left, so ranks change at epoch boundaries; rank 0 prints the epoch first.
    """

    def __init__(self, state, x_val, y_val, history: dict):
        super().__init__()
        self.state, self.x_val, self.y_val, self.history = state, x_val, y_val, history

    def on_epoch_end(self, epoch, logs=None):
        if hvd.rank() == 0:
            loss, acc = self.model.evaluate(self.x_val, self.y_val, verbose=0)
            self.history[self.state.epoch] = (float(loss), float(acc))
            print(
                f"epoch {self.state.epoch}: val_accuracy={acc:.4f} ranks={hvd.size()}",
                flush=True,
            )
        self.state.commit()


def main() -> int:
    args = parse_args()
    hvd.init()
    tf.keras.utils.set_random_seed(SEED)
    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.2, random_state=SEED, stratify=y
    )

    model = build_model()
    # Horovod 0.28 wraps Keras 2's legacy optimizers; the new ones lack the hooks it needs.
    optimizer = hvd.DistributedOptimizer(
        tf.keras.optimizers.legacy.Adam(learning_rate=args.lr * hvd.size())
    )
    model.compile(loss="sparse_categorical_crossentropy", optimizer=optimizer, metrics=["accuracy"])

    def one_step() -> None:
        # The optimizer's slots exist only after a step; every rank takes one (an allreduce
        # all of them join) before the state is synced, so new ranks can receive it.
        model.fit(x_train[: args.batch_size], y_train[: args.batch_size], epochs=1, verbose=0)

    one_step()
    state = hvd.elastic.KerasState(model, batch=0, epoch=0)

    def on_reset() -> None:
        # Linear scaling rule for the new size, then the step that joins the new ranks.
        tf.keras.backend.set_value(state.model.optimizer.lr, args.lr * hvd.size())
        one_step()

    state.register_reset_callbacks([on_reset])
    history: dict[int, tuple[float, float]] = {}
    callbacks = [
        hvd.elastic.UpdateEpochStateCallback(state),
        CommitEachEpoch(state, x_val, y_val, history),
    ]

    @hvd.elastic.run
    def train(state) -> None:
        rank, size = hvd.rank(), hvd.size()
        # Each rank a disjoint shard of the current size, so an epoch covers the data once.
        state.model.fit(
            x_train[rank::size],
            y_train[rank::size],
            batch_size=args.batch_size,
            epochs=args.epochs - state.epoch,
            callbacks=callbacks,
            verbose=0,
        )

    started = time.monotonic()
    train(state)
    seconds = time.monotonic() - started
    if hvd.rank() == 0:
        val_loss, val_acc = (float(v) for v in model.evaluate(x_val, y_val, verbose=0))
        out = Path(args.output)
        out.mkdir(parents=True, exist_ok=True)
        model.save(out / "model.keras")
        epochs = sorted(history)
        metrics = {
            "val_accuracy": val_acc,
            "val_loss": val_loss,
            "epochs": args.epochs,
            "ranks": hvd.size(),
            "batch_size_per_rank": args.batch_size,
            "train_seconds": round(seconds, 2),
            # Per-epoch curves for `ringfleet runs ENV RUN --plot` (the last try of each epoch).
            "history": {
                "val_loss": [history[e][0] for e in epochs],
                "val_accuracy": [history[e][1] for e in epochs],
            },
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(f"digits: val_accuracy={val_acc:.4f} ranks={hvd.size()} artifacts={out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
