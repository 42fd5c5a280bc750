"""What every image store is: content-addressed names, the operations, the errors.

Objects are named by the SHA-256 of their bytes and sharded by its first two hex digits
(``ab/ab12…64hex.ext``), so the same image crawled twice, or by two hosts, or by a retry,
is stored once, and a reference cannot be forged into a name the store did not make.
The name is known only when the last byte is in, so writing is a stream that is
committed (named) at the end or discarded; a reader never sees half an object.

A *reference* (``ref``) is what task results carry from crawl to validation. Each store
defines its form (a path, an ``s3://`` URL) and :meth:`ImageStore.resolve` is the one
gate through which a reference from a message becomes something to read: a reference
to anything outside the configured store is refused with :class:`OutsideStore`, since
the validator's input comes from the broker, and whoever can write there must not make
a worker read (or report on) arbitrary files or buckets.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from types import TracebackType

#: Name prefix of temporary files (local store) before they are named by their hash.
TEMP_PREFIX = ".part-"
_NAME = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{2,5}$")
_KEY = re.compile(r"^(?P<shard>[0-9a-f]{2})/(?P<digest>[0-9a-f]{64})\.[a-z0-9]{2,5}$")
#: Bytes kept from the start of a stream, for sniffing the file type.
HEAD_BYTES = 64


def is_image_name(name: str) -> bool:
    """Whether *name* is a file name the store gives (``<sha256>.<ext>``)."""
    return bool(_NAME.match(name))


def image_key(digest: str, extension: str) -> str:
    """The store-relative name of content with SHA-256 *digest*: ``ab/ab….ext``."""
    return f"{digest[:2]}/{digest}.{extension}"


def is_image_key(key: str) -> bool:
    """Whether *key* is exactly a name :func:`image_key` makes (shard matching the hash)."""
    match = _KEY.match(key)
    return match is not None and match["digest"].startswith(match["shard"])


@dataclass(frozen=True)
class StoredObject:
    """The outcome of a commit: where the object is, and whether it was already there."""

    ref: str
    sha256: str
    size: int
    existed: bool


@dataclass(frozen=True)
class StoreEntry:
    """One object (or leftover of an unfinished write) as the cleanup sees it."""

    #: Store-relative name, for people.
    name: str
    #: What :meth:`ImageStore.remove` needs to delete it.
    handle: str
    size: int
    #: Seconds since the epoch of the last write.
    mtime: float
    #: A partial write (a local store's temporary file), not an image.
    temporary: bool


class OutsideStore(Exception):
    """The reference names something outside the configured store; it is never read."""


class ObjectMissing(Exception):
    """The reference is inside the store but no object is there (anymore)."""


class ObjectTooLarge(Exception):
    """The object is larger than the reader accepts; it was not read."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"{size} bytes exceeds {limit}")
        self.size = size
        self.limit = limit


class StoreWriter(ABC):
    """A stream into the store: :meth:`write` chunks, then :meth:`commit` or :meth:`discard`.

    Hashing lives here so that every store names content the same way; subclasses only
    keep the bytes (:meth:`_keep`) and publish them under the final name.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = b""

    def write(self, chunk: bytes) -> None:
        if len(self.head) < HEAD_BYTES:
            self.head += chunk[: HEAD_BYTES - len(self.head)]
        self._hash.update(chunk)
        self._keep(chunk)
        self.size += len(chunk)

    @property
    def digest(self) -> str:
        return self._hash.hexdigest()

    @abstractmethod
    def _keep(self, chunk: bytes) -> None:
        """Hold *chunk* until commit."""

    @abstractmethod
    def commit(self, extension: str) -> StoredObject:
        """Publish the bytes under their content name; all or nothing."""

    @abstractmethod
    def discard(self) -> None:
        """Drop whatever was written; safe to call after commit and more than once."""

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.discard()


class ImageStore(ABC):
    """The operations crawl, validation, cleanup and verification need from a store."""

    #: Where the store is, for people and error messages (never with a secret).
    location: str

    @abstractmethod
    def writer(self) -> StoreWriter:
        """A new stream into the store."""

    @abstractmethod
    def resolve(self, ref: str) -> str:
        """The canonical reference for *ref*, or :class:`OutsideStore`."""

    @abstractmethod
    def read(self, ref: str, limit: int) -> bytes:
        """The object's bytes; :class:`ObjectTooLarge` above *limit*, without reading it all."""

    @abstractmethod
    def size(self, ref: str) -> int:
        """The object's size in bytes; :class:`ObjectMissing` if there is none."""

    def exists(self, ref: str) -> bool:
        try:
            self.size(ref)
        except ObjectMissing:
            return False
        return True

    @abstractmethod
    def delete(self, ref: str) -> bool:
        """Delete the object; False if there was none."""

    @abstractmethod
    def entries(self) -> Iterator[StoreEntry]:
        """Every object and every leftover of an unfinished write, with its age."""

    @abstractmethod
    def remove(self, entries: Iterable[StoreEntry]) -> list[StoreEntry]:
        """Delete (or abort) *entries*; the ones really removed by this call."""

    def close(self) -> None:  # noqa: B027 - optional: only stores holding connections close
        """Release connections; the store is not used afterwards."""
