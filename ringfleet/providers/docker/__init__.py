"""ringfleet.providers.docker."""
