"""ringfleet.jobs."""
