"""Seed-compatible alias: the seed docs import this path; the code lives in ``pixcrawler.celery_core``."""

from pixcrawler.celery_core import *  # noqa: F403
