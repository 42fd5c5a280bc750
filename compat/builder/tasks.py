"""Seed-compatible alias of ``pixcrawler.builder.tasks`` (the seed docs import ``builder.tasks``)."""

from pixcrawler.builder.tasks import *  # noqa: F403
