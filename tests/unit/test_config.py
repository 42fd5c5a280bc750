"""Settings: the seed's defaults, one error naming every problem, no secret ever echoed."""

from __future__ import annotations

import ssl
import traceback
from pathlib import Path

import pytest

from pixcrawler.celery_core.app import celery_config
from pixcrawler.celery_core.config import (
    ENV_FILE_VARIABLE,
    CelerySettings,
    SettingsError,
    load_settings,
)
from tests.support.paths import REPO

P = "PIXCRAWLER_CELERY_"
SECRET = "Sup3r-secret-pw"


def _problems(err: SettingsError) -> dict[str, str]:
    return dict(err.problems)


def _assert_secret_absent(err: BaseException, secret: str = SECRET) -> None:
    rendered = "".join(traceback.format_exception(err))
    for text in (str(err), repr(err), rendered):
        assert secret not in text


def test_defaults_are_the_seeds() -> None:
    s = load_settings({})
    assert s.broker_url.get_secret_value() == "redis://localhost:6379/0"
    assert s.result_backend.get_secret_value() == "redis://localhost:6379/1"
    assert s.worker_concurrency == 35
    assert s.enable_monitoring is True
    assert s.task_time_limit == 1800
    assert s.task_soft_time_limit == 1500
    # The seed's "retry with exponential backoff" and "acks_late enabled".
    assert s.task_acks_late is True


def test_defaults_reach_celery_config() -> None:
    conf = celery_config(load_settings({}))
    assert conf["broker_url"] == "redis://localhost:6379/0"
    assert conf["result_backend"] == "redis://localhost:6379/1"
    assert conf["worker_concurrency"] == 35
    assert conf["task_time_limit"] == 1800
    assert conf["task_soft_time_limit"] == 1500
    assert conf["worker_send_task_events"] is True


def test_values_from_environment_are_parsed() -> None:
    s = load_settings(
        {
            f"{P}WORKER_CONCURRENCY": "4",
            f"{P}ENABLE_MONITORING": "false",
            f"{P}CRAWL_ALLOWED_NETWORKS": "10.0.0.0/8, 192.168.1.0/24",
            f"{P}VALIDATION_ALLOWED_FORMATS": "png,jpeg",
        }
    )
    assert s.worker_concurrency == 4
    assert s.enable_monitoring is False
    assert [str(n) for n in s.crawl_allowed_networks] == ["10.0.0.0/8", "192.168.1.0/24"]
    assert s.validation_allowed_formats == ["PNG", "JPEG"]
    assert celery_config(s)["worker_send_task_events"] is False


def test_bad_environment_is_one_error_naming_every_variable() -> None:
    env = {
        f"{P}BROKER_URL": f"redis://:{SECRET}@broker.example:notaport/0",
        f"{P}RESULT_BACKEND": f"http://user:{SECRET}@backend.example/1",
        f"{P}WORKER_CONCURRENCY": "many",
        f"{P}TASK_SOFT_TIME_LIMIT": "2000",  # not below TASK_TIME_LIMIT (1800)
        f"{P}REDIS_SSL_CERT_REQS": "sometimes",
    }
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    problems = _problems(info.value)
    assert set(problems) == {
        f"{P}BROKER_URL",
        f"{P}RESULT_BACKEND",
        f"{P}WORKER_CONCURRENCY",
        f"{P}TASK_SOFT_TIME_LIMIT",
        f"{P}REDIS_SSL_CERT_REQS",
    }
    assert "not a valid URL" in problems[f"{P}BROKER_URL"]
    assert "'http'" in problems[f"{P}RESULT_BACKEND"]
    assert "integer" in problems[f"{P}WORKER_CONCURRENCY"]
    assert f"{P}TASK_TIME_LIMIT" in problems[f"{P}TASK_SOFT_TIME_LIMIT"]
    assert "required" in problems[f"{P}REDIS_SSL_CERT_REQS"]
    message = str(info.value)
    for variable in problems:
        assert variable in message
    _assert_secret_absent(info.value)
    # No value is echoed at all, not only the password.
    assert "many" not in message
    assert "sometimes" not in message


def test_secret_absent_from_every_kind_of_url_error() -> None:
    for url in (
        f"ftp://u:{SECRET}@h/0",
        f"redis://:{SECRET}@h/notanumber",
        f"redis://:{SECRET}@:6379/0",
        f"redis://:{SECRET}@h:99999999/0",
        f"sentinel://:{SECRET}@h:26379;redis://:{SECRET}@h:6379",
    ):
        with pytest.raises(SettingsError) as info:
            load_settings({f"{P}BROKER_URL": url})
        assert set(_problems(info.value)) == {f"{P}BROKER_URL"}, url
        _assert_secret_absent(info.value)


def test_cross_field_rules_are_reported_with_field_errors() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(
            {
                f"{P}WORKER_CONCURRENCY": "0",
                f"{P}VISIBILITY_TIMEOUT": "100",  # below TASK_TIME_LIMIT and BACKOFF_MAX
            }
        )
    problems = info.value.problems
    variables = [v for v, _ in problems]
    assert f"{P}WORKER_CONCURRENCY" in variables
    reasons = [r for v, r in problems if v == f"{P}VISIBILITY_TIMEOUT"]
    assert any(f"{P}TASK_TIME_LIMIT" in r for r in reasons)
    assert any(f"{P}TASK_RETRY_BACKOFF_MAX" in r for r in reasons)


def test_unknown_variable_is_reported_with_a_suggestion() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({f"{P}WORKER_CONCURENCY": "4", "UNRELATED_VARIABLE": "x"})
    problems = _problems(info.value)
    assert list(problems) == [f"{P}WORKER_CONCURENCY"]
    assert f"did you mean {P}WORKER_CONCURRENCY?" in problems[f"{P}WORKER_CONCURENCY"]


def test_unknown_variable_in_env_file_is_reported(tmp_path: Path) -> None:
    env_file = tmp_path / "pixcrawler.env"
    env_file.write_text(f"{P}BROKR_URL=redis://h:6379/0\n")
    with pytest.raises(SettingsError) as info:
        load_settings({ENV_FILE_VARIABLE: str(env_file)})
    reason = _problems(info.value)[f"{P}BROKR_URL"]
    assert f"{P}BROKER_URL" in reason


def test_env_file_is_read_and_process_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / "pixcrawler.env"
    env_file.write_text(
        "# written by the Ansible role\n"
        f"{P}BROKER_URL=redis://:{SECRET}@redis.internal:6379/0\n"
        f"{P}WORKER_CONCURRENCY=7\n"
        f"{P}WORKER_MAX_MEMORY_PER_CHILD=\n"
    )
    env = {ENV_FILE_VARIABLE: str(env_file), f"{P}WORKER_CONCURRENCY": "9"}
    s = load_settings(env)
    assert s.broker_url.get_secret_value() == f"redis://:{SECRET}@redis.internal:6379/0"
    assert s.worker_concurrency == 9
    assert s.worker_max_memory_per_child is None  # blank means unset


def test_bad_value_in_env_file_names_the_variable(tmp_path: Path) -> None:
    env_file = tmp_path / "pixcrawler.env"
    env_file.write_text(f"{P}BROKER_URL=mysql://root:{SECRET}@db/0\n")
    with pytest.raises(SettingsError) as info:
        load_settings({ENV_FILE_VARIABLE: str(env_file)})
    assert list(_problems(info.value)) == [f"{P}BROKER_URL"]
    _assert_secret_absent(info.value)


def test_missing_env_file_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.env"
    with pytest.raises(SettingsError) as info:
        load_settings({ENV_FILE_VARIABLE: str(missing)})
    problems = _problems(info.value)
    assert list(problems) == [ENV_FILE_VARIABLE]
    assert str(missing) in problems[ENV_FILE_VARIABLE]
    assert "does not exist" in problems[ENV_FILE_VARIABLE]


def test_rediss_verifies_certificates_by_default() -> None:
    s = load_settings(
        {
            f"{P}BROKER_URL": "rediss://:pw@redis.internal:6380/0",
            f"{P}RESULT_BACKEND": "rediss://:pw@redis.internal:6380/1",
        }
    )
    conf = celery_config(s)
    assert conf["broker_use_ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED
    assert conf["redis_backend_use_ssl"]["ssl_cert_reqs"] == ssl.CERT_REQUIRED


def test_rediss_options_follow_settings(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here, only its existence\n")
    s = load_settings(
        {
            f"{P}BROKER_URL": "rediss://redis.internal:6380/0",
            f"{P}REDIS_SSL_CERT_REQS": "optional",
            f"{P}REDIS_SSL_CA_CERTS": str(ca),
        }
    )
    conf = celery_config(s)
    assert conf["broker_use_ssl"] == {
        "ssl_cert_reqs": ssl.CERT_OPTIONAL,
        "ssl_check_hostname": False,  # only checked with a required certificate
        "ssl_ca_certs": str(ca),
    }
    assert "redis_backend_use_ssl" not in conf  # the backend stays plain redis://


def test_sentinel_tls_reaches_every_link(tmp_path: Path) -> None:
    """sentinel:// has no TLS scheme: SENTINEL_TLS turns it on for the master links
    (kombu, the result backend) and the Sentinels' own, with the name checked."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here, only its existence\n")
    url = "sentinel://u:p@s1:26379/0;sentinel://u:p@s2:26379/0"
    s = load_settings(
        {
            f"{P}BROKER_URL": url,
            f"{P}RESULT_BACKEND": url.replace("/0", "/1"),
            f"{P}SENTINEL_MASTER_NAME": "pixcrawler",
            f"{P}SENTINEL_TLS": "true",
            f"{P}REDIS_SSL_CA_CERTS": str(ca),
        }
    )
    want = {"ssl_cert_reqs": ssl.CERT_REQUIRED, "ssl_check_hostname": True, "ssl_ca_certs": str(ca)}
    conf = celery_config(s)
    assert conf["broker_use_ssl"] == want
    assert conf["redis_backend_use_ssl"] == want
    assert (
        conf["broker_transport_options"]["sentinel_kwargs"].items() >= {"ssl": True, **want}.items()
    )
    assert s.tls_kwargs() == {"ssl": True, **want}
    plain = load_settings({f"{P}BROKER_URL": url, f"{P}SENTINEL_MASTER_NAME": "pixcrawler"})
    assert "broker_use_ssl" not in celery_config(plain)
    assert "ssl" not in plain.sentinel_kwargs()


def test_sentinel_tls_without_sentinel_is_refused() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({f"{P}BROKER_URL": "redis://r:6379/0", f"{P}SENTINEL_TLS": "true"})
    assert f"{P}SENTINEL_TLS" in _problems(info.value)


def test_rediss_with_missing_ca_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(
            {
                f"{P}BROKER_URL": "rediss://redis.internal:6380/0",
                f"{P}REDIS_SSL_CA_CERTS": str(tmp_path / "missing.pem"),
                f"{P}REDIS_SSL_CERTFILE": str(tmp_path / "missing.crt"),
            }
        )
    problems = _problems(info.value)
    assert f"{P}REDIS_SSL_CA_CERTS" in problems
    assert f"{P}REDIS_SSL_KEYFILE" in problems  # certfile without keyfile


def test_plain_redis_has_no_ssl_options() -> None:
    conf = celery_config(load_settings({}))
    assert "broker_use_ssl" not in conf
    assert "redis_backend_use_ssl" not in conf


SENTINELS = "sentinel://:pw@s1.internal:26379;sentinel://:pw@s2.internal:26379"


def test_sentinel_requires_master_name() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({f"{P}BROKER_URL": SENTINELS})
    assert list(_problems(info.value)) == [f"{P}SENTINEL_MASTER_NAME"]


def test_sentinel_master_name_reaches_transport_options() -> None:
    s = load_settings(
        {
            f"{P}BROKER_URL": SENTINELS,
            f"{P}RESULT_BACKEND": SENTINELS.replace("26379", "26380"),
            f"{P}SENTINEL_MASTER_NAME": "pixmaster",
            f"{P}SENTINEL_PASSWORD": SECRET,
        }
    )
    conf = celery_config(s)
    for key in ("broker_transport_options", "result_backend_transport_options"):
        assert conf[key]["master_name"] == "pixmaster"
        kwargs = dict(conf[key]["sentinel_kwargs"])
        retry = kwargs.pop("retry")
        assert kwargs == {
            "password": SECRET,
            "socket_timeout": 30.0,
            "socket_connect_timeout": 10.0,
        }
        assert retry.get_retries() == 0  # the next Sentinel in the list is the retry
    assert conf["broker_url"] == SENTINELS


def test_sentinel_username_logs_into_the_sentinels_with_the_password() -> None:
    s = load_settings(
        {
            f"{P}BROKER_URL": SENTINELS,
            f"{P}RESULT_BACKEND": SENTINELS,
            f"{P}SENTINEL_MASTER_NAME": "pixmaster",
            f"{P}SENTINEL_USERNAME": "pixclient",
            f"{P}SENTINEL_PASSWORD": SECRET,
        }
    )
    conf = celery_config(s)
    for key in ("broker_transport_options", "result_backend_transport_options"):
        kwargs = conf[key]["sentinel_kwargs"]
        assert (kwargs["username"], kwargs["password"]) == ("pixclient", SECRET)
    assert s.display()[f"{P}SENTINEL_USERNAME"] == "pixclient"


def test_sentinel_username_without_password_names_the_variable() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings(
            {
                f"{P}BROKER_URL": SENTINELS,
                f"{P}SENTINEL_MASTER_NAME": "pixmaster",
                f"{P}SENTINEL_USERNAME": "pixclient",
            }
        )
    problems = dict(info.value.problems)
    assert list(problems) == [f"{P}SENTINEL_USERNAME"]
    assert f"{P}SENTINEL_PASSWORD" in problems[f"{P}SENTINEL_USERNAME"]


def test_sentinel_username_without_a_sentinel_broker_is_an_error() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({f"{P}SENTINEL_USERNAME": "pixclient", f"{P}SENTINEL_PASSWORD": SECRET})
    problems = dict(info.value.problems)
    assert list(problems) == [f"{P}SENTINEL_USERNAME"]
    assert "sentinel://" in problems[f"{P}SENTINEL_USERNAME"]
    assert SECRET not in str(info.value)


def _with_secrets() -> CelerySettings:
    return load_settings(
        {
            f"{P}BROKER_URL": f"redis://pix:{SECRET}@redis.internal:6379/0",
            f"{P}RESULT_BACKEND": f"redis://:{SECRET}@redis.internal:6379/1",
            f"{P}SENTINEL_PASSWORD": SECRET,
        }
    )


def test_repr_and_str_redact_passwords() -> None:
    s = _with_secrets()
    for text in (repr(s), str(s)):
        assert SECRET not in text
        assert "redis.internal" in text  # still useful for debugging


def test_display_redacts_passwords_and_keeps_the_rest() -> None:
    shown = _with_secrets().display()
    assert SECRET not in repr(shown)
    assert shown[f"{P}BROKER_URL"] == "redis://pix:***@redis.internal:6379/0"
    assert shown[f"{P}RESULT_BACKEND"] == "redis://:***@redis.internal:6379/1"
    assert shown[f"{P}SENTINEL_PASSWORD"] == "***"
    assert shown[f"{P}WORKER_CONCURRENCY"] == 35
    # Every setting is shown, under its variable name.
    assert len(shown) == len(CelerySettings.model_fields)


def test_json_only_serialization() -> None:
    conf = celery_config(load_settings({}))
    assert conf["accept_content"] == ["json"]
    assert conf["result_accept_content"] == ["json"]
    assert conf["task_serializer"] == "json"
    assert conf["result_serializer"] == "json"


def test_visibility_timeout_reaches_every_transport() -> None:
    s = load_settings({f"{P}VISIBILITY_TIMEOUT": "7200"})
    conf = celery_config(s)
    assert conf["broker_transport_options"]["visibility_timeout"] == 7200
    assert conf["result_backend_transport_options"]["visibility_timeout"] == 7200
    assert conf["visibility_timeout"] == 7200


def test_explicit_environ_is_not_mixed_with_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(f"{P}WORKER_CONCURRENCY", "3")
    assert load_settings({}).worker_concurrency == 35
    assert load_settings().worker_concurrency == 3


def test_blank_process_variable_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """systemd's EnvironmentFile turns ``VAR=`` into an empty variable, not an absent one."""
    monkeypatch.setenv(f"{P}WORKER_MAX_MEMORY_PER_CHILD", "")
    monkeypatch.setenv(f"{P}BROKER_CONNECTION_MAX_RETRIES", "")
    s = load_settings()
    assert s.worker_max_memory_per_child is None
    assert s.broker_connection_max_retries is None


def test_empty_port_is_refused_not_silently_defaulted() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({f"{P}BROKER_URL": f"redis://:{SECRET}@redis.internal:/0"})
    assert "empty port" in _problems(info.value)[f"{P}BROKER_URL"]
    _assert_secret_absent(info.value)


def test_redis_urls_use_the_package_transport_with_its_switches() -> None:
    on = celery_config(load_settings({}))
    assert on["broker_transport"] == "pixcrawler.celery_core.transport:Transport"
    assert on["broker_transport_options"]["pixcrawler_client_reuse"] is True
    assert on["broker_transport_options"]["pixcrawler_requeue_on_restart"] is True
    off = celery_config(
        load_settings({f"{P}REDIS_CLIENT_REUSE": "false", f"{P}REQUEUE_ON_RESTART": "false"})
    )
    assert off["broker_transport"] == "pixcrawler.celery_core.transport:Transport"
    assert off["broker_transport_options"]["pixcrawler_client_reuse"] is False
    assert off["broker_transport_options"]["pixcrawler_requeue_on_restart"] is False
    # Sentinel: kombu's Sentinel channel with the same changes.
    sentinel = celery_config(
        load_settings(
            {
                f"{P}BROKER_URL": "sentinel://s1:26379",
                f"{P}SENTINEL_MASTER_NAME": "mymaster",
            }
        )
    )
    assert sentinel["broker_transport"] == "pixcrawler.celery_core.transport:SentinelTransport"
    assert sentinel["broker_transport_options"]["pixcrawler_requeue_on_restart"] is True


#: The README's "no default" cell (an en dash).
NO_DEFAULT = "\u2013"


def _documented_value(text: str) -> object:
    """A README cell as the setting's value: `x`, numbers, `20 MiB`, `50M`, empty, a dash."""
    text = text.strip().strip("`")
    if text in (NO_DEFAULT, "-"):
        return None
    if text == "empty":
        return ""
    for suffix, factor in ((" MiB", 1 << 20), ("M", 10**6)):
        if text.endswith(suffix) and text[: -len(suffix)].isdigit():
            return int(text[: -len(suffix)]) * factor
    return text


def _actual_value(value: object) -> object:
    if hasattr(value, "get_secret_value"):
        value = value.get_secret_value()
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (list, tuple, frozenset, set)):
        return ",".join(sorted(map(str, value))) or ""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Path):
        return str(value)
    return value


def test_readme_settings_table_matches_the_defaults() -> None:
    """The README's table repeats the defaults for the reader; this keeps the copy honest."""
    readme = (REPO / "README.md").read_text()
    table = readme.split("| Variable (`PIXCRAWLER_CELERY_` +) | Default | Meaning |")[1]
    rows = [line for line in table.split("\n\n")[0].splitlines()[2:] if line.startswith("|")]
    defaults = load_settings({})
    checked = 0
    for row in rows:
        names_cell, default_cell = (cell.strip() for cell in row.split("|")[1:3])
        names = [n.strip("` ").lower() for n in names_cell.split(",")]
        values = [_documented_value(v) for v in default_cell.split(", ")]
        if len(values) == 1:
            values *= len(names)
        assert len(values) == len(names), row
        for name, documented in zip(names, values, strict=True):
            assert name in CelerySettings.model_fields, f"README names unknown setting {name}"
            if documented is None:
                continue
            actual = _actual_value(getattr(defaults, name))
            if isinstance(documented, str) and isinstance(actual, (int, float)):
                documented = type(actual)(documented)
            if name == "validation_allowed_formats":
                documented = ",".join(sorted(str(documented).split(",")))
            assert actual == documented, f"README says {name} defaults to {documented}"
            checked += 1
    assert checked >= 25, f"only {checked} defaults found in the README table"


@pytest.mark.parametrize("tolerance", [0, 60, 600])
def test_publish_and_result_retries_wait_out_the_outage_tolerance(tolerance: int) -> None:
    """Celery counts attempts, not seconds: the counts must cover the tolerance."""
    conf = celery_config(load_settings({f"{P}BROKER_OUTAGE_TOLERANCE": str(tolerance)}))
    policy = conf["task_publish_retry_policy"]
    waits = [
        min(policy["interval_start"] + n * policy["interval_step"], policy["interval_max"])
        for n in range(policy["max_retries"])
    ]
    assert sum(waits) >= tolerance
    # Full jitter: on average half the cap per attempt once the backoff reaches it.
    cap = conf["result_backend_max_sleep_between_retries_ms"] / 1000
    assert conf["result_backend_max_retries"] * cap / 2 >= tolerance
    assert conf["result_backend_always_retry"] is True
    assert conf["worker_cancel_long_running_tasks_on_connection_loss"] is False
