"""Masking the passwords of the settings in free text an operator will read.

:mod:`redact` masks what looks like a password in a URL; an error message from
redis-py or kombu can also quote a password without its URL around it. Knowing the
settings, this masks those too. Kept apart from :mod:`redact`, which must stay free of
the settings so that anything may import it.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.redact import MASK, redact_url


def secrets_of(settings: CelerySettings) -> list[str]:
    """Every password in the settings, as written and decoded, longest first.

    Longest first so that a password containing another one is masked whole.
    """
    found: set[str] = set()
    for url in (settings.broker_url, settings.result_backend):
        for part in url.get_secret_value().split(";"):
            try:
                parsed = urlsplit(part)
            except ValueError:
                continue
            candidates = [parsed.password or "", *parse_qs(parsed.query).get("password", [])]
            for value in candidates:
                found.update({value, unquote(value)})
    for secret in (settings.sentinel_password, settings.storage_s3_secret_access_key):
        if secret is not None:
            found.add(secret.get_secret_value())
    return sorted((s for s in found if s), key=len, reverse=True)


def scrub(text: str, secrets: Sequence[str]) -> str:
    text = redact_url(text)
    for secret in secrets:
        text = text.replace(secret, MASK)
    return text
