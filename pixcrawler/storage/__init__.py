"""The image store every host shares: one interface, a local and an S3 implementation.

``base`` defines the interface, the content-addressed names and the errors; ``local``
and ``s3`` implement it; ``location`` parses ``PIXCRAWLER_CELERY_STORAGE_URL``;
``factory`` builds a process's store from the settings; ``sweep`` is the age-based
cleanup. Importing this package loads no S3 client library.
"""

from pixcrawler.storage.base import (
    TEMP_PREFIX,
    ImageStore,
    ObjectMissing,
    ObjectTooLarge,
    OutsideStore,
    StoredObject,
    StoreEntry,
    StoreWriter,
    image_key,
    is_image_key,
    is_image_name,
)
from pixcrawler.storage.factory import get_store, open_store

__all__ = [
    "TEMP_PREFIX",
    "ImageStore",
    "ObjectMissing",
    "ObjectTooLarge",
    "OutsideStore",
    "StoreEntry",
    "StoreWriter",
    "StoredObject",
    "get_store",
    "image_key",
    "is_image_key",
    "is_image_name",
    "open_store",
]
