"""Seed-compatible alias: the seed docs import this path; the code lives in ``pixcrawler.celery_core.tasks``."""

from pixcrawler.celery_core.tasks import *  # noqa: F403
