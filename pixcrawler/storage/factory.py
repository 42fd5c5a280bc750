"""The store a process uses, built from the settings once per process.

Once, because an S3 client holds a connection pool; per process, because the S3 client
(obstore) is not fork-safe: a child whose parent had done any I/O with it hangs, even
with a new client of its own. Stores are therefore built lazily, keyed by PID, and
only where tasks run: the prefork pool's parent never runs a task, so it never builds
one, and each child builds its own. The threads pool shares one store between threads,
so building it is locked (the S3 client is safe to share once built).
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from pixcrawler.storage.base import ImageStore
from pixcrawler.storage.location import FileLocation

if TYPE_CHECKING:
    from pixcrawler.celery_core.config import CelerySettings

_lock = threading.Lock()
#: id(settings) -> (pid that built it, the settings themselves, the store)
_stores: dict[int, tuple[int, CelerySettings, ImageStore]] = {}


def open_store(settings: CelerySettings) -> ImageStore:
    """A new store for *settings* (the caller closes it); see :func:`get_store`."""
    location = settings.storage_location
    if isinstance(location, FileLocation):
        from pixcrawler.storage.local import LocalStore

        return LocalStore(location.root)
    from pixcrawler.storage.s3 import S3Store  # only s3:// deployments load the client

    return S3Store.from_settings(settings, location)


def get_store(settings: CelerySettings) -> ImageStore:
    """The store of *settings* in this process, built on first use."""
    pid = os.getpid()
    with _lock:
        cached = _stores.get(id(settings))
        if cached is not None and cached[0] == pid and cached[1] is settings:
            return cached[2]
        store = open_store(settings)
        # Holding the settings keeps their id from being reused by another object.
        _stores[id(settings)] = (pid, settings, store)
        return store
