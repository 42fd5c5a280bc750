"""Seed-compatible alias: the seed docs import this path; the code lives in ``pixcrawler.celery_core.config``."""

from pixcrawler.celery_core.config import *  # noqa: F403
