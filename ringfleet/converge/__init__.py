"""ringfleet.converge."""
