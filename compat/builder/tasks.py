"""Seed-compatible alias: the seed docs import this path.

The code lives in ``pixcrawler.builder.tasks``; this module only re-exports it.
"""

from pixcrawler.builder.tasks import *  # noqa: F403
