"""PixCrawler: image crawling and validation on Celery workers backed by Redis."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("pixcrawler")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
