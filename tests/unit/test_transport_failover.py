"""A worker keeps our transport when kombu moves on to the next Sentinel URL.

kombu's Connection, after a connection error, switches to the next URL of
``sentinel://a;sentinel://b;...`` and parses it again, scheme included: the scheme names
the transport. Without our alias that was kombu's stock Sentinel transport from then on,
without deferred acknowledgements, owner records or the bounded pub/sub read, and the
worker stalled silently at the next outage (found in the multihost failover drill: 458
health checks left in the `default` queue, its worker alive and consuming nothing).
"""

from __future__ import annotations

from pixcrawler.celery_core import transport
from pixcrawler.celery_core.app import create_app
from pixcrawler.celery_core.config import load_settings

P = "PIXCRAWLER_CELERY_"
SENTINELS = ";".join(f"sentinel://pix:pw@s{i}.invalid:2637{i}/0" for i in range(1, 4))


def test_every_sentinel_url_a_connection_fails_over_to_keeps_our_transport() -> None:
    app = create_app(
        load_settings(
            {
                f"{P}BROKER_URL": SENTINELS,
                f"{P}RESULT_BACKEND": SENTINELS.replace("/0", "/1"),
                f"{P}SENTINEL_MASTER_NAME": "pixmaster",
            }
        )
    )
    with app.connection_for_read() as conn:
        seen = [type(conn.transport)]
        for _ in range(3):  # what ensure_connection does after each failed attempt
            conn.maybe_switch_next()
            seen.append(type(conn.transport))
            assert str(conn.hostname).startswith("s"), conn.hostname
    assert seen == [transport.SentinelTransport] * 4
