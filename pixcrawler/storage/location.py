"""``PIXCRAWLER_CELERY_STORAGE_URL`` parsed: which kind of store, and where.

Dependency-free so that the settings can validate the URL without loading any store
(or its S3 client library). Each error says what is wrong without repeating the value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

SCHEMES = ("file", "s3")

#: S3 bucket naming rules (AWS "general purpose bucket naming rules"), which MinIO,
#: SeaweedFS and Ceph RGW enforce as well: 3-63 characters of lower-case letters,
#: digits, dots and hyphens, starting and ending with a letter or digit.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class FileLocation:
    root: Path


@dataclass(frozen=True)
class S3Location:
    bucket: str
    #: Key prefix without leading or trailing slash; empty for the whole bucket.
    prefix: str

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, name: str) -> str:
        """The object key of store-relative *name*."""
        return f"{self.prefix}/{name}" if self.prefix else name


Location = FileLocation | S3Location


def bucket_problem(bucket: str) -> str | None:
    """Why *bucket* is not a valid S3 bucket name, or None."""
    if not _BUCKET.match(bucket):
        return (
            "bucket name must be 3-63 characters of lower-case letters, digits, '.' and "
            "'-', starting and ending with a letter or digit"
        )
    if ".." in bucket or ".-" in bucket or "-." in bucket:
        return "bucket name must not contain '..', '.-' or '-.'"
    if _IPV4.match(bucket):
        return "bucket name must not look like an IP address"
    if bucket.startswith(("xn--", "sthree-")) or bucket.endswith(("-s3alias", "--ol-s3")):
        return "bucket name uses a prefix or suffix S3 reserves"
    return None


def _prefix(path: str) -> str:
    if path in ("", "/"):
        return ""
    if path.startswith("//"):
        raise ValueError("prefix must not start with '/' (write s3://bucket/prefix)")
    prefix = path[1:].rstrip("/")
    for segment in prefix.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError("prefix must not contain empty, '.' or '..' segments")
        if not _PREFIX_SEGMENT.match(segment):
            raise ValueError("prefix segments may contain only letters, digits, '.', '_' and '-'")
    return prefix


def parse_storage_url(url: str) -> Location:
    """``file:///abs/dir``, ``s3://bucket`` or ``s3://bucket/prefix``; ValueError otherwise."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("is not a valid URL") from None
    if parts.scheme not in SCHEMES:
        raise ValueError(
            f"scheme {parts.scheme or '(none)'!r} is not supported; "
            "use file:///absolute/directory, s3://bucket or s3://bucket/prefix"
        )
    if parts.query or parts.fragment:
        raise ValueError("must not have a query or fragment")
    if "@" in parts.netloc:
        raise ValueError(
            "must not carry credentials; set PIXCRAWLER_CELERY_STORAGE_S3_ACCESS_KEY_ID and "
            "PIXCRAWLER_CELERY_STORAGE_S3_SECRET_ACCESS_KEY"
        )
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise ValueError("file:// URLs name a local directory: file:///var/lib/...")
        path = unquote(parts.path)
        if not path.startswith("/"):
            raise ValueError("file:// URL must name an absolute directory")
        if ".." in path.split("/"):
            raise ValueError("directory must not contain '..'")
        return FileLocation(Path(path))
    problem = bucket_problem(parts.netloc)
    if problem:
        raise ValueError(problem)
    return S3Location(parts.netloc, _prefix(parts.path))
