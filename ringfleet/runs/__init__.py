"""Seeing a run: its record's schema, quieter logs, reports, plots and TensorBoard."""
