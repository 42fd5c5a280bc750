"""Seed-compatible alias of ``pixcrawler.celery_core.app`` (the seed docs import ``celery_core.app``)."""

from pixcrawler.celery_core.app import *  # noqa: F403
