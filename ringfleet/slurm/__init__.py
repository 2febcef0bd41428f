"""Slurm as a cluster's scheduler (`scheduler: slurm`): submission, and the queue."""
