"""A job whose rank 1 fails: `run` must return a non-zero exit code."""

import sys

import horovod.tensorflow as hvd

hvd.init()
print(f"rank {hvd.rank()} here", flush=True)
sys.exit(3 if hvd.rank() == 1 else 0)
