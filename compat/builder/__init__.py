"""Seed-compatible alias: the seed docs import this path; the code lives in ``pixcrawler.builder``."""

from pixcrawler.builder import *  # noqa: F403
