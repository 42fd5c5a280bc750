"""Deliveries a worker node took and never acknowledged, and the operator's way to requeue them.

A restarted worker requeues its own predecessor's leftovers by itself (transport.py). A
node that never comes back (a host retired, a queue moved, a renamed unit) leaves its
deliveries to ``visibility_timeout``; ``pixcrawler broker requeue NODE`` gives them back
at once. It refuses while the node still answers a ping: a live node is running those
tasks, and requeueing them would run them twice.
"""

from __future__ import annotations

from celery import Celery
from kombu import Connection

from pixcrawler.celery_core import transport


class NodeAlive(RuntimeError):
    """The node answered a ping: its deliveries are in progress, not left over."""


def unacked_by_node(app: Celery) -> dict[str, int]:
    """Unacknowledged deliveries per worker node name."""
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        return transport.owners(_channel_of(conn))


def requeue(app: Celery, node: str, *, force: bool = False, ping_timeout: float = 2.0) -> int:
    """Put *node*'s unacknowledged deliveries back at the head of their queues."""
    if not force and app.control.ping(destination=[node], timeout=ping_timeout):
        raise NodeAlive(
            f"{node} answers: its tasks are running. Stop it first, or use --force "
            "if it only answers because another process uses its name."
        )
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=1)
        return len(transport.requeue_node(_channel_of(conn), node))


def _channel_of(conn: Connection) -> transport.Channel:
    channel = conn.default_channel
    if not isinstance(channel, transport.Channel):
        raise RuntimeError(
            "the broker is not reached through pixcrawler's Redis transport "
            "(sentinel:// and unix:// brokers record no owners)"
        )
    return channel
