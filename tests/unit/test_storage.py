"""The content-addressed store: no escape from the root, no half-written files."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from pixcrawler.storage import (
    TEMP_PREFIX,
    AtomicWriter,
    is_image_name,
    iter_store,
    resolve_in_store,
)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    store = tmp_path / "store"
    store.mkdir()
    return store


def _write(root: Path, data: bytes, ext: str = "png") -> Path:
    with AtomicWriter(root) as writer:
        writer.write(data[:10])
        writer.write(data[10:])
        return writer.commit(ext).path


def test_commit_names_the_file_by_its_hash(root: Path) -> None:
    data = b"\x89PNG\r\n\x1a\n" + os.urandom(200)
    digest = hashlib.sha256(data).hexdigest()
    with AtomicWriter(root) as writer:
        writer.write(data)
        assert writer.head == data[:64]
        stored = writer.commit("png")
    assert stored.path == root / digest[:2] / f"{digest}.png"
    assert stored.path.read_bytes() == data
    assert (stored.sha256, stored.size, stored.existed) == (digest, len(data), False)
    assert stored.path.stat().st_mode & 0o777 == 0o640
    assert is_image_name(stored.path.name)
    assert [e.name for e in iter_store(root)] == [stored.path.name]


def test_same_content_twice_is_one_file(root: Path) -> None:
    first = _write(root, b"same bytes" * 20)
    with AtomicWriter(root) as writer:
        writer.write(b"same bytes" * 20)
        second = writer.commit("png")
    assert second.path == first
    assert second.existed
    assert len(list(iter_store(root))) == 1


def test_an_abandoned_write_leaves_nothing(root: Path) -> None:
    with AtomicWriter(root) as writer:
        writer.write(b"partial")
        assert next(e.name for e in iter_store(root)).startswith(TEMP_PREFIX)
    assert list(iter_store(root)) == []


def test_resolve_inside_the_store(root: Path) -> None:
    path = _write(root, b"inside" * 30)
    relative = path.relative_to(root)
    assert resolve_in_store(root, relative) == path
    assert resolve_in_store(root, str(path)) == path
    assert resolve_in_store(root, f"{relative.parent}/../{relative}") == path


@pytest.mark.parametrize(
    "candidate",
    ["../outside.png", "/etc/passwd", "ab/../../outside.png", "/", "..", "store-evil/x.png"],
)
def test_path_escape_is_refused(root: Path, candidate: str) -> None:
    (root.parent / "outside.png").write_bytes(b"secret")
    (root.parent / "store-evil").mkdir(exist_ok=True)
    if candidate.startswith("store-evil"):
        candidate = str(root.parent / candidate)  # a sibling that shares the prefix
    with pytest.raises(PermissionError):
        resolve_in_store(root, candidate)


def _escaping_symlinks(root: Path) -> None:
    """A file link and a directory link inside the store, both pointing outside it."""
    outside = root.parent / "outside.png"
    outside.write_bytes(b"secret")
    (root / "ab").mkdir()
    (root / "ab" / "link.png").symlink_to(outside)
    (root / "dirlink").symlink_to(root.parent)


def test_symlink_escape_is_refused(root: Path) -> None:
    _escaping_symlinks(root)
    with pytest.raises(PermissionError):
        resolve_in_store(root, "ab/link.png")
    with pytest.raises(PermissionError):
        resolve_in_store(root, "dirlink/outside.png")


def test_iter_store_skips_symlinks_and_handles_a_missing_root(root: Path) -> None:
    _escaping_symlinks(root)
    kept = _write(root, b"kept" * 40)
    assert [e.path for e in iter_store(root)] == [str(kept)]
    assert list(iter_store(root / "missing")) == []


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
