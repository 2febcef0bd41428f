"""ringfleet.preview."""
