"""A job that never finishes on its own: it allreduces forever, printing progress."""

import time

import horovod.tensorflow as hvd
import tensorflow as tf

hvd.init()
print(f"rank {hvd.rank()} of {hvd.size()} started", flush=True)
step = 0
while True:
    hvd.allreduce(tf.constant([float(step)]), op=hvd.Sum)
    step += 1
    if step % 20 == 0:
        print(f"rank {hvd.rank()}: step {step}", flush=True)
    time.sleep(0.1)
