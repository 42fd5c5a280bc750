"""Seed-compatible alias: the seed docs import this path.

The code lives in ``pixcrawler.builder``; this module only re-exports it.
"""

from pixcrawler.builder import *  # noqa: F403
