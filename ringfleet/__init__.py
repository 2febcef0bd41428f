"""ringfleet: one typed cluster spec to a reproducible Horovod cluster, and jobs on it."""

__version__ = "0.1.0"
