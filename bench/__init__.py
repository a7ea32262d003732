"""Benchmarks: one command each, results as markdown tables (copied into the README)."""
