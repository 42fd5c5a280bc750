"""Seed-compatible alias of ``pixcrawler.celery_core`` (the seed docs import ``celery_core``)."""

from pixcrawler.celery_core import *  # noqa: F403
