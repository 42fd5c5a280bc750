"""Seed-compatible alias of ``pixcrawler.celery_core.tasks`` (the seed docs import ``celery_core.tasks``)."""

from pixcrawler.celery_core.tasks import *  # noqa: F403
