"""Seed-compatible alias of ``pixcrawler.validator`` (the seed docs import ``validator``)."""

from pixcrawler.validator import *  # noqa: F403
