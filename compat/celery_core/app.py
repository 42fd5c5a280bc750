"""Seed-compatible alias: the seed docs import this path; the code lives in ``pixcrawler.celery_core.app``."""

from pixcrawler.celery_core.app import *  # noqa: F403
