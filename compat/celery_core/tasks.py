"""Seed-compatible alias: the seed docs import this path.

The code lives in ``pixcrawler.celery_core.tasks``; this module only re-exports it.
"""

from pixcrawler.celery_core.tasks import *  # noqa: F403
