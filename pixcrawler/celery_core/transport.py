"""kombu's Redis transport with two changes: requeue on restart, and one client per pool.

**Requeue on restart.** kombu keeps a message it handed to a worker in the ``unacked``
hash until the worker acknowledges it, and gives it back to the queue only once
``visibility_timeout`` has passed (an hour here): a worker killed with ``kill -9``
strands its tasks for that long. ``visibility_timeout`` cannot simply be lowered: it
is global, and would hand long tasks still running on healthy workers to a second
worker. So, like Sidekiq Pro's reliable fetch, each delivery also records its owner
(the worker's node name, ``crawl@host1`` from the units, and this process's
incarnation) in ``unacked_owner``, in the same MULTI/EXEC as kombu's own bookkeeping,
and the ack removes it in the same MULTI/EXEC as kombu's. When a worker starts, it
puts back at the head of their queues the deliveries recorded for its node name:
systemd and supervisord run one process per node name, so those belong to its dead
predecessor. It does the same after a lost broker connection, sparing what it still
holds (tasks running, reserved, waiting for an ETA), for Celery drops its prefetched
tasks on a reconnect and they would otherwise wait out the timeout too. It never
touches another node's records; a node that never returns is still covered by
``visibility_timeout``, or by ``pixcrawler broker requeue NODE`` (cli.py).

**One client per pool.** kombu's channel calls ``_create_client()`` for every publish,
ack and event, and redis-py's constructor copies about 200 response callbacks each time
(about 100 us of CPU per command). Reusing one client per pool sends the same commands
through the same pool; measured in docs/BENCHMARKS.md (rows "ours + client reuse"). The
client is rebuilt whenever kombu replaces the pool (a reconnect), so it never outlives
its connections.

Both are transport options (``app.py``): ``pixcrawler_node`` (set by the worker at
start, see :func:`record_worker_node`), ``pixcrawler_requeue_on_restart`` and
``pixcrawler_client_reuse``.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Collection
from functools import cached_property
from typing import Any, cast

import redis
from kombu.transport import TRANSPORT_ALIASES, virtual
from kombu.transport import redis as kombu_redis
from kombu.utils.json import dumps

logger = logging.getLogger(__name__)

#: This process, in each owner record: says which process of a node took a delivery.
INCARNATION = uuid.uuid4().hex

#: The hash beside kombu's ``unacked`` and ``unacked_index``: delivery tag -> owner.
UNACKED_OWNER_KEY = "unacked_owner"

# kombu's stubs declare neither _create_client nor _remove_from_indices.
_BaseChannel: Any = kombu_redis.Channel
_BaseQoS: Any = kombu_redis.QoS


def owner_record(node: str, incarnation: str = INCARNATION) -> str:
    return json.dumps([node, incarnation])


def parse_owner(raw: bytes | str) -> tuple[str, str]:
    """(node, incarnation) of a record; an unreadable one belongs to nobody."""
    try:
        node, incarnation = json.loads(raw)
        return str(node), str(incarnation)
    except (ValueError, TypeError):
        return "", ""


#: Acknowledgements that found the broker down, by delivery tag: applied by the next
#: channel this process opens, before its sweep could requeue them.
_DEFERRED_ACKS: set[str] = set()
_DEFERRED_LOCK = threading.Lock()

#: What a lost broker link raises on the way out of redis-py.
_LINK_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


def deferred_acks() -> set[str]:
    with _DEFERRED_LOCK:
        return set(_DEFERRED_ACKS)


class QoS(_BaseQoS):  # type: ignore[misc]
    """kombu's ack emulation, plus the owner record in the same transactions, and
    acknowledgements that survive a lost broker link."""

    channel: Channel

    def append(self, message: Any, delivery_tag: Any) -> None:
        owner = self.channel.owner
        if owner is None:
            super().append(message, delivery_tag)
            return
        delivery = message.delivery_info
        raw = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        # kombu's QoS.append, with one more HSET inside its MULTI/EXEC.
        with self.pipe_or_acquire() as pipe:
            pipe.zadd(self.unacked_index_key, {delivery_tag: time.time()}).hset(
                self.unacked_key, delivery_tag, raw
            ).hset(self.channel.unacked_owner_key, delivery_tag, owner).execute()
        virtual.QoS.append(self, message, delivery_tag)

    def ack(self, delivery_tag: Any) -> None:
        """kombu's ack; a task that finished while the broker was down is acknowledged
        when it is back.

        Without this, Celery logs "Couldn't ack" and the delivery stays in ``unacked``
        until a restore puts it back in the queue: the task, finished, runs again. The
        tag is kept in this process and removed from ``unacked`` by the next channel it
        opens (``basic_consume``), before that channel's sweep looks for leftovers.
        """
        if self.channel.owner is None:
            super().ack(delivery_tag)
            return
        try:
            self._remove_from_indices(delivery_tag).execute()
        except _LINK_ERRORS as exc:
            with _DEFERRED_LOCK:
                _DEFERRED_ACKS.add(str(delivery_tag))
            logger.warning(
                "broker unreachable; acknowledgement of %s deferred until it is back (%s)",
                delivery_tag,
                type(exc).__name__,
            )
        virtual.QoS.ack(self, delivery_tag)

    def restore_unacked(self, client: Any = None) -> Any:
        """kombu's restore when a channel closes, minus the tasks this process is running.

        A channel closes on a lost broker link while its tasks keep running (the app
        does not cancel them, see app.py): restoring their deliveries would hand them to
        a second worker. They stay in ``unacked`` with their owner record and are
        acknowledged when they finish; if this process dies first, its restart requeues
        them. Deliveries it only held in reserve go back now, as kombu does.
        """
        if self.channel.owner is None:
            return super().restore_unacked(client)
        running = running_tags()
        reserved = [tag for tag in self._delivered if str(tag) not in running]
        try:
            with self.channel.conn_or_acquire(client) as conn:
                for tag in reserved:
                    self.restore_by_tag(tag, client=conn)
        except _LINK_ERRORS as exc:
            # They stay in ``unacked``: the next channel's sweep requeues them.
            logger.warning(
                "broker unreachable; %d reserved deliveries wait for the reconnect (%s)",
                len(reserved),
                type(exc).__name__,
            )
        self._delivered.clear()
        return None

    def _remove_from_indices(self, delivery_tag: Any, pipe: Any = None) -> Any:
        # Every way out of ``unacked`` (ack, reject, kombu's restore, ours) passes here,
        # on whichever worker does it, so the owner record never outlives the delivery.
        pipe = super()._remove_from_indices(delivery_tag, pipe)
        if self.channel.requeue_on_restart:
            pipe = pipe.hdel(self.channel.unacked_owner_key, delivery_tag)
        return pipe


class BoundedPubSub(redis.client.PubSub):
    """A subscription whose blocking reads give up after ``read_limit`` seconds.

    Since redis-py 8, ``PubSub.parse_response()`` (block=True, what kombu's ``_receive``
    calls) reads with no timeout at all, overriding the socket's. kombu calls it when
    its event loop reports the subscription's socket readable; after a failover drill
    killed the master's host, a worker's main loop sat in that read for as long as we
    watched (13 minutes, nothing to read), every queue's backlog growing, the worker
    alive to systemd. Bounded, a read that finds nothing returns None and the loop goes
    on; a dead connection raises, and kombu reconnects.
    """

    read_limit: float | None = None

    def parse_response(self, block: bool = True, timeout: float = 0) -> Any:
        read = super().parse_response
        if block and self.read_limit is not None:
            return read(block=False, timeout=self.read_limit)  # type: ignore[no-untyped-call]
        return read(block=block, timeout=timeout)  # type: ignore[no-untyped-call]


class Channel(_BaseChannel):  # type: ignore[misc]
    QoS = QoS
    from_transport_options = (
        *_BaseChannel.from_transport_options,
        "unacked_owner_key",
        "pixcrawler_node",
        "pixcrawler_requeue_on_restart",
        "pixcrawler_client_reuse",
    )

    unacked_owner_key = UNACKED_OWNER_KEY
    pixcrawler_node: str | None = None
    pixcrawler_requeue_on_restart = True
    pixcrawler_client_reuse = True

    @property
    def requeue_on_restart(self) -> bool:
        return bool(self.pixcrawler_requeue_on_restart)

    @cached_property
    def owner(self) -> str | None:
        """The record this channel's deliveries get, or None outside a worker.

        Built once: node and switch come from the transport options at the channel's
        creation, and every delivery writes the same record."""
        if self.pixcrawler_node and self.requeue_on_restart:
            return owner_record(self.pixcrawler_node)
        return None

    def basic_consume(self, queue: str, no_ack: bool, *args: Any, **kwargs: Any) -> Any:
        node = self.pixcrawler_node
        if node and self.requeue_on_restart and not no_ack and not self.__dict__.get("_swept"):
            # Once per channel, before it takes anything. A worker's first channel finds
            # what its dead predecessor held. A channel opened after a lost connection
            # finds what this process took on the old one and then dropped: Celery
            # forgets prefetched and scheduled tasks on a reconnect, and Redis was not
            # there to take them back. A broker still down raises here, and the worker's
            # reconnect loop comes back.
            self._apply_deferred_acks()
            requeue_node(self, node, spare=self._in_flight())
            self.__dict__["_swept"] = True
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _apply_deferred_acks(self) -> None:
        """Acknowledge what finished while the broker was down (QoS.ack)."""
        pending = deferred_acks()
        if not pending:
            return
        with self.qos.pipe_or_acquire() as pipe:
            for tag in pending:
                pipe = self.qos._remove_from_indices(tag, pipe)
            pipe.execute()
        with _DEFERRED_LOCK:
            _DEFERRED_ACKS.difference_update(pending)
        logger.info("acknowledged %d deliveries deferred while the broker was down", len(pending))

    def _in_flight(self) -> set[str]:
        """Delivery tags this process still holds: tasks running, reserved or waiting
        for their ETA in the worker, and whatever this channel was handed already."""
        from celery.worker import state

        # celery-types does not know scheduled_requests (Celery >= 5.5 has it).
        scheduled: Any = getattr(state, "scheduled_requests", ())
        held = [*state.reserved_requests, *scheduled]
        tags = {str(getattr(r.message, "delivery_tag", "")) for r in held}
        return tags | running_tags() | {str(tag) for tag in self.qos._delivered}

    @cached_property
    def subclient(self) -> Any:
        """kombu's fanout subscription (events, broadcast commands), its reads bounded
        by the socket timeout (BoundedPubSub)."""
        pubsub = super().subclient
        if type(pubsub) is redis.client.PubSub and self.socket_timeout:
            bounded = cast(BoundedPubSub, pubsub)
            bounded.__class__ = BoundedPubSub
            bounded.read_limit = float(self.socket_timeout)
        return pubsub

    def _create_client(self, asynchronous: bool = False) -> Any:
        if asynchronous or not self.pixcrawler_client_reuse:
            # The BRPOP/pub-sub client is already cached by kombu.
            return super()._create_client(asynchronous=asynchronous)
        pool = self.pool
        client = self.__dict__.get("_pixcrawler_client")
        if client is None or client.connection_pool is not pool:
            client = super()._create_client()
            self.__dict__["_pixcrawler_client"] = client
        return client


def running_tags() -> set[str]:
    """Delivery tags of the tasks this worker process is running now."""
    from celery.worker import state

    return {str(getattr(r.message, "delivery_tag", "")) for r in state.active_requests}


def requeue_node(channel: Channel, node: str, spare: Collection[str] = ()) -> list[str]:
    """Put *node*'s unacknowledged deliveries back at the head of their queues.

    Deliveries in *spare* (still held by the calling process) stay. Returns the tags put
    back. A delivery kombu already restored (visibility timeout) has no message left and
    only loses its stale record.
    """
    tags: list[str] = []
    with channel.conn_or_acquire() as client:
        for tag, raw in client.hscan_iter(channel.unacked_owner_key):
            text = tag.decode() if isinstance(tag, bytes) else str(tag)
            if parse_owner(raw)[0] == node and text not in spare:
                tags.append(text)
        for text in tags:
            channel.qos.restore_by_tag(text, client)  # leftmost=False: the next BRPOP
    return tags


def owners(channel: Channel) -> dict[str, int]:
    """Unacknowledged deliveries per node name (for the operator command)."""
    counts: dict[str, int] = {}
    with channel.conn_or_acquire() as client:
        for _tag, raw in client.hscan_iter(channel.unacked_owner_key):
            node, _ = parse_owner(raw)
            counts[node] = counts.get(node, 0) + 1
    return counts


class Transport(kombu_redis.Transport):
    Channel = Channel


class SentinelChannel(Channel, kombu_redis.SentinelChannel):  # type: ignore[misc]
    """The same changes on kombu's Sentinel channel, which finds the master through the
    Sentinels: the owner records and deferred acks live in the master's dataset, and
    follow it through a failover like kombu's own ``unacked`` hash."""

    from_transport_options = (
        *kombu_redis.SentinelChannel.from_transport_options,
        *Channel.from_transport_options[len(_BaseChannel.from_transport_options) :],
    )


class SentinelTransport(kombu_redis.SentinelTransport):
    Channel = SentinelChannel


# kombu's Connection fails over to the next URL of "sentinel://a;sentinel://b;..." by
# parsing it again, and takes the transport from its scheme: without this, a worker went on
# with kombu's stock Sentinel transport after its first failover (no deferred acks, no
# owner records, an unbounded pub/sub read) and could stall at the next one, alive and
# consuming nothing. Every sentinel:// URL in a process that uses the app is ours.
TRANSPORT_ALIASES["sentinel"] = f"{__name__}:SentinelTransport"
