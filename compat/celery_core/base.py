"""Seed-compatible alias: the seed docs import this path; the code lives in ``pixcrawler.celery_core.base``."""

from pixcrawler.celery_core.base import *  # noqa: F403
