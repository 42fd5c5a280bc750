"""A crawl URL taken apart into what a request to a checked address needs.

The connection goes to the address the SSRF guard checked, not to the name (fetch.py),
so everything the name would have given the request by itself has to be carried by
hand: the ``Host`` header (with brackets around an IPv6 literal, the IDNA A-label of an
internationalised name, the port when one was written), the TLS server name, and the
``user:password@`` of the URL as HTTP Basic credentials. Pure: no lookup, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit, urlunsplit

import idna

from pixcrawler.celery_core.errors import TaskError

DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Target:
    """One request's destination; ``auth`` never appears in ``repr`` (it holds a password)."""

    scheme: str
    #: ASCII: an IDNA A-label name, or an IP literal without brackets.
    host: str
    port: int
    #: Whether the URL named the port (then the Host header carries it).
    explicit_port: bool
    #: Path and query, as sent in the request line.
    path: str
    auth: tuple[str, str] | None = None

    def __repr__(self) -> str:
        shown = "None" if self.auth is None else f"('{self.auth[0]}', '***')"
        return (
            f"Target(scheme={self.scheme!r}, host={self.host!r}, port={self.port}, "
            f"path={self.path!r}, auth={shown})"
        )

    @property
    def host_header(self) -> str:
        """``Host`` as the name would have produced it (RFC 9110 7.2, RFC 3986 3.2.2)."""
        host = bracketed(self.host)
        return f"{host}:{self.port}" if self.explicit_port else host

    @property
    def server_name(self) -> str:
        """The name the certificate must match (Python's ssl sends no SNI for an IP)."""
        return self.host

    @property
    def origin(self) -> tuple[str, str, int]:
        """Whom credentials were given for: they go to no other origin on a redirect."""
        return (self.scheme, self.host, self.port)


def bracketed(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def ascii_host(host: str) -> str:
    """*host* as DNS and the ``Host`` header need it: IDNA 2008 (UTS 46) for a non-ASCII name."""
    if host.isascii():
        return host.lower()
    try:
        return idna.encode(host, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise TaskError("invalid_url", f"host name is not a valid domain name: {exc}") from None


def parse_target(url: str) -> Target:
    """Take *url* apart, or refuse it (``unsupported_scheme``, ``invalid_url``)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:  # a bad port, or "[...]" that is not an IPv6 address
        raise TaskError("invalid_url", f"URL is not valid: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise TaskError(
            "unsupported_scheme", f"only http and https URLs are crawled, not {parts.scheme!r}"
        )
    if not parts.hostname:
        raise TaskError("invalid_url", "URL has no host")
    host = parts.hostname
    if "%" in host:  # an IPv6 zone (fe80::1%eth0) names an interface of this host
        raise TaskError("invalid_url", "URL names a network interface (IPv6 zone)")
    auth = None
    if parts.username is not None or parts.password is not None:
        auth = (unquote(parts.username or ""), unquote(parts.password or ""))
    path = urlunsplit(("", "", parts.path or "/", parts.query, ""))
    return Target(
        scheme=parts.scheme,
        host=ascii_host(host),
        port=port if port is not None else DEFAULT_PORTS[parts.scheme],
        explicit_port=port is not None,
        path=path,
        auth=auth,
    )
