"""Seed-compatible alias of ``pixcrawler.validator.tasks`` (the seed docs import ``validator.tasks``)."""

from pixcrawler.validator.tasks import *  # noqa: F403
