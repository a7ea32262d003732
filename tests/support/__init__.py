"""Helpers for tests that start real processes: ports, processes, TLS, Redis, the runner."""
