"""Seed-compatible alias: the seed docs import this path.

The code lives in ``pixcrawler.validator``; this module only re-exports it.
"""

from pixcrawler.validator import *  # noqa: F403
