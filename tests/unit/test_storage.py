"""The local content-addressed store: no escape from the root, no half-written files.

The S3 store, against a real SeaweedFS, is tests/integration/test_s3_store.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from pathlib import Path

import pytest

from pixcrawler.storage import (
    TEMP_PREFIX,
    ObjectMissing,
    ObjectTooLarge,
    OutsideStore,
    is_image_key,
    is_image_name,
)
from pixcrawler.storage.local import LocalStore
from pixcrawler.storage.sweep import STALE_TEMP_SECONDS, sweep


@pytest.fixture
def root(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    return store


def _write(root: Path, data: bytes, ext: str = "png") -> Path:
    with LocalStore(root).writer() as writer:
        writer.write(data[:10])
        writer.write(data[10:])
        return Path(writer.commit(ext).ref)


def _names(root: Path) -> list[str]:
    return [Path(e.name).name for e in LocalStore(root).entries()]


def test_commit_names_the_file_by_its_hash(root: Path) -> None:
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(200)
    digest = hashlib.sha256(data).hexdigest()
    with LocalStore(root).writer() as writer:
        writer.write(data)
        assert writer.head == data[:64]
        stored = writer.commit("png")
    path = Path(stored.ref)
    assert path == root / digest[:2] / f"{digest}.png"
    assert path.read_bytes() == data
    assert (stored.sha256, stored.size, stored.existed) == (digest, len(data), False)
    assert path.stat().st_mode & 0o777 == 0o640
    assert is_image_name(path.name)
    assert is_image_key(f"{digest[:2]}/{path.name}")
    assert _names(root) == [path.name]


def test_same_content_twice_is_one_file(root: Path) -> None:
    first = _write(root, b"same bytes" * 20)
    with LocalStore(root).writer() as writer:
        writer.write(b"same bytes" * 20)
        second = writer.commit("png")
    assert second.ref == str(first)
    assert second.existed
    assert len(_names(root)) == 1


def test_an_abandoned_write_leaves_nothing(root: Path) -> None:
    with LocalStore(root).writer() as writer:
        writer.write(b"partial")
        [entry] = LocalStore(root).entries()
        assert entry.name.startswith(TEMP_PREFIX)
        assert entry.temporary
    assert _names(root) == []


def test_resolve_inside_the_store(root: Path) -> None:
    path = _write(root, b"inside" * 30)
    relative = path.relative_to(root)
    store = LocalStore(root)
    assert store.resolve(str(relative)) == str(path)
    assert store.resolve(str(path)) == str(path)
    assert store.resolve(f"{relative.parent}/../{relative}") == str(path)
    assert store.read(str(path), 180) == b"inside" * 30
    assert store.size(str(relative)) == 180


@pytest.mark.parametrize(
    "candidate",
    [
        "../outside.png",
        "/etc/passwd",
        "ab/../../outside.png",
        "/",
        "..",
        "store-evil/x.png",
        "s3://images/ab/" + "a" * 64 + ".png",
        "file:///etc/passwd",
    ],
)
def test_path_escape_is_refused(root: Path, candidate: str) -> None:
    (root.parent / "outside.png").write_bytes(b"secret")
    (root.parent / "store-evil").mkdir(exist_ok=True)
    if candidate.startswith("store-evil"):
        candidate = str(root.parent / candidate)  # a sibling that shares the prefix
    store = LocalStore(root)
    with pytest.raises(OutsideStore):
        store.resolve(candidate)
    with pytest.raises(OutsideStore):
        store.read(candidate, 1000)


def _escaping_symlinks(root: Path) -> None:
    """A file link and a directory link inside the store, both pointing outside it."""
    outside = root.parent / "outside.png"
    outside.write_bytes(b"secret")
    (root / "ab").mkdir()
    (root / "ab" / "link.png").symlink_to(outside)
    (root / "dirlink").symlink_to(root.parent)


def test_symlink_escape_is_refused(root: Path) -> None:
    _escaping_symlinks(root)
    store = LocalStore(root)
    with pytest.raises(OutsideStore):
        store.resolve("ab/link.png")
    with pytest.raises(OutsideStore):
        store.read("dirlink/outside.png", 1000)


def test_entries_skip_symlinks_and_handle_a_missing_root(root: Path) -> None:
    _escaping_symlinks(root)
    kept = _write(root, b"kept" * 40)
    assert [e.handle for e in LocalStore(root).entries()] == [str(kept)]
    assert list(LocalStore(root / "missing").entries()) == []


def test_read_is_bounded_and_missing_objects_are_named(root: Path) -> None:
    store = LocalStore(root)
    path = _write(root, b"x" * 1000)
    with pytest.raises(ObjectTooLarge) as info:
        store.read(str(path), 999)
    assert (info.value.size, info.value.limit) == (1000, 999)
    assert store.read(str(path), 1000) == b"x" * 1000
    for missing in ("ab/" + "0" * 64 + ".png", ".", path.parent.name):
        with pytest.raises(ObjectMissing):
            store.read(missing, 1000)
    assert store.exists(str(path))
    assert store.delete(str(path))
    assert not store.exists(str(path))
    assert not store.delete(str(path))


@pytest.mark.parametrize(("limit", "whole"), [(5000, True), (999, False)])
def test_read_of_an_object_larger_than_its_size_said_is_complete_and_bounded(
    root: Path, limit: int, whole: bool
) -> None:
    """Read sizes its buffer from fstat; an object that has more (a FIFO says 0 bytes)
    is read on up to the limit and refused above it."""
    fifo = root / "ab" / ("1" * 64 + ".png")
    fifo.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(fifo)
    body = b"y" * 1000

    def feed() -> None:
        with contextlib.suppress(BrokenPipeError), fifo.open("wb") as writer:
            writer.write(body)

    thread = threading.Thread(target=feed)
    thread.start()
    try:
        if whole:
            assert LocalStore(root).read(str(fifo), limit) == body
        else:
            with pytest.raises(ObjectTooLarge):
                LocalStore(root).read(str(fifo), limit)
    finally:
        thread.join(10)


def test_sweep_removes_by_age_and_stale_leftovers_after_an_hour(root: Path) -> None:
    store = LocalStore(root)
    old, young = _write(root, b"old" * 50), _write(root, b"young" * 50)
    with store.writer() as unfinished:
        unfinished.write(b"p" * 65536)  # past the file's buffer: on disk
        [part] = [e for e in store.entries() if e.temporary]
        assert part.size == 65536
        now = Path(part.handle).stat().st_mtime
        os.utime(old, (now - 100, now - 100))
        os.utime(young, (now - 10, now - 10))
        assert sweep(store, now, retention_seconds=50).removed == 1
        assert not old.exists()
        assert young.exists()
        # The partial write in progress is young: kept until it is an hour old.
        later = sweep(store, now + STALE_TEMP_SECONDS - 1, retention_seconds=1e9)
        assert (later.removed, Path(part.handle).exists()) == (0, True)
        stale = sweep(store, now + STALE_TEMP_SECONDS + 1, retention_seconds=1e9)
        assert (stale.scanned, stale.removed, stale.bytes_freed) == (2, 1, 65536)
        assert not Path(part.handle).exists()


@pytest.mark.parametrize(
    ("name", "ok"),
    [
        ("a" * 64 + ".png", True),
        ("0123456789abcdef" * 4 + ".jpg", True),
        ("A" * 64 + ".png", False),
        ("a" * 63 + ".png", False),
        (TEMP_PREFIX + "abc", False),
        ("a" * 64 + ".png.tmp", False),
    ],
)
def test_image_names(name: str, ok: bool) -> None:
    assert is_image_name(name) is ok


@pytest.mark.parametrize(
    ("key", "ok"),
    [
        ("ab/ab" + "0" * 62 + ".png", True),
        ("ac/ab" + "0" * 62 + ".png", False),  # shard is not the hash's
        ("ab/../ab" + "0" * 62 + ".png", False),
        ("ab" + "0" * 62 + ".png", False),
        ("x/ab/ab" + "0" * 62 + ".png", False),
    ],
)
def test_image_keys(key: str, ok: bool) -> None:
    assert is_image_key(key) is ok
