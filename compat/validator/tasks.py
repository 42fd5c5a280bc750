"""Seed-compatible alias: the seed docs import this path.

The code lives in ``pixcrawler.validator.tasks``; this module only re-exports it.
"""

from pixcrawler.validator.tasks import *  # noqa: F403
