"""Loaded into a worker with ``-I benchmarks.patched_worker``: applies :mod:`benchmarks.patched`."""

from benchmarks import patched

patched.apply()
