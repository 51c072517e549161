"""Helpers for the tests that run real Podman containers (see ``engine_url``)."""
