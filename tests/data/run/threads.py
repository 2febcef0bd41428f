"""Print the thread settings this rank was started with: the wrapper's work, seen by the rank."""

import os

print(
    "threads "
    f"local_size={os.environ.get('OMPI_COMM_WORLD_LOCAL_SIZE')} "
    f"omp={os.environ.get('OMP_NUM_THREADS')} "
    f"intra_op={os.environ.get('TF_NUM_INTRAOP_THREADS')} "
    f"inter_op={os.environ.get('TF_NUM_INTEROP_THREADS')}",
    flush=True,
)
