"""Redis's own state, and with a sentinel:// broker what the Sentinels say of it.

A Redis with ``noeviction`` at ``maxmemory`` refuses every new task, so memory is read
against its limit; a failing append-only file (``aof_last_write_status:err``) means the
next restart loses what was queued since; the role and the connected replicas say whether
the set could fail over. The Sentinels are asked one by one, exactly as the
verification's ``sentinel`` check asks them (:func:`pixcrawler.verify_sentinel.ask_sentinel`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pixcrawler.celery_core.config import CelerySettings, sentinel_addresses
from pixcrawler.verify_sentinel import SentinelAnswer, ask_sentinel, sentinel_connector


@dataclass(frozen=True)
class RedisState:
    used_memory: int
    maxmemory: int
    aof_enabled: bool
    #: Whether the last write of the append-only file succeeded (``ok``).
    aof_last_write_ok: bool
    role: str
    connected_replicas: int


def redis_state(client: Any) -> RedisState:
    """From one ``INFO memory persistence replication`` (several sections: Redis >= 7)."""
    info: dict[str, Any] = client.info("memory", "persistence", "replication")
    return RedisState(
        used_memory=int(info.get("used_memory", 0)),
        maxmemory=int(info.get("maxmemory", 0)),
        aof_enabled=bool(int(info.get("aof_enabled", 0))),
        aof_last_write_ok=str(info.get("aof_last_write_status", "")) == "ok",
        role=str(info.get("role", "unknown")),
        connected_replicas=int(info.get("connected_slaves", 0)),
    )


def sentinel_answers(settings: CelerySettings, timeout: float) -> list[SentinelAnswer]:
    """Every Sentinel's view of the master (its error instead when it does not answer)."""
    master_name = settings.sentinel_master_name or ""
    connect = sentinel_connector(settings, timeout, timeout)

    url = settings.broker_url.get_secret_value()
    return [ask_sentinel(address, master_name, connect) for address in sentinel_addresses(url)]
