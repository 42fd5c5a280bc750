"""Settings for the shared Celery app, read from ``PIXCRAWLER_CELERY_*`` variables.

The same env file that systemd hands to the workers (``PIXCRAWLER_ENV_FILE``) is read
here too, so ``pixcrawler config show`` and the verification script see exactly what a
worker sees. Process environment wins over the file, as with systemd's
``Environment=`` over ``EnvironmentFile=``.

Errors are collected and raised as one :class:`SettingsError` that names every offending
variable and the reason, and never echoes a value: pydantic's own messages include the
input, which for a broker URL is a password.
"""

from __future__ import annotations

import difflib
import os
import ssl
from collections.abc import Mapping
from functools import lru_cache
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from pixcrawler.celery_core.redact import redact_url

ENV_PREFIX = "PIXCRAWLER_CELERY_"
ENV_FILE_VARIABLE = "PIXCRAWLER_ENV_FILE"
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


class CelerySettings(BaseSettings):
    """Every knob of the shared app. Field names are the variable names without prefix."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        validate_default=True,
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
        """Only explicit values: :func:`load_settings` alone reads the environment.

        Letting pydantic-settings read ``os.environ`` as well would make
        ``load_settings(environ)`` mix in the caller's own environment, and would bring
        back blank values (``VAR=`` from an env file) that ``load_settings`` drops.
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
    sentinel_password: SecretStr | None = Field(
        None, description="Password of the Sentinel nodes themselves (not of Redis)"
    )
    redis_ssl_cert_reqs: Literal["required", "optional", "none"] = Field(
        "required", description="Certificate verification for rediss:// connections"
    )
    redis_ssl_ca_certs: Path | None = Field(None, description="CA bundle for rediss://")
    redis_ssl_certfile: Path | None = Field(None, description="Client certificate (mutual TLS)")
    redis_ssl_keyfile: Path | None = Field(None, description="Client key (mutual TLS)")
    redis_socket_timeout: float = Field(
        30.0, gt=0, description="Seconds a Redis command may block before the link is dropped"
    )
    redis_connect_timeout: float = Field(10.0, gt=0, description="Seconds to connect to Redis")
    broker_connection_retry_on_startup: bool = Field(
        True, description="Keep retrying the broker while a worker starts"
    )
    broker_connection_max_retries: int | None = Field(
        None, ge=0, description="Reconnect attempts before giving up; empty means forever"
    )
    redis_client_reuse: bool = Field(
        True, description="One redis client per kombu pool, not per command (transport.py)"
    )
    visibility_timeout: int = Field(
        3600, gt=0, description="Seconds before an unacknowledged task is redelivered"
    )
    requeue_on_restart: bool = Field(
        True,
        description="A restarted worker requeues at once what its killed predecessor held",
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
    task_retry_backoff_max: int = Field(600, gt=0, description="Longest retry delay (s)")
    result_expires: int = Field(86400, gt=0, description="Seconds a task result is kept")
    enable_monitoring: bool = Field(True, description="Send task events (Flower needs them)")
    timezone: str = Field("UTC", description="Timezone for beat schedules")
    log_json: bool = Field(False, description="Emit task log records as JSON lines")

    # --- maintenance -----------------------------------------------------------------
    cleanup_interval: int = Field(3600, ge=60, description="Seconds between beat cleanups")
    storage_dir: Path = Field(
        Path("/var/lib/pixcrawler/images"), description="Where downloaded images are stored"
    )
    storage_retention_days: float = Field(30.0, gt=0, description="Days a downloaded image is kept")

    # --- crawling ----------------------------------------------------------------------
    crawl_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, description="Largest image accepted (bytes)"
    )
    crawl_connect_timeout: float = Field(10.0, gt=0, description="HTTP connect timeout (s)")
    crawl_read_timeout: float = Field(30.0, gt=0, description="HTTP read timeout (s)")
    crawl_total_timeout: float = Field(
        120.0, gt=0, description="Wall-clock limit for one download, slow servers included (s)"
    )
    crawl_max_redirects: int = Field(5, ge=0, le=20, description="Redirects followed")
    crawl_user_agent: str = Field("PixCrawler/0.1 (+image crawler)", min_length=1)
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
    validation_allowed_formats: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["JPEG", "PNG", "GIF", "WEBP"],
        description="Pillow format names accepted (comma list)",
    )

    @field_validator("broker_url", "result_backend")
    @classmethod
    def _redis_url(cls, value: SecretStr) -> SecretStr:
        return _check_redis_url(value)

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

    # --- derived -------------------------------------------------------------------------
    @property
    def broker_scheme(self) -> str:
        return urlsplit(self.broker_url.get_secret_value().split(";")[0]).scheme

    @property
    def backend_scheme(self) -> str:
        return urlsplit(self.result_backend.get_secret_value().split(";")[0]).scheme

    def ssl_options(self) -> dict[str, Any]:
        """redis-py TLS options for rediss://; certificate verification on by default."""
        reqs = {
            "required": ssl.CERT_REQUIRED,
            "optional": ssl.CERT_OPTIONAL,
            "none": ssl.CERT_NONE,
        }[self.redis_ssl_cert_reqs]
        options: dict[str, Any] = {"ssl_cert_reqs": reqs}
        for key in ("ca_certs", "certfile", "keyfile"):
            value = getattr(self, f"redis_ssl_{key}")
            if value is not None:
                options[f"ssl_{key}"] = str(value)
        return options

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
    uses_tls = "rediss" in (s.broker_scheme, s.backend_scheme)
    if uses_tls:
        for key in ("ca_certs", "certfile", "keyfile"):
            path = getattr(s, f"redis_ssl_{key}")
            if path is not None and not Path(path).is_file():
                problems.append((env_name(f"redis_ssl_{key}"), "file does not exist"))
        if (s.redis_ssl_certfile is None) != (s.redis_ssl_keyfile is None):
            problems.append(
                (
                    env_name("redis_ssl_keyfile"),
                    f"set both {env_name('redis_ssl_certfile')} and "
                    f"{env_name('redis_ssl_keyfile')}, or neither",
                )
            )
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


def _unknown_variables(sources: Mapping[str, str | None]) -> list[tuple[str, str]]:
    known = {env_name(f) for f in CelerySettings.model_fields}
    problems = []
    for key in sources:
        upper = key.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, known, n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append((upper, f"unknown setting{hint}"))
    return problems


def env_file_path(environ: Mapping[str, str] | None = None) -> Path | None:
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_FILE_VARIABLE)
    return Path(value) if value else None


def load_settings(environ: Mapping[str, str] | None = None) -> CelerySettings:
    """Build settings from the environment and ``$PIXCRAWLER_ENV_FILE``, or raise one error."""
    environ = os.environ if environ is None else environ
    problems: list[tuple[str, str]] = []
    env_file = env_file_path(environ)
    file_values: dict[str, str | None] = {}
    if env_file is not None:
        if not env_file.is_file():
            raise SettingsError([(ENV_FILE_VARIABLE, f"{env_file} does not exist")])
        try:
            file_values = dict(dotenv_values(env_file))
        except OSError as exc:
            raise SettingsError([(ENV_FILE_VARIABLE, f"{env_file}: {exc.strerror}")]) from None
    problems += _unknown_variables(file_values)
    problems += _unknown_variables(environ)
    # The process environment overrides the file, as systemd's Environment= does.
    merged = {k.upper(): v for k, v in file_values.items() if v is not None}
    merged.update({k.upper(): v for k, v in environ.items()})
    values = {
        key.removeprefix(ENV_PREFIX).lower(): value
        for key, value in merged.items()
        if key.startswith(ENV_PREFIX)
        and key.removeprefix(ENV_PREFIX).lower() in CelerySettings.model_fields
    }
    # Blank values mean "unset" for optional settings, as in a templated env file.
    values = {k: v for k, v in values.items() if v != ""}
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


@lru_cache(maxsize=1)
def get_settings() -> CelerySettings:
    """Process-wide settings, loaded once (workers, CLI and script share this)."""
    return load_settings()
