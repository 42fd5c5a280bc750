"""Seed-compatible alias: the seed docs import this path; the code lives in ``pixcrawler.validator``."""

from pixcrawler.validator import *  # noqa: F403
