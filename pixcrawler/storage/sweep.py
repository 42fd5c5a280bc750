"""Deleting what is past its time, for ``celery_core.cleanup_storage`` on any store.

Images go after the retention; leftovers of unfinished writes (the local store's
temporary files of a killed worker) after :data:`STALE_TEMP_SECONDS`, long enough that
no write still in progress is cut short, since no download runs for an hour. An S3
store has no partial objects to list (see storage/s3.py on incomplete multipart uploads).
"""

from __future__ import annotations

from dataclasses import dataclass

from pixcrawler.storage.base import ImageStore, StoreEntry

#: Unfinished writes older than this are leftovers of a killed worker.
STALE_TEMP_SECONDS = 3600
#: Entries removed per call to the store (S3 deletes up to 1000 keys per request).
BATCH = 1000


@dataclass
class SweepCounts:
    scanned: int = 0
    removed: int = 0
    bytes_freed: int = 0


def sweep(store: ImageStore, now: float, retention_seconds: float) -> SweepCounts:
    """Remove images older than *retention_seconds* and stale leftovers, as of *now*."""
    image_cutoff = now - retention_seconds
    temp_cutoff = now - STALE_TEMP_SECONDS
    counts = SweepCounts()
    due: list[StoreEntry] = []

    def flush() -> None:
        removed = store.remove(due)
        counts.removed += len(removed)
        counts.bytes_freed += sum(entry.size for entry in removed)
        due.clear()

    for entry in store.entries():
        counts.scanned += 1
        cutoff = temp_cutoff if entry.temporary else image_cutoff
        if entry.mtime < cutoff:
            due.append(entry)
            if len(due) >= BATCH:
                flush()
    flush()
    return counts
