"""The image store: content-addressed files under ``STORAGE_DIR``.

Files are named by the SHA-256 of their bytes and sharded by its first two hex digits, so
the same image downloaded twice is stored once and a retried download is idempotent.
Writes go to a temporary file in the same directory and are renamed into place, so a
reader (the validator, the cleanup) never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

TEMP_PREFIX = ".part-"
_NAME = re.compile(r"^[0-9a-f]{64}\.[a-z0-9]{2,5}$")


@dataclass(frozen=True)
class StoredFile:
    path: Path
    sha256: str
    size: int
    existed: bool


def shard_dir(root: Path, digest: str) -> Path:
    return root / digest[:2]


class AtomicWriter:
    """Stream bytes into the store; :meth:`commit` hashes, names and renames the file."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        fd, name = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=root)
        self._file = os.fdopen(fd, "wb")
        self._tmp = Path(name)
        self._hash = hashlib.sha256()
        self.size = 0
        self.head = b""

    def write(self, chunk: bytes) -> None:
        if len(self.head) < 64:
            self.head += chunk[: 64 - len(self.head)]
        self._hash.update(chunk)
        self._file.write(chunk)
        self.size += len(chunk)

    def commit(self, extension: str) -> StoredFile:
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        digest = self._hash.hexdigest()
        target_dir = shard_dir(self.root, digest)
        target_dir.mkdir(exist_ok=True)
        target = target_dir / f"{digest}.{extension}"
        existed = target.exists()
        os.chmod(self._tmp, 0o640)
        os.replace(self._tmp, target)
        return StoredFile(target, digest, self.size, existed)

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.discard()


def resolve_in_store(root: Path, candidate: str | Path) -> Path:
    """Resolve *candidate* and insist it lies inside the store (no ``..`` or symlink escape)."""
    root_real = root.resolve()
    path = Path(candidate)
    if not path.is_absolute():
        path = root_real / path
    real = path.resolve()
    if real != root_real and root_real not in real.parents:
        raise PermissionError(f"{candidate} is outside the image store")
    return real


def iter_store(root: Path) -> Iterator[os.DirEntry[str]]:
    """Every regular file in the store, temporary files included; symlinks are skipped."""
    if not root.is_dir():
        return
    stack = [root]
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    yield entry


def is_image_name(name: str) -> bool:
    return bool(_NAME.match(name))
