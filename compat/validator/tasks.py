"""Seed-compatible alias: the seed docs import this path; the code lives in ``pixcrawler.validator.tasks``."""

from pixcrawler.validator.tasks import *  # noqa: F403
