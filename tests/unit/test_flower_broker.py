"""Flower's broker view is built by pixcrawler.flower_broker for this app's transports.

No Redis here: building Flower's broker objects connects to nothing. That the view
answers through the second Sentinel when the first is down is proved against real
Sentinels in tests/integration/test_sentinel_ha.py.
"""

from __future__ import annotations

import pytest
from flower import views as flower_views
from flower.utils import broker as flower_broker

from pixcrawler import flower_broker as ours
from pixcrawler.celery_core.app import celery_config, create_app
from pixcrawler.celery_core.config import load_settings

P = "PIXCRAWLER_CELERY_"
SENTINELS = ";".join(f"sentinel://pix:pw@s{i}.internal:2637{i}/0" for i in range(1, 4))


def test_this_flower_builds_its_broker_view_the_way_install_assumes() -> None:
    """Fails on a Flower upgrade that moved what install() replaces."""
    assert ours.compatible(flower_views)


def test_the_app_transport_names_turn_back_into_their_schemes() -> None:
    assert ours.real_url("pixcrawler.celery_core.transport:Transport://u:p@h:6379/0") == (
        "redis://u:p@h:6379/0"
    )
    assert ours.real_url("pixcrawler.celery_core.transport:SentinelTransport://h:1/2") == (
        "sentinel://h:1/2"
    )
    assert ours.real_url("redis://h:6379/0") == "redis://h:6379/0"


def test_every_sentinel_reaches_flower_through_the_transport_options() -> None:
    settings = load_settings(
        {
            f"{P}BROKER_URL": SENTINELS,
            f"{P}SENTINEL_MASTER_NAME": "pixmaster",
            f"{P}SENTINEL_USERNAME": "pixclient",
            f"{P}SENTINEL_PASSWORD": "sentinel-secret",
        }
    )
    options = celery_config(settings)["broker_transport_options"]
    assert options[ours.SENTINELS_OPTION] == [[f"s{i}.internal", 26370 + i] for i in (1, 2, 3)]

    view = ours.broker(
        "pixcrawler.celery_core.transport:SentinelTransport://pix:pw@s1.internal:26371/0",
        broker_options=options,
        broker_use_ssl=None,
    )

    assert isinstance(view, ours.SentinelBroker)
    manager = view.redis.connection_pool.sentinel_manager
    hosts = [s.connection_pool.connection_kwargs["host"] for s in manager.sentinels]
    assert hosts == ["s1.internal", "s2.internal", "s3.internal"]
    login = manager.sentinels[0].connection_pool.connection_kwargs
    assert (login["username"], login["password"]) == ("pixclient", "sentinel-secret")


def test_a_redis_broker_gets_flowers_own_redis_view() -> None:
    view = ours.broker("pixcrawler.celery_core.transport:Transport://u:p@h:6379/0")
    assert type(view) is flower_broker.Redis


def test_flower_starting_installs_the_view(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(flower_views, "Broker", flower_broker.Broker)
    app = create_app(load_settings({}))
    # What Flower does when it starts (flower/app.py), and what sends the signal.
    app.loader.import_default_modules()
    assert flower_views.Broker is ours.broker
