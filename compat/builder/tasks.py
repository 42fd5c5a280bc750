"""Seed-compatible alias: the seed docs import this path; the code lives in ``pixcrawler.builder.tasks``."""

from pixcrawler.builder.tasks import *  # noqa: F403
