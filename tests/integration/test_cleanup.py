"""The maintenance tasks on a real worker really delete what they should, and only that."""

from __future__ import annotations

import json
import os
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from pixcrawler.celery_core.config import load_settings
from pixcrawler.celery_core.tasks import cleanup_expired_results, cleanup_storage, health_check
from tests.support.harness import RedisServer, Worker

TIMEOUT = 60
DAY = 86400


def _meta(done: datetime | None, naive: bool = False) -> str:
    record: dict[str, object] = {"status": "SUCCESS", "result": 1, "task_id": "x"}
    if done is not None:
        stamp = done.replace(tzinfo=None) if naive else done
        record["date_done"] = stamp.isoformat()
    return json.dumps(record)


def test_cleanup_expired_results(worker: Worker, redis_server: RedisServer) -> None:
    client = redis_server.client(1)
    expires = load_settings(worker.env).result_expires
    now = datetime.now(UTC)
    real = health_check.delay()
    real.get(timeout=TIMEOUT)

    def key() -> str:
        return f"celery-task-meta-{uuid.uuid4()}"

    old, old_naive, undated, garbage, young, with_ttl = (key() for _ in range(6))
    client.set(old, _meta(now - timedelta(seconds=expires + DAY)))
    client.set(old_naive, _meta(now - timedelta(seconds=expires + 60), naive=True))
    client.set(undated, _meta(None))
    client.set(garbage, b"\x00not json")
    young_age = 3600
    client.set(young, _meta(now - timedelta(seconds=young_age)))
    client.set(with_ttl, _meta(now - timedelta(seconds=expires + DAY)), ex=500)
    unrelated = f"pixcrawler-test-unrelated-{uuid.uuid4()}"
    client.set(unrelated, "no ttl, not a result")

    without_ttl = [k for k in client.scan_iter(match="celery-task-meta-*") if client.ttl(k) == -1]

    data = cleanup_expired_results.delay().get(timeout=TIMEOUT)["data"]

    for gone in (old, old_naive, undated, garbage):
        assert client.exists(gone) == 0, gone
    assert client.exists(young) == 1
    ttl = client.ttl(young)
    assert expires - young_age - 60 < ttl <= expires - young_age + 1
    assert 0 < client.ttl(with_ttl) <= 500  # had a TTL: left alone
    assert client.ttl(unrelated) == -1  # not a result key
    # A real result carries RESULT_EXPIRES as its TTL and is left alone.
    assert 0 < client.ttl(f"celery-task-meta-{real.id}") <= expires
    assert real.get(timeout=TIMEOUT)["task"] == "celery_core.health_check"
    # Every key without a TTL was either deleted or given one; nothing else was touched.
    assert data["deleted"] + data["expiry_set"] == len(without_ttl)
    assert data["deleted"] >= 4
    assert data["expiry_set"] >= 1
    assert data["scanned"] >= 7
    client.delete(unrelated)


def _age(path: Path, seconds: float) -> None:
    stamp = time.time() - seconds
    os.utime(path, (stamp, stamp))


def _regular_files(root: Path) -> list[Path]:
    return [
        Path(d) / name
        for d, _dirs, names in os.walk(root)
        for name in names
        if not (Path(d) / name).is_symlink()
    ]


def test_cleanup_storage(worker: Worker, storage_dir: Path, tmp_path: Path) -> None:
    retention = load_settings(worker.env).storage_retention_days * DAY
    shard = storage_dir / "ee"
    shard.mkdir(parents=True, exist_ok=True)
    nested = storage_dir / "ef" / "deeper"
    nested.mkdir(parents=True, exist_ok=True)

    def put(directory: Path, name: str, size: int, age: float) -> Path:
        path = directory / name
        path.write_bytes(b"x" * size)
        _age(path, age)
        return path

    token = uuid.uuid4().hex
    old_image = put(shard, f"{token}.png", 1000, retention + DAY)
    old_nested = put(nested, f"{token}.jpg", 300, retention + 60)
    stale_part = put(storage_dir, f".part-{token}", 70, 2 * 3600)
    fresh_image = put(shard, f"{token}-fresh.png", 10, DAY)
    fresh_part = put(storage_dir, f".part-{token}-fresh", 10, 600)
    outside = put(tmp_path, "outside.png", 5, retention + DAY)
    link = storage_dir / f"link-{token}.png"
    link.symlink_to(outside)
    os.utime(link, (0, 0), follow_symlinks=False)

    scanned_before = len(_regular_files(storage_dir))
    data = cleanup_storage.delay().get(timeout=TIMEOUT)["data"]

    for gone in (old_image, old_nested, stale_part):
        assert not gone.exists(), gone
    for kept in (fresh_image, fresh_part, outside):
        assert kept.exists(), kept
    assert link.is_symlink()  # symlinks are never followed nor removed
    assert data == {"scanned": scanned_before, "removed": 3, "bytes_freed": 1000 + 300 + 70}
    for path in (fresh_image, fresh_part, link):
        path.unlink()
