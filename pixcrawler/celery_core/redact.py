"""Secret redaction shared by settings display, logs and task results.

Kept dependency-free so that every place that prints something an operator might paste
into a ticket can use it without importing Celery.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

MASK = "***"

# userinfo in any scheme://user:password@host form, including several ';'-joined URLs.
# Greedy up to the LAST '@' of the authority, as urllib (and so redis-py and kombu) split
# it: a password containing '@' must be masked whole, not up to its first '@'.
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#\s;]*)@")
# redis-py also takes the password as a query parameter (redis://host/0?password=...).
_QUERY_SECRET = re.compile(r"(?P<key>[?&](?:password|sentinel_password)=)[^&#\s;]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """Mask the password of every URL in *url* (sentinel lists are ';'-separated).

    The user name stays visible because it is what an operator needs to debug an ACL
    problem; the password never is.
    """

    def _mask(match: re.Match[str]) -> str:
        userinfo = match.group("userinfo")
        if not userinfo:
            return match.group(0)
        user, sep, _password = userinfo.partition(":")
        # A bare "secret@" (no colon) is how redis-py spells a password-only URL.
        masked = f"{user}:{MASK}" if sep else MASK
        return f"{match.group('scheme')}{masked}@"

    return _QUERY_SECRET.sub(rf"\g<key>{MASK}", _USERINFO.sub(_mask, url))


def strip_userinfo(url: str) -> str:
    """Remove credentials from an http(s) URL before it goes into a result or a log line."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact_url(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
