"""Seed-compatible alias of ``pixcrawler.builder`` (the seed docs import ``builder``)."""

from pixcrawler.builder import *  # noqa: F403
