"""Benchmarks: ``python -m benchmarks.bench`` (see docs/performance.md)."""
