"""Image registries: references, credentials and the distribution API client."""
