"""Seed-compatible alias: the seed docs import this path.

The code lives in ``pixcrawler.celery_core.config``; this module only re-exports it.
"""

from pixcrawler.celery_core.config import *  # noqa: F403
