"""The example API: replace it with the service's own."""
