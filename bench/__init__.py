"""Benchmarks against Postgres' own ceiling (see docs/performance.md)."""
