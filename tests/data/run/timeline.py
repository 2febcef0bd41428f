"""A few allreduces and nothing else, so `run --timeline` has tensors to record."""

import horovod.tensorflow as hvd
import tensorflow as tf

hvd.init()
for step in range(5):
    hvd.allreduce(tf.constant([float(hvd.rank() + step)]), name="probe")
print(f"rank {hvd.rank()}/{hvd.size()}: allreduced", flush=True)
# Shut down explicitly so rank 0 closes the timeline before the interpreter exits.
hvd.shutdown()
