"""Whether the image store answers, asked the way the workers reach it.

The store comes from the storage factory with the workers' settings, but with the
exporter's short timeout and a single attempt: a scrape must not wait out the workers'
two-minute request limit. A local store answers when its directory can be listed; an S3
store when a HEAD of a key that does not exist gets its 404 (any other answer, a refused
connection, wrong keys or a missing bucket, is an error, as it would be for a crawl).

Bytes used are not measured: S3 has no call that says how much a bucket holds short of
listing every object, far too costly for every scrape. The node exporter's filesystem
metrics on the store's host say how full its disk is (the alert rules use them).
"""

from __future__ import annotations

import os

from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.storage import ImageStore, open_store
from pixcrawler.storage.local import LocalStore

#: The key an S3 store is asked for; no object is ever written there.
PROBE_KEY = "pixcrawler-exporter-probe"


def probe_settings(settings: CelerySettings, timeout: float) -> CelerySettings:
    """The settings with every object store wait bounded by *timeout*, one attempt."""
    return settings.model_copy(
        update={
            "storage_s3_connect_timeout": timeout,
            "storage_s3_read_timeout": timeout,
            "storage_s3_request_timeout": timeout,
            "storage_s3_max_attempts": 1,
        }
    )


def build_store(settings: CelerySettings, timeout: float) -> ImageStore:
    return open_store(probe_settings(settings, timeout))


def store_answers(store: ImageStore) -> None:
    """Return if the store answers; raise why it does not."""
    if isinstance(store, LocalStore):
        if not os.path.isdir(store.root) or not os.access(store.root, os.R_OK | os.X_OK):
            raise OSError(f"{store.location} is not a directory this user can read")
        return
    from pixcrawler.storage.s3 import S3Store  # only s3:// deployments load the client

    if isinstance(store, S3Store):
        store.head(store.options.location.key(PROBE_KEY))
        return
    raise TypeError(f"no probe for {type(store).__name__}")
