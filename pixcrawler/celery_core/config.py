"""Settings for the shared Celery app, read from ``PIXCRAWLER_CELERY_*`` variables.

This module is the one way settings enter the code. The same env file that systemd hands
to the workers (``PIXCRAWLER_ENV_FILE``) is read here too, so ``pixcrawler config``, the
verification script and the Ansible preflight see exactly what a worker sees. Process
environment wins over the file, as with systemd's ``Environment=`` over
``EnvironmentFile=``.

pydantic-settings does the reading (prefix, env file, blank values ignored); what is
written by hand here is what it cannot do: read a given mapping rather than
``os.environ`` (the preflight and the tests validate settings that are not this
process's), reject unknown variables with a "did you mean" hint, and collect every
problem into one :class:`SettingsError` that names each variable and never echoes a
value: pydantic's own messages include the input, which for a broker URL is a password.

Values are also checked against what the worker later builds from them (time zones,
durations Celery turns into dates, socket timeouts, Pillow format names): a value a
worker, beat or a retry would die of is refused here, before anything starts.
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import ssl
from collections.abc import Mapping
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import idna
from dotenv import dotenv_values
from pydantic import (
    AfterValidator,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    DotEnvSettingsSource,
    EnvSettingsSource,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)
from pydantic_settings.sources.utils import parse_env_vars

from pixcrawler.celery_core.redact import redact_url
from pixcrawler.storage.location import FileLocation, Location, S3Location, parse_storage_url

ENV_PREFIX = "PIXCRAWLER_CELERY_"
ENV_FILE_VARIABLE = "PIXCRAWLER_ENV_FILE"
#: Where the Ansible role installs the workers' env file.
DEFAULT_ENV_FILE = Path("/etc/pixcrawler/pixcrawler.env")
REDIS_SCHEMES = ("redis", "rediss", "sentinel", "unix")

Network = IPv4Network | IPv6Network


class SettingsError(ValueError):
    """Invalid configuration: one line per problem, each naming its variable."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        lines = [f"  {variable}: {reason}" for variable, reason in problems]
        super().__init__("invalid PixCrawler configuration:\n" + "\n".join(lines))


def env_name(field: str) -> str:
    return f"{ENV_PREFIX}{field.upper()}"


def _comma_list(value: Any) -> Any:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _check_redis_url(value: SecretStr) -> SecretStr:
    raw = value.get_secret_value()
    for part in raw.split(";"):
        try:
            parsed = urlsplit(part)
            parsed.port  # noqa: B018 - raises ValueError on a bad port
        except ValueError:
            raise ValueError("is not a valid URL") from None
        if parsed.scheme not in REDIS_SCHEMES:
            raise ValueError(
                f"scheme {parsed.scheme or '(none)'!r} is not supported; "
                f"use one of {', '.join(s + '://' for s in REDIS_SCHEMES)}"
            )
        if parsed.scheme != "unix" and not parsed.hostname:
            raise ValueError("has no host")
        if parsed.netloc.endswith(":"):
            raise ValueError("has an empty port (write host:6379 or leave the port out)")
        db = parsed.path.lstrip("/")
        if parsed.scheme in ("redis", "rediss") and db and not db.isdigit():
            raise ValueError("database must be a number, e.g. redis://host:6379/0")
    schemes = {urlsplit(p).scheme for p in raw.split(";")}
    if len(raw.split(";")) > 1 and schemes != {"sentinel"}:
        raise ValueError("only sentinel:// URLs can be joined with ';'")
    return value


class SentinelAddress(NamedTuple):
    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


DEFAULT_SENTINEL_PORT = 26379


def sentinel_addresses(url: str) -> list[SentinelAddress]:
    """Every Sentinel of a ``;``-separated sentinel:// URL list, in order, once each."""
    found: list[SentinelAddress] = []
    for part in url.split(";"):
        parsed = urlsplit(part.strip())
        if parsed.scheme == "sentinel" and parsed.hostname:
            address = SentinelAddress(parsed.hostname, parsed.port or DEFAULT_SENTINEL_PORT)
            if address not in found:
                found.append(address)
    return found


# --- what the worker builds from a value ----------------------------------------------------
# Each check below performs the conversion the worker performs later, so a value that
# parses but cannot be used fails here, naming its variable, instead of in a running
# worker. Messages never repeat the value.

#: Latest moment Celery can represent: an ETA, a beat due time or an expiry past it
#: raises OverflowError in the worker.
_LAST_DATE = datetime.max.replace(tzinfo=UTC)


def _socket_seconds(value: float) -> float:
    """redis-py and the crawler (builder/client.py) pass these to ``socket.settimeout``,
    which has a ceiling."""
    try:
        with socket.socket() as probe:
            probe.settimeout(value)
    except (OverflowError, ValueError):
        raise ValueError(
            "is too large for a socket timeout (a worker would die with OverflowError)"
        ) from None
    return value


def _date_seconds(value: float) -> float:
    """Celery adds these to the current time (countdowns, beat due times, expiries)."""
    try:
        if datetime.now(UTC) + timedelta(seconds=value) < _LAST_DATE:
            return value
    except OverflowError:
        pass
    raise ValueError(
        "is too large: Celery adds it to the current time, which must stay before the "
        "year 10000 (a worker or beat would die with OverflowError)"
    )


def _time_zone(value: str) -> str:
    """Celery resolves the name with zoneinfo; an unknown one stops beat and every ETA."""
    try:
        ZoneInfo(value)
    except (ValueError, LookupError):  # ZoneInfoNotFoundError is a KeyError
        raise ValueError(
            "is not a known time zone; use an IANA name such as UTC or Europe/Berlin"
        ) from None
    return value


def _pillow_formats(formats: list[str]) -> list[str]:
    """The validator compares Pillow's own format names; anything else never matches."""
    from PIL import Image  # imported here: only settings with this list pay for Pillow

    Image.init()
    known = set(Image.ID)
    unknown = [name for name in formats if name not in known]
    if unknown:
        hints = []
        for name in unknown:
            close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
            hints.append(f"{name} (did you mean {close[0]}?)" if close else name)
        raise ValueError(
            f"Pillow knows no format {', '.join(hints)}; use Pillow's names, e.g. JPEG,PNG,GIF,WEBP"
        )
    return formats


def _ip_address(value: str) -> str:
    """An address to bind to; a host name would resolve to who knows which interface."""
    try:
        ip_address(value)
    except ValueError:
        raise ValueError("is not an IP address (e.g. 127.0.0.1, 10.0.0.5 or 0.0.0.0)") from None
    return value


#: RFC 9110 5.6.2 ``tchar``: what a product token and its version may hold.
_TCHARS = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
#: The contact the default User-Agent names: the project's own page.
DEFAULT_CONTACT_URL = "https://github.com/pixcrawler/pixcrawler-deploy"


def _product(value: str) -> str:
    """``Name/version``: the comment part is the crawler's own (the contact URL)."""
    if not re.fullmatch(rf"{_TCHARS}(/{_TCHARS})?", value):
        raise ValueError(
            "must be a product token with an optional version, e.g. PixCrawler/0.1 "
            "(letters, digits and !#$%&'*+.^_`|~- only; the contact URL has its own setting)"
        )
    return value


def _contact_url(value: str) -> str:
    """A site owner reads it in their logs: an absolute https://, http:// or mailto: URL."""
    parsed = urlsplit(value)
    ok = (parsed.scheme in ("http", "https") and bool(parsed.hostname)) or (
        parsed.scheme == "mailto" and "@" in parsed.path
    )
    if not ok or any(c in value for c in ' ()"\r\n\t'):
        raise ValueError(
            "must be an https://, http:// or mailto: URL without spaces or parentheses, "
            "where a site owner can reach the crawl's operator"
        )
    if parsed.username is not None or parsed.password is not None:
        raise ValueError("must not carry credentials: every site crawled receives it")
    return value


def _exempt_host(item: Any) -> Any:
    """A host name (IDNA-encoded, lower case) or an IP literal, as crawl URLs name them."""
    if not isinstance(item, str):
        return item
    host = item.strip().lower().removeprefix("[").removesuffix("]")
    try:
        return str(ip_address(host))
    except ValueError:
        pass
    try:
        ascii_name = host if host.isascii() else idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError:
        ascii_name = ""
    labels = ascii_name.rstrip(".").split(".")
    if not ascii_name or not all(
        re.fullmatch(r"[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?", x) for x in labels
    ):
        raise ValueError(
            f"{item!r} is not a host name or IP address (write hosts only: no scheme, port or path)"
        )
    return ascii_name.rstrip(".")


SocketSeconds = Annotated[float, AfterValidator(_socket_seconds)]
DateSeconds = Annotated[int, AfterValidator(_date_seconds)]


def _check_endpoint(value: str) -> None:
    """An http(s) URL of the object store itself; credentials go in their own settings."""
    try:
        parsed = urlsplit(value)
        parsed.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parsed.scheme not in ("http", "https"):
        raise ValueError(
            f"scheme {parsed.scheme or '(none)'!r} is not supported; use http:// or https://"
        )
    if not parsed.hostname:
        raise ValueError("has no host")
    if parsed.username is not None or parsed.password is not None:
        raise ValueError(
            f"must not carry credentials; set {env_name('storage_s3_access_key_id')} and "
            f"{env_name('storage_s3_secret_access_key')}"
        )
    if parsed.path not in ("", "/") or parsed.query or parsed.fragment:
        raise ValueError("must be scheme://host[:port] only; the bucket goes in STORAGE_URL")


class _EnvironSource(EnvSettingsSource):
    """pydantic-settings' environment source, over a given mapping instead of os.environ.

    Hand-written because ``EnvSettingsSource`` only reads ``os.environ``, and the Ansible
    preflight and the tests validate environments that are not this process's
    (tests/unit/test_config.py: the explicit environment is not mixed with the process's).
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


class CelerySettings(BaseSettings):
    """Every knob of the shared app. Field names are the variable names without prefix."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
        # Blank means unset (``VAR=`` in a templated env file or from systemd).
        env_ignore_empty=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only explicit values; :func:`load_settings` composes the environment sources.

        It chooses the environment (a given mapping, or this process's) and the env
        file per call, which a class-level source list cannot; left to pydantic-settings,
        ``CelerySettings()`` would also read this process's ``os.environ`` into a load
        that was asked to validate another environment.
        """
        return (init_settings,)

    # --- connections -------------------------------------------------------------
    broker_url: SecretStr = Field(
        SecretStr("redis://localhost:6379/0"), description="Message broker URL (Redis)"
    )
    result_backend: SecretStr = Field(
        SecretStr("redis://localhost:6379/1"), description="Result backend URL (Redis)"
    )
    sentinel_master_name: str | None = Field(
        None, description="Sentinel master name; required with sentinel:// URLs"
    )
    sentinel_username: str | None = Field(
        None,
        description="ACL user on the Sentinel nodes themselves (not on Redis); needs "
        "SENTINEL_PASSWORD",
    )
    sentinel_password: SecretStr | None = Field(
        None, description="Password of the Sentinel nodes themselves (not of Redis)"
    )
    sentinel_tls: bool = Field(
        False,
        description="Reach the Sentinels and the Redis nodes they name over TLS (the REDIS_SSL_* "
        "options apply); sentinel:// URLs have no TLS scheme of their own",
    )
    redis_ssl_cert_reqs: Literal["required", "optional", "none"] = Field(
        "required",
        description="Certificate verification for TLS connections to Redis and the Sentinels",
    )
    redis_ssl_ca_certs: Path | None = Field(None, description="CA bundle for rediss://")
    redis_ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS)")
    redis_ssl_keyfile: Path | None = Field(None, description="Client key (mutual TLS)")
    redis_socket_timeout: SocketSeconds = Field(
        30.0, gt=0, description="Seconds a Redis command may block before the link is dropped"
    )
    redis_connect_timeout: SocketSeconds = Field(
        10.0, gt=0, description="Seconds to connect to Redis"
    )
    broker_connection_retry_on_startup: bool = Field(
        True, description="Keep retrying the broker while a worker starts"
    )
    broker_connection_max_retries: int | None = Field(
        None, ge=0, description="Reconnect attempts before giving up; empty means forever"
    )
    redis_client_reuse: bool = Field(
        True, description="One redis client per kombu pool, not per command (transport.py)"
    )
    visibility_timeout: DateSeconds = Field(
        3600, gt=0, description="Seconds before an unacknowledged task is redelivered"
    )
    requeue_on_restart: bool = Field(
        True,
        description="A restarted worker requeues at once what its killed predecessor held",
    )
    broker_outage_tolerance: int = Field(
        60,
        ge=0,
        le=3600,
        description=(
            "Seconds a finished task keeps retrying its writes to Redis (the chain's next"
            " step, its retry, its result) before it is recorded as failed"
        ),
    )

    # --- workers -------------------------------------------------------------------
    worker_concurrency: int = Field(35, ge=1, le=1000, description="Worker processes/threads")
    worker_prefetch_multiplier: int = Field(
        1, ge=1, description="Messages reserved per process beyond the one running"
    )
    worker_max_tasks_per_child: int | None = Field(
        1000, ge=1, description="Recycle a pool process after this many tasks"
    )
    worker_max_memory_per_child: int | None = Field(
        None, ge=1024, description="Recycle a pool process above this resident size (KiB)"
    )
    task_acks_late: bool = Field(True, description="Acknowledge after the task ran, not before")
    task_reject_on_worker_lost: bool = Field(
        True, description="Requeue a task whose pool process died"
    )
    task_track_started: bool = Field(
        False, description="Record STARTED in the result backend (one more write per task)"
    )
    task_time_limit: int = Field(1800, gt=0, description="Hard time limit per task (s)")
    task_soft_time_limit: int = Field(1500, gt=0, description="Soft time limit per task (s)")
    task_max_retries: int = Field(3, ge=0, description="Retries for transient errors")
    task_retry_backoff: float = Field(2.0, gt=0, description="First retry delay (s), doubling")
    task_retry_backoff_max: DateSeconds = Field(600, gt=0, description="Longest retry delay (s)")
    result_expires: DateSeconds = Field(86400, gt=0, description="Seconds a task result is kept")
    enable_monitoring: bool = Field(True, description="Send task events (Flower needs them)")
    timezone: Annotated[str, AfterValidator(_time_zone)] = Field(
        "UTC", description="Timezone for beat schedules"
    )
    log_json: bool = Field(False, description="Emit task log records as JSON lines")

    # --- maintenance -----------------------------------------------------------------
    cleanup_interval: DateSeconds = Field(3600, ge=60, description="Seconds between beat cleanups")
    storage_dir: Path = Field(
        Path("/var/lib/pixcrawler/images"), description="Where downloaded images are stored"
    )
    storage_retention_days: float = Field(
        30.0, gt=0, allow_inf_nan=False, description="Days a downloaded image is kept"
    )
    storage_url: str = Field(
        "",
        description="Image store: file:///dir, s3://bucket or s3://bucket/prefix; "
        "empty means file:// + STORAGE_DIR",
    )
    storage_s3_endpoint_url: str = Field(
        "", description="S3 endpoint, e.g. http://10.0.0.5:8333; empty means AWS"
    )
    storage_s3_region: str = Field(
        "us-east-1", min_length=1, description="Region the requests are signed for"
    )
    storage_s3_access_key_id: str | None = Field(
        None, description="Access key of the app's S3 identity; required with s3://"
    )
    storage_s3_secret_access_key: SecretStr | None = Field(
        None, description="Secret key of the app's S3 identity; required with s3://"
    )
    storage_s3_ca_bundle: Path | None = Field(
        None, description="CA bundle for an https:// endpoint (empty: the system's)"
    )
    storage_s3_addressing_style: Literal["path", "virtual"] = Field(
        "path", description="path: endpoint/bucket/key; virtual: bucket.endpoint/key"
    )
    storage_s3_connect_timeout: SocketSeconds = Field(
        10.0, gt=0, description="Seconds to connect to the object store"
    )
    storage_s3_read_timeout: SocketSeconds = Field(
        30.0, gt=0, description="Seconds an object store request may wait for more data"
    )
    storage_s3_request_timeout: SocketSeconds = Field(
        120.0, gt=0, description="Wall-clock limit for one object store request, body included"
    )
    storage_s3_max_attempts: int = Field(
        3, ge=1, le=10, description="Attempts per S3 request on throttling, 5xx, network errors"
    )

    # --- crawling ----------------------------------------------------------------------
    crawl_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest image accepted (bytes)"
    )
    crawl_connect_timeout: SocketSeconds = Field(10.0, gt=0, description="HTTP connect timeout (s)")
    crawl_read_timeout: SocketSeconds = Field(30.0, gt=0, description="HTTP read timeout (s)")
    crawl_total_timeout: SocketSeconds = Field(
        120.0, gt=0, description="Wall-clock limit for one download, slow servers included (s)"
    )
    crawl_max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed")
    # A dataset build sends a few tasks of 100 URLs: 6 of them at 8 each kept only 48
    # downloads in flight (480 images/s at 100 ms per image), whatever the CPU allowed.
    crawl_batch_concurrency: int = Field(
        16, ge=1, le=64, description="Downloads one crawl task runs at once (per task)"
    )
    crawl_retry_after_max: DateSeconds = Field(
        300,
        gt=0,
        description="Longest Retry-After (s) of a 429/503 a retry waits for "
        "(TASK_RETRY_BACKOFF_MAX caps it too)",
    )
    crawl_user_agent: Annotated[str, AfterValidator(_product)] = Field(
        "PixCrawler/0.1",
        description="Product token and version the crawler names itself by; robots.txt "
        "groups are matched against the token",
    )
    crawl_contact_url: Annotated[str, AfterValidator(_contact_url)] = Field(
        DEFAULT_CONTACT_URL,
        description="Where a site owner learns about the crawl and reaches its operator "
        "(https:// or mailto:); sent in the User-Agent",
    )
    crawl_obey_robots: bool = Field(
        True, description="Read each site's robots.txt and skip what it disallows"
    )
    crawl_robots_cache_ttl: int = Field(
        86400,
        ge=60,
        le=86400,
        description="Seconds a site's robots.txt is kept in Redis (RFC 9309: at most 24 h)",
    )
    crawl_site_limits: bool = Field(
        True, description="Limit downloads in flight and their pace per site, cluster-wide"
    )
    crawl_site_max_in_flight: int = Field(
        4, ge=1, le=1000, description="Downloads from one site (host) at once, across all workers"
    )
    # 4 at once answered in 0.1 s each is 40 requests/s: the delay binds only for a site
    # that answers faster than that (a CDN), where in-flight alone would let a host send
    # hundreds per second. A site's robots.txt Crawl-delay slows its own pace further.
    crawl_site_min_delay: float = Field(
        0.025,
        ge=0,
        le=600,
        allow_inf_nan=False,
        description="Least seconds between the starts of two requests to one site",
    )
    crawl_robots_delay_max: float = Field(
        10.0,
        ge=0,
        le=600,
        allow_inf_nan=False,
        description="Cap on a robots.txt Crawl-delay honoured as the site's least delay (s)",
    )
    crawl_site_wait_max: float = Field(
        10.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description="Seconds a crawl task waits only on busy sites before it requeues "
        "the URLs it has not started",
    )
    crawl_exempt_hosts: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Hosts exempt from robots.txt and per-site limits (comma list): "
        "sources the operator owns",
    )
    crawl_allowed_networks: Annotated[list[Network], NoDecode] = Field(
        default_factory=list,
        description="CIDRs exempt from the private/loopback/metadata block (comma list)",
    )

    # --- validation -----------------------------------------------------------------------
    validation_min_width: int = Field(32, ge=1, description="Smallest accepted width (px)")
    validation_min_height: int = Field(32, ge=1, description="Smallest accepted height (px)")
    validation_max_pixels: int = Field(
        50_000_000, ge=1, description="Decompression-bomb guard (width x height)"
    )
    validation_allowed_formats: Annotated[list[str], NoDecode, AfterValidator(_pillow_formats)] = (
        Field(
            default_factory=lambda: ["JPEG", "PNG", "GIF", "WEBP"],
            description="Pillow format names accepted (comma list)",
        )
    )

    # --- exporter (``pixcrawler exporter``) ------------------------------------------------
    exporter_address: Annotated[str, AfterValidator(_ip_address)] = Field(
        "127.0.0.1",
        description="IP address the exporter's /metrics listens on (0.0.0.0: every one)",
    )
    exporter_port: int = Field(
        9840,
        ge=1,
        le=65535,
        description="TCP port of the exporter's /metrics (9808 is celery-exporter's)",
    )
    exporter_timeout: SocketSeconds = Field(
        3.0,
        gt=0,
        le=60,
        description="Seconds each part of a scrape may wait for Redis, a Sentinel or the store",
    )

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        return _check_redis_url(value)

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str) -> str:
        if value:
            parse_storage_url(value)
        return value

    @field_validator("storage_s3_endpoint_url")
    @classmethod
    def _endpoint(cls, value: str) -> str:
        if value:
            _check_endpoint(value)
        return value

    @field_validator("crawl_allowed_networks", mode="before")
    @classmethod
    def _networks(cls, value: Any) -> Any:
        items = _comma_list(value)
        if not isinstance(items, list):
            return items
        out = []
        for item in items:
            try:
                out.append(ip_network(item, strict=False) if isinstance(item, str) else item)
            except ValueError:
                raise ValueError(f"{item!r} is not a network (e.g. 10.0.0.0/8)") from None
        return out

    @field_validator("crawl_exempt_hosts", mode="before")
    @classmethod
    def _exempt_hosts(cls, value: Any) -> Any:
        items = _comma_list(value)
        if not isinstance(items, list):
            return items
        return [_exempt_host(item) for item in items]

    @field_validator("validation_allowed_formats", mode="before")
    @classmethod
    def _formats(cls, value: Any) -> Any:
        items = _comma_list(value)
        if isinstance(items, list):
            items = [str(i).upper() for i in items]
            if not items:
                raise ValueError("must name at least one image format")
        return items

    @model_validator(mode="after")
    def _cross_field(self) -> CelerySettings:
        problems = cross_field_problems(self)
        if problems:
            raise SettingsError(problems)
        return self

    @field_validator("storage_retention_days")
    @classmethod
    def _retention(cls, days: float) -> float:
        """Validation registers each image in Redis for the retention, in whole seconds."""
        seconds = retention_seconds(days)
        if seconds < 1:
            raise ValueError(
                "is shorter than one second: Redis refuses an expiry of 0, so every "
                "validation would fail"
            )
        _date_seconds(seconds)
        return days

    # --- derived -------------------------------------------------------------------------
    @property
    def storage_retention_seconds(self) -> int:
        """The retention as the whole seconds Redis expiries and the cleanup use."""
        return retention_seconds(self.storage_retention_days)

    @property
    def storage_location(self) -> Location:
        """Where images are stored: STORAGE_URL, else the directory STORAGE_DIR."""
        if self.storage_url:
            return parse_storage_url(self.storage_url)
        return FileLocation(self.storage_dir)

    @property
    def user_agent_header(self) -> str:
        """The User-Agent every crawl request sends: product, version and contact."""
        return f"{self.crawl_user_agent} (+{self.crawl_contact_url})"

    @property
    def site_wait_seconds(self) -> float:
        """``CRAWL_SITE_WAIT_MAX``, but at most half the soft time limit: a task must be
        able to requeue what waits, then finish, before it is stopped."""
        return min(self.crawl_site_wait_max, self.task_soft_time_limit / 2)

    @property
    def robots_token(self) -> str:
        """The product token robots.txt ``User-agent`` lines are matched against."""
        return self.crawl_user_agent.split("/", 1)[0]

    @property
    def broker_scheme(self) -> str:
        return urlsplit(self.broker_url.get_secret_value().split(";")[0]).scheme

    @property
    def backend_scheme(self) -> str:
        return urlsplit(self.result_backend.get_secret_value().split(";")[0]).scheme

    def _tls_for(self, scheme: str) -> bool:
        return scheme == "rediss" or (scheme == "sentinel" and self.sentinel_tls)

    @property
    def broker_tls(self) -> bool:
        """Whether the broker link is TLS: rediss://, or sentinel:// with SENTINEL_TLS."""
        return self._tls_for(self.broker_scheme)

    @property
    def backend_tls(self) -> bool:
        """Whether the result backend's link is TLS (as :attr:`broker_tls`)."""
        return self._tls_for(self.backend_scheme)

    def ssl_options(self) -> dict[str, Any]:
        """redis-py TLS options (kombu's ``broker_use_ssl``, Celery's
        ``redis_backend_use_ssl``): verification of the certificate and of the name in it
        on by default, so a certificate for another host is refused like an unknown CA."""
        reqs = {
            "required": ssl.CERT_REQUIRED,
            "optional": ssl.CERT_OPTIONAL,
            "none": ssl.CERT_NONE,
        }[self.redis_ssl_cert_reqs]
        options: dict[str, Any] = {
            "ssl_cert_reqs": reqs,
            "ssl_check_hostname": reqs == ssl.CERT_REQUIRED,
        }
        for key in ("ca_certs", "certfile", "keyfile"):
            value = getattr(self, f"redis_ssl_{key}")
            if value is not None:
                options[f"ssl_{key}"] = str(value)
        return options

    def tls_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of a plain ``redis.Redis`` reaching the broker's Redis (or a
        Sentinel): TLS and its options when the settings say TLS, nothing otherwise."""
        return {"ssl": True, **self.ssl_options()} if self.broker_tls else {}

    def sentinel_kwargs(self) -> dict[str, Any]:
        """redis-py keyword arguments that reach and log into the Sentinels themselves.

        The user and password in a sentinel:// URL are the Redis master's; the Sentinels
        have ACL users of their own. One method so that the workers' transport, the
        result backend, Flower's broker view, the exporter and the verification script
        connect alike (TLS included, with SENTINEL_TLS).
        """
        kwargs: dict[str, Any] = {}
        if self.sentinel_username is not None:
            kwargs["username"] = self.sentinel_username
        if self.sentinel_password is not None:
            kwargs["password"] = self.sentinel_password.get_secret_value()
        if self.sentinel_tls:
            kwargs.update(self.tls_kwargs())
        return kwargs

    def display(self) -> dict[str, Any]:
        """Effective settings keyed by variable name, secrets redacted, for humans."""
        out: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                secret = value.get_secret_value()
                value = redact_url(secret) if name in URL_FIELDS else "***"
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, list):
                value = ",".join(str(v) for v in value)
            out[env_name(name)] = value
        return out

    def __repr_args__(self) -> Any:  # repr() must not leak URLs with passwords
        for key, value in self.display().items():
            yield key.removeprefix(ENV_PREFIX).lower(), value


URL_FIELDS = frozenset({"broker_url", "result_backend"})


def retention_seconds(days: float) -> int:
    return int(days * 86400)


def cross_field_problems(s: CelerySettings) -> list[tuple[str, str]]:
    """Rules that involve several settings; each problem names the variable to change."""
    problems: list[tuple[str, str]] = []
    if s.task_soft_time_limit >= s.task_time_limit:
        problems.append(
            (
                env_name("task_soft_time_limit"),
                f"must be lower than {env_name('task_time_limit')} ({s.task_time_limit}) "
                "so the task can clean up before it is killed",
            )
        )
    if s.visibility_timeout <= s.task_time_limit:
        problems.append(
            (
                env_name("visibility_timeout"),
                f"must exceed {env_name('task_time_limit')} ({s.task_time_limit}); otherwise "
                "a running task is redelivered and runs twice",
            )
        )
    if s.visibility_timeout <= s.task_retry_backoff_max:
        problems.append(
            (
                env_name("visibility_timeout"),
                f"must exceed {env_name('task_retry_backoff_max')} "
                f"({s.task_retry_backoff_max}); a delayed retry would be redelivered early",
            )
        )
    if s.task_retry_backoff > s.task_retry_backoff_max:
        problems.append(
            (
                env_name("task_retry_backoff"),
                f"must not exceed {env_name('task_retry_backoff_max')}",
            )
        )
    uses_sentinel = "sentinel" in (s.broker_scheme, s.backend_scheme)
    if uses_sentinel and not s.sentinel_master_name:
        problems.append((env_name("sentinel_master_name"), "is required with sentinel:// URLs"))
    if s.sentinel_username is not None:
        # A Sentinel ACL user needs its password; with no sentinel:// URL the user would
        # be silently unused, which hides a half-done switch to (or from) Sentinel.
        if s.sentinel_password is None:
            problems.append(
                (
                    env_name("sentinel_username"),
                    f"needs {env_name('sentinel_password')}: the Sentinels authenticate "
                    "the user with it",
                )
            )
        if not uses_sentinel:
            problems.append(
                (
                    env_name("sentinel_username"),
                    "is only used with sentinel:// URLs; set "
                    f"{env_name('broker_url')} to sentinel://... or remove it",
                )
            )
    if s.sentinel_tls and not uses_sentinel:
        problems.append(
            (
                env_name("sentinel_tls"),
                "is only used with sentinel:// URLs; for one Redis over TLS use rediss://",
            )
        )
    if s.broker_tls or s.backend_tls:
        for key in ("ca_certs", "certfile", "keyfile"):
            if _missing_file(getattr(s, f"redis_ssl_{key}")):
                problems.append((env_name(f"redis_ssl_{key}"), "file does not exist"))
        if (s.redis_ssl_certfile is None) != (s.redis_ssl_keyfile is None):
            problems.append(
                (
                    env_name("redis_ssl_keyfile"),
                    f"set both {env_name('redis_ssl_certfile')} and "
                    f"{env_name('redis_ssl_keyfile')}, or neither",
                )
            )
    problems += _storage_problems(s)
    return problems


#: Whether the files the settings name (CA bundles, client certificates) must exist on
#: this machine. False only while ``pixcrawler config check --files-on-host`` runs: the
#: Ansible preflight checks on the controller the env file a host will get, and the files
#: it names are the host's, not the controller's (roles install them later in the run).
CHECK_FILES_HERE: ContextVar[bool] = ContextVar("pixcrawler_check_files_here", default=True)


def _missing_file(path: Path | str | None) -> bool:
    return path is not None and CHECK_FILES_HERE.get() and not Path(path).is_file()


def _storage_problems(s: CelerySettings) -> list[tuple[str, str]]:
    """An s3:// store needs the app's credentials; a CA bundle must exist."""
    problems: list[tuple[str, str]] = []
    if not isinstance(s.storage_location, S3Location):
        return problems
    for field in ("storage_s3_access_key_id", "storage_s3_secret_access_key"):
        if getattr(s, field) is None:
            problems.append(
                (env_name(field), f"is required with an s3:// {env_name('storage_url')}")
            )
    if _missing_file(s.storage_s3_ca_bundle):
        problems.append((env_name("storage_s3_ca_bundle"), "file does not exist"))
    return problems


def _pydantic_problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = error.get("loc") or ()
        field = str(loc[0]) if loc else ""
        # Custom validators raise ValueError("reason"); pydantic prefixes "Value error, ".
        reason = str(error.get("msg", "invalid")).removeprefix("Value error, ")
        ctx = error.get("ctx") or {}
        nested = ctx.get("error")
        if isinstance(nested, SettingsError):
            problems.extend(nested.problems)
            continue
        problems.append((env_name(field) if field else ENV_PREFIX + "*", reason))
    return problems


def _raw_problems(source: Mapping[str, str | None]) -> list[tuple[str, str]]:
    """What only the raw variables show: unknown names, and URLs given but left empty.

    An unknown name is usually a typo that would silently leave the default in force.
    An empty URL is usually a secret that did not render; ignored as blank it would
    become the default, a Redis on localhost, and workers would wait there for work.
    """
    known = {env_name(f) for f in CelerySettings.model_fields}
    blank_means_error = {env_name(f) for f in URL_FIELDS}
    problems = []
    for key, value in source.items():
        upper = key.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        if upper not in known:
            close = difflib.get_close_matches(upper, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append((upper, f"unknown setting{hint}"))
        elif upper in blank_means_error and not (value or "").strip():
            problems.append((upper, "is empty; set the URL or remove the line for the default"))
    return problems


def env_file_path(environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_FILE_VARIABLE)
    return Path(value) if value else None


def _read_env_file(env_file: Path) -> dict[str, str | None]:
    if not env_file.is_file():
        raise SettingsError([(ENV_FILE_VARIABLE, f"{env_file} does not exist")])
    try:
        return dict(dotenv_values(env_file))
    except OSError as exc:
        raise SettingsError([(ENV_FILE_VARIABLE, f"{env_file}: {exc.strerror}")]) from None


def _values(environ: Mapping[str, str], env_file: Path | None) -> dict[str, Any]:
    """Field values from pydantic-settings' sources; the process environment wins."""
    sources: list[PydanticBaseSettingsSource] = [_EnvironSource(CelerySettings, environ)]
    if env_file is not None:
        sources.append(DotEnvSettingsSource(CelerySettings, env_file=env_file))
    values: dict[str, Any] = {}
    for source in reversed(sources):  # lowest priority first, as pydantic-settings merges
        values.update(source())
    return values


def load_settings(environ: Mapping[str, str] | None = None) -> CelerySettings:
    """Build settings from the environment and ``$PIXCRAWLER_ENV_FILE``, or raise one error."""
    environ = os.environ if environ is None else environ
    env_file = env_file_path(environ)
    file_values = _read_env_file(env_file) if env_file is not None else {}
    problems = _raw_problems(file_values) + _raw_problems(environ)
    values = _values(environ, env_file)
    try:
        settings = CelerySettings.model_validate(values)
    except ValidationError as exc:
        problems += _pydantic_problems(exc)
        # Check the cross-field rules on what did parse, so one message lists everything.
        bad = {str(e["loc"][0]) for e in exc.errors() if e.get("loc")}
        try:
            CelerySettings.model_validate({k: v for k, v in values.items() if k not in bad})
        except SettingsError as cross:
            problems += cross.problems
        except ValidationError as cross_exc:
            problems += _pydantic_problems(cross_exc)
        raise SettingsError(_dedupe(problems)) from None
    except SettingsError as exc:
        raise SettingsError(_dedupe(problems + exc.problems)) from None
    if problems:
        raise SettingsError(_dedupe(problems))
    return settings


def _dedupe(problems: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return list(dict.fromkeys(problems))


# --- where an operator's command finds the settings ----------------------------------------


def resolve_env_file(
    cli_value: str | None, environ: Mapping[str, str], default: Path | None = None
) -> Path | None:
    """``--env-file``, else ``$PIXCRAWLER_ENV_FILE``, else the installed file if present.

    The order matches what a worker sees under systemd, so a check run by hand on a host
    tests the configuration the workers really use.
    """
    if cli_value:
        return Path(cli_value)
    if environ.get(ENV_FILE_VARIABLE):
        return Path(environ[ENV_FILE_VARIABLE])
    installed = DEFAULT_ENV_FILE if default is None else default
    return installed if installed.is_file() else None


def load_operator_settings(
    cli_value: str | None, default: Path | None = None
) -> tuple[CelerySettings, str]:
    """Settings plus a description of their source; raises :class:`SettingsError`."""
    environ = dict(os.environ)
    env_file = resolve_env_file(cli_value, environ, default)
    if env_file is not None:
        environ[ENV_FILE_VARIABLE] = str(env_file)
    settings = load_settings(environ)
    source = f"env file {env_file}" if env_file else "process environment"
    return settings, source
