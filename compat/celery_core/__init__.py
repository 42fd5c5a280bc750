"""Seed-compatible alias: the seed docs import this path.

The code lives in ``pixcrawler.celery_core``; this module only re-exports it.
"""

from pixcrawler.celery_core import *  # noqa: F403
