"""Seed-compatible alias of ``pixcrawler.celery_core.config`` (the seed docs import ``celery_core.config``)."""

from pixcrawler.celery_core.config import *  # noqa: F403
