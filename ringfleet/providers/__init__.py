"""ringfleet.providers."""
