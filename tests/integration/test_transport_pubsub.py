"""The worker's fanout subscription cannot hold its event loop forever.

redis-py 8 reads a subscription with no timeout when asked to block, which is what
kombu's ``_receive`` asks whenever its event loop reports the socket readable. A spurious
readiness (seen after a Sentinel failover that killed the master's host) then kept a
worker's main loop in ``recv`` for good. ``transport.BoundedPubSub`` bounds that read by
the socket timeout; this test calls ``_receive`` with nothing to read, against a real
redis-server, and needs it to come back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kombu import Connection

from pixcrawler.celery_core.transport import BoundedPubSub
from tests.support.harness import RedisServer

SOCKET_TIMEOUT = 1.0


@pytest.fixture
def channel(redis_server: RedisServer) -> Iterator[Any]:
    """A channel of the workers' transport, with a short socket timeout."""
    with Connection(
        redis_server.url(0),
        transport="pixcrawler.celery_core.transport:Transport",
        transport_options={"socket_timeout": SOCKET_TIMEOUT},
    ) as connection:
        yield connection.default_channel


def test_a_receive_with_nothing_to_read_comes_back(channel: Any) -> None:
    subscription = channel.subclient
    assert isinstance(subscription, BoundedPubSub)
    subscription.subscribe("pixcrawler-test-nothing-is-published-here")
    assert subscription.parse_response()[0] == b"subscribe"  # the confirmation

    outcome: list[object] = []
    reader = threading.Thread(target=lambda: outcome.append(channel._receive()), daemon=True)
    reader.start()
    # Not a speed check: an unbounded read never returns at all.
    reader.join(timeout=SOCKET_TIMEOUT * 20)
    assert not reader.is_alive(), "_receive still waits on a subscription with nothing to read"
    assert outcome == [False]


def test_a_published_message_is_still_received(channel: Any) -> None:
    subscription = channel.subclient
    subscription.subscribe("pixcrawler-test-channel")
    assert subscription.parse_response()[0] == b"subscribe"
    channel.client.publish("pixcrawler-test-channel", b"hello")
    assert subscription.parse_response() == [b"message", b"pixcrawler-test-channel", b"hello"]
