"""The verification script's ``sentinel`` check: what the Sentinels say of the broker.

With a sentinel:// broker, the broker check proves that a master answers; it cannot tell
whether the set around it would survive losing that master. This asks every Sentinel of
the URL list, as the clients do (the Sentinels' own ACL user), and judges the answers:

- each Sentinel reachable or not (an unreachable one is reported, not fatal: the
  clients try the next one in the list);
- the master every answering Sentinel names, which must be one and the same, and up;
- its replicas, their link to the master and how far behind they are, in bytes of the
  replication stream and in seconds, read from the master itself (``INFO replication``
  with the app's own identity, which the role allows), since the Sentinels refresh
  their copy only every ten seconds;
- ``SENTINEL CKQUORUM``: whether enough Sentinels are up to agree that the master is
  down and to authorise a failover. A set that cannot fail over is a single point of
  failure that looks healthy until the day it matters, so this FAILs.

Kept out of :mod:`pixcrawler.verify`, which runs the checks; this module only asks and
judges. Error texts go through :func:`pixcrawler.errortext.describe_error`, and the
verifier scrubs every detail of the settings' secrets before it is shown.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from pixcrawler.celery_core.config import (
    CelerySettings,
    env_name,
    sentinel_addresses,
)
from pixcrawler.celery_core.config import (
    SentinelAddress as Address,
)
from pixcrawler.errortext import describe_error


class SentinelProblem(Exception):
    """What makes the Sentinel set unfit to fail over; the message says what and why."""


@dataclass
class Replica:
    address: Address
    #: ``ok`` or ``err`` as the Sentinel last saw the replica's link to the master.
    link: str
    flags: str
    #: Seconds the replica's link to the master has been down (0 while it is up).
    link_down_s: float
    #: Bytes of the replication stream the replica has not acknowledged; None: unknown.
    lag_bytes: int | None = None
    #: Seconds since the replica last acknowledged the stream; None: unknown.
    lag_s: int | None = None

    def describe(self) -> str:
        if self.link != "ok" or "s_down" in self.flags or "disconnected" in self.flags:
            down = f" for {self.link_down_s:.0f} s" if self.link_down_s else ""
            return f"{self.address} link DOWN{down} ({self.flags})"
        lag = "lag ?" if self.lag_bytes is None else f"lag {self.lag_bytes} B"
        if self.lag_s is not None:
            lag += f"/{self.lag_s} s"
        return f"{self.address} {lag}"


@dataclass
class SentinelAnswer:
    """What one Sentinel said, or why it said nothing (``error``)."""

    address: Address
    error: str | None = None
    master: Address | None = None
    master_flags: str = ""
    quorum: int | None = None
    sentinels: int | None = None
    replicas: list[Replica] = field(default_factory=list)
    #: The CKQUORUM reply, and whether it was OK.
    ckquorum: str = ""
    ckquorum_ok: bool = False


def reply_pairs(reply: Any) -> dict[str, str]:
    """A map reply (RESP3, redis-py 8's default) or a RESP2 ``[key, value, ...]`` list,
    as a dict of strings."""
    if isinstance(reply, dict):
        return {str(k): str(v) for k, v in reply.items()}
    items = [str(x) for x in reply]
    return dict(zip(items[::2], items[1::2], strict=True))


def _int(value: str | None, default: int = 0) -> int:
    try:
        return int(value) if value is not None else default
    except ValueError:
        return default


def _sentinel(client: redis.Redis, *args: str) -> Any:
    """``SENTINEL <args>``, unparsed: redis-py's parsers for these differ across versions."""
    return client.execute_command("SENTINEL", *args)  # type: ignore[no-untyped-call]


def ask_sentinel(
    address: Address, master_name: str, connect: Callable[[Address], redis.Redis]
) -> SentinelAnswer:
    """One Sentinel's view of *master_name*; an unreachable one yields its error."""
    answer = SentinelAnswer(address)
    client = connect(address)
    try:
        reply = _sentinel(client, "GET-MASTER-ADDR-BY-NAME", master_name)
        if not reply:
            answer.error = f"does not monitor a master named {master_name!r}"
            return answer
        answer.master = Address(str(reply[0]), int(reply[1]))
        state = reply_pairs(_sentinel(client, "MASTER", master_name))
        answer.master_flags = state.get("flags", "")
        answer.quorum = _int(state.get("quorum"))
        answer.sentinels = _int(state.get("num-other-sentinels")) + 1
        for raw in _sentinel(client, "REPLICAS", master_name):
            info = reply_pairs(raw)
            answer.replicas.append(
                Replica(
                    address=Address(info.get("ip", "?"), _int(info.get("port"))),
                    link=info.get("master-link-status", "?"),
                    flags=info.get("flags", ""),
                    link_down_s=_int(info.get("master-link-down-time")) / 1000,
                )
            )
        try:
            answer.ckquorum = str(_sentinel(client, "CKQUORUM", master_name))
            answer.ckquorum_ok = answer.ckquorum.startswith("OK")
        except redis.exceptions.ResponseError as exc:
            # NOQUORUM ... is the reason itself; anything else (an ACL refusal) is not.
            text = str(exc)
            answer.ckquorum = text if text.startswith("NOQUORUM") else describe_error(exc)
    except redis.exceptions.RedisError as exc:
        answer.error = describe_error(exc)
    finally:
        client.close()
    return answer


def replication_lag(client: redis.Redis) -> dict[Address, tuple[int, int]]:
    """Per replica the master streams to, (bytes not yet acknowledged, seconds since its
    last acknowledgement).

    From the master's ``INFO replication``: ``master_repl_offset`` minus each online
    ``slaveN:ip=..,port=..,state=online,offset=..,lag=..``. A replica missing here is
    not receiving the stream, whatever the Sentinels last saw.
    """
    info = client.info("replication")
    master_offset = _int(str(info.get("master_repl_offset", 0)))
    lags: dict[Address, tuple[int, int]] = {}
    for key, value in info.items():
        if not (key.startswith("slave") and isinstance(value, dict)):
            continue
        if value.get("state") != "online":
            continue
        address = Address(str(value.get("ip", "?")), _int(str(value.get("port"))))
        offset = _int(str(value.get("offset", 0)))
        lags[address] = (max(0, master_offset - offset), _int(str(value.get("lag", 0))))
    return lags


def judge(answers: Sequence[SentinelAnswer], lag_note: str = "") -> str:
    """The check's one-line verdict; raises :class:`SentinelProblem` for a FAIL."""
    unreachable = [a for a in answers if a.error is not None]
    answering = [a for a in answers if a.error is None]
    gone = "; ".join(f"{a.address} ({a.error})" for a in unreachable)
    if not answering:
        raise SentinelProblem(f"no Sentinel answered: {gone}")
    masters = {a.master for a in answering}
    if len(masters) > 1:
        views = "; ".join(f"{a.address} says {a.master}" for a in answering)
        raise SentinelProblem(f"the Sentinels disagree on the master: {views}")
    first = answering[0]
    down = [a for a in answering if {"s_down", "o_down"} & set(a.master_flags.split(","))]
    if down:
        views = "; ".join(f"{a.address}: {a.master_flags}" for a in down)
        raise SentinelProblem(f"master {first.master} is down ({views})")
    no_quorum = [a for a in answering if not a.ckquorum_ok]
    if no_quorum:
        why = "; ".join(f"{a.address}: {a.ckquorum}" for a in no_quorum)
        unreached = f" (unreachable: {gone})" if gone else ""
        if any(a.ckquorum.startswith("NOQUORUM") for a in no_quorum):
            raise SentinelProblem(
                f"no quorum: the Sentinels could not fail over master {first.master}: "
                f"{why}{unreached}"
            )
        raise SentinelProblem(f"cannot check the quorum (SENTINEL CKQUORUM): {why}")
    replicas = "; ".join(r.describe() for r in first.replicas)
    count = len(first.replicas)
    summary = (
        f"master {first.master}, {count} replica{'s' if count != 1 else ''}"
        f"{f' ({replicas})' if replicas else ''}, {first.sentinels} Sentinels, "
        f"quorum {first.quorum} reachable"
    )
    if unreachable:
        summary += f"; unreachable: {gone}"
    return summary + lag_note


def sentinel_connector(
    settings: CelerySettings, io_timeout: float, connect_timeout: float
) -> Callable[[Address], redis.Redis]:
    """Connections to one Sentinel as the settings' Sentinel user, bounded and without
    redis-py's retries: with one Sentinel down, the next one is asked at once."""
    kwargs = settings.sentinel_kwargs()

    def connect(address: Address) -> redis.Redis:
        return redis.Redis(
            host=address.host,
            port=address.port,
            socket_timeout=io_timeout,
            socket_connect_timeout=connect_timeout,
            retry=Retry(NoBackoff(), 0),
            decode_responses=True,
            **kwargs,
        )

    return connect


def check_sentinels(settings: CelerySettings, io_timeout: float) -> str:
    """Ask every Sentinel of the broker URL and judge the set (the ``sentinel`` check).

    Raises :class:`SentinelProblem` when the set could not keep the broker available.
    """
    url = settings.broker_url.get_secret_value()
    master_name = settings.sentinel_master_name
    if not master_name:  # config refuses this; kept for a clear message all the same
        raise SentinelProblem(f"{env_name('sentinel_master_name')} is not set")
    connect = sentinel_connector(
        settings, io_timeout, min(settings.redis_connect_timeout, io_timeout)
    )
    answers = [ask_sentinel(a, master_name, connect) for a in sentinel_addresses(url)]
    lag_note = ""
    master = next((a for a in answers if a.error is None and a.master), None)
    if master is not None and master.master is not None and master.replicas:
        client = master_client(settings, master.master, io_timeout)
        try:
            lags = replication_lag(client)
        except redis.exceptions.RedisError as exc:
            lag_note = f"; replication lag unknown: {describe_error(exc)}"
        else:
            # The master's view is live; the Sentinels refresh theirs every 10 s.
            for replica in master.replicas:
                if replica.address in lags:
                    replica.link = "ok"
                    replica.lag_bytes, replica.lag_s = lags[replica.address]
                else:
                    replica.link = "err"
        finally:
            client.close()
    return judge(answers, lag_note)


def master_client(settings: CelerySettings, master: Address, io_timeout: float) -> redis.Redis:
    """A client of the master with the broker URL's own user and password."""
    first = urlsplit(settings.broker_url.get_secret_value().split(";")[0])
    return redis.Redis(
        host=master.host,
        port=master.port,
        username=unquote(first.username) if first.username else None,
        password=unquote(first.password) if first.password else None,
        socket_timeout=io_timeout,
        socket_connect_timeout=min(settings.redis_connect_timeout, io_timeout),
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
        **settings.tls_kwargs(),
    )
