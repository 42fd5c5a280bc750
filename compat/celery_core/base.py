"""Seed-compatible alias: the seed docs import this path.

The code lives in ``pixcrawler.celery_core.base``; this module only re-exports it.
"""

from pixcrawler.celery_core.base import *  # noqa: F403
