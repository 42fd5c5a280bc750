"""Benchmarks: scripts, not tests. ``uv run python benchmarks/run.py`` writes docs/BENCHMARKS.md."""
