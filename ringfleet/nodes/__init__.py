"""ringfleet.nodes."""
