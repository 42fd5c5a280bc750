"""Seed-compatible alias: the seed docs import this path.

The code lives in ``pixcrawler.celery_core.app``; this module only re-exports it.
"""

from pixcrawler.celery_core.app import *  # noqa: F403
