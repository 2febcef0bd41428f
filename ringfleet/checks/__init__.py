"""ringfleet.checks."""
