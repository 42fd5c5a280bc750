"""Seed-compatible alias of ``pixcrawler.celery_core.base`` (the seed docs import ``celery_core.base``)."""

from pixcrawler.celery_core.base import *  # noqa: F403
