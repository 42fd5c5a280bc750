"""The image store in an S3 bucket (``s3://bucket[/prefix]``): one store for every host.

Crawl and validation may run on different hosts with nothing shared but the bucket.
References are ``s3://bucket/prefix/ab/ab….ext``.

Writes are all-or-nothing and stored once. The key is the SHA-256 of the content, known
only when the body has ended, so the body is spooled while it is hashed (in memory up to
:data:`SPOOL_BYTES`, then in a temporary file: memory stays bounded whatever the image
size). Then a HEAD asks whether the key exists: if it does, nothing is uploaded (the
same image from a retry or from another host is stored once); otherwise one PUT, or a
multipart upload above :data:`MULTIPART_THRESHOLD`. S3 makes an object visible only when
its PUT or its multipart upload completes, so a killed worker leaves no half object;
a failed multipart upload is aborted by the client library, and one whose worker was
killed stays invisible until the bucket's own housekeeping removes it (the client
library cannot list them; README "Image storage").

The client is obstore (Rust, ``object_store``), chosen by measurement (README "Image
storage"); it is not fork-safe, which storage/factory.py takes care of.

Errors are translated into the task errors BaseTask understands: unreachable, timeouts,
throttling and 5xx are :class:`TransientError` (the task retries); credentials, a
missing bucket, a refused permission, a skewed clock or an untrusted certificate are
:class:`TaskError` naming the setting to fix, and never quoting a secret.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import obstore
from obstore.exceptions import BaseError, NotFoundError, UnauthenticatedError
from obstore.store import S3Store as ObstoreS3

from pixcrawler.celery_core.config import env_name
from pixcrawler.celery_core.errors import TaskError, TransientError
from pixcrawler.celery_core.redact import redact_url
from pixcrawler.storage.base import (
    TEMP_PREFIX,
    ImageStore,
    ObjectMissing,
    ObjectTooLarge,
    OutsideStore,
    StoredObject,
    StoreEntry,
    StoreWriter,
    image_key,
    is_image_key,
)
from pixcrawler.storage.location import S3Location

if TYPE_CHECKING:
    from obstore.store import ClientConfig, RetryConfig, S3Config

    from pixcrawler.celery_core.config import CelerySettings

#: Bodies up to this size are spooled in memory, larger ones in a temporary file.
SPOOL_BYTES = 1024 * 1024
#: Bodies above this size are uploaded in parts (one PUT below).
MULTIPART_THRESHOLD = 8 * 1024 * 1024
#: Part size of multipart uploads (S3's minimum for all but the last part is 5 MiB).
PART_SIZE = 8 * 1024 * 1024
#: Parts uploaded at once; two keep a worker's memory and connections modest.
PART_CONCURRENCY = 2
#: Largest chunk read at a time when an object is read with a bound.
READ_CHUNK = 1024 * 1024

_CODE = re.compile(r"<Code>([^<]{1,64})</Code>")
_STATUS = re.compile(r"status code: (\d{3})")
#: S3 error codes that mean "try again later".
TRANSIENT_CODES = frozenset(
    {
        "SlowDown",
        "ServiceUnavailable",
        "InternalError",
        "RequestTimeout",
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequests",
    }
)
#: What the library raises for an absent object (NotFound surfaces as FileNotFoundError).
_MISSING = (NotFoundError, FileNotFoundError)
#: What it raises for any other failed request (some kinds surface as built-in OSErrors).
_FAILED = (BaseError, OSError)
_TLS_MARKERS = ("certificate", "UnknownIssuer", "tls handshake", "InvalidCertificate")


@dataclass(frozen=True)
class S3Options:
    """Everything the S3 store is built from; :meth:`S3Store.from_settings` fills it."""

    location: S3Location
    endpoint_url: str
    region: str
    access_key_id: str
    secret_access_key: str
    ca_bundle: Path | None = None
    virtual_hosted: bool = False
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    request_timeout: float = 120.0
    max_attempts: int = 3
    spool_bytes: int = SPOOL_BYTES
    multipart_threshold: int = MULTIPART_THRESHOLD
    part_size: int = PART_SIZE

    def __repr__(self) -> str:  # the secret must not reach a log through a repr
        return f"S3Options(location={self.location.url!r}, endpoint={self.endpoint!r})"

    @property
    def endpoint(self) -> str:
        return self.endpoint_url or f"AWS S3 ({self.region})"


def read_ca_bundle(path: Path) -> str:
    """The PEM text of *path*; ValueError if it holds no certificate."""
    text = path.read_text(encoding="ascii", errors="replace")
    if "-----BEGIN CERTIFICATE-----" not in text:
        raise ValueError(f"{path} holds no PEM certificate")
    return text


def _client(options: S3Options) -> ObstoreS3:
    client_options: ClientConfig = {
        "connect_timeout": timedelta(seconds=options.connect_timeout),
        "read_timeout": timedelta(seconds=options.read_timeout),
        "timeout": timedelta(seconds=options.request_timeout),
        "allow_http": options.endpoint_url.startswith("http://"),
    }
    if options.ca_bundle is not None:
        client_options["root_certificate"] = read_ca_bundle(options.ca_bundle)
    retry: RetryConfig = {
        "max_retries": options.max_attempts - 1,
        "backoff": {
            "init_backoff": timedelta(milliseconds=100),
            "max_backoff": timedelta(seconds=2),
            "base": 2,
        },
        "retry_timeout": timedelta(seconds=options.request_timeout),
    }
    config: S3Config = {
        "access_key_id": options.access_key_id,
        "secret_access_key": options.secret_access_key,
        "region": options.region,
        "virtual_hosted_style_request": options.virtual_hosted,
    }
    if options.endpoint_url:
        config["endpoint"] = options.endpoint_url
    return ObstoreS3(
        options.location.bucket, config=config, client_options=client_options, retry_config=retry
    )


class S3Writer(StoreWriter):
    """Spool and hash the body; commit uploads it under its hash unless it is there."""

    def __init__(self, store: S3Store) -> None:
        super().__init__()
        self._store = store
        self._spool = tempfile.SpooledTemporaryFile(  # noqa: SIM115 - closed by discard()
            max_size=store.options.spool_bytes, prefix=TEMP_PREFIX
        )

    def _keep(self, chunk: bytes) -> None:
        self._spool.write(chunk)

    def commit(self, extension: str) -> StoredObject:
        digest = self.digest
        key = self._store.options.location.key(image_key(digest, extension))
        ref = self._store.ref_of(key)
        if self._store.head(key) is not None:
            self.discard()
            return StoredObject(ref, digest, self.size, existed=True)
        self._spool.seek(0)
        self._store.upload(key, self._spool, self.size)
        self.discard()
        return StoredObject(ref, digest, self.size, existed=False)

    def discard(self) -> None:
        self._spool.close()


class S3Store(ImageStore):
    """Content-addressed objects under ``prefix/`` in one bucket."""

    def __init__(self, options: S3Options) -> None:
        self.options = options
        self.location = options.location.url
        self._s3 = _client(options)

    @classmethod
    def from_settings(cls, settings: CelerySettings, location: S3Location) -> S3Store:
        secret = settings.storage_s3_secret_access_key
        return cls(
            S3Options(
                location=location,
                endpoint_url=settings.storage_s3_endpoint_url,
                region=settings.storage_s3_region,
                access_key_id=settings.storage_s3_access_key_id or "",
                secret_access_key=secret.get_secret_value() if secret is not None else "",
                ca_bundle=settings.storage_s3_ca_bundle,
                virtual_hosted=settings.storage_s3_addressing_style == "virtual",
                connect_timeout=settings.storage_s3_connect_timeout,
                read_timeout=settings.storage_s3_read_timeout,
                request_timeout=settings.storage_s3_request_timeout,
                max_attempts=settings.storage_s3_max_attempts,
            )
        )

    # --- references ------------------------------------------------------------------

    def ref_of(self, key: str) -> str:
        return f"s3://{self.options.location.bucket}/{key}"

    def _key(self, ref: str) -> str:
        """The object key *ref* names, if it is an image name inside this store."""
        where = self.options.location
        shown = redact_url(ref)  # a reference from the broker may carry anything
        if ref.startswith("s3://"):
            parts = urlsplit(ref)
            if parts.query or parts.fragment or "?" in ref or "#" in ref:
                raise OutsideStore(f"{shown} is not an object reference of the image store")
            if parts.netloc != where.bucket:
                raise OutsideStore(f"{shown} is not in the image store {where.url}")
            key = parts.path[1:]
        elif "://" in ref or ref.startswith("/"):
            raise OutsideStore(f"{shown} is not in the image store {where.url}")
        else:
            key = where.key(ref)
        name = key
        if where.prefix:
            if not key.startswith(where.prefix + "/"):
                raise OutsideStore(f"{shown} is outside the image store {where.url}")
            name = key[len(where.prefix) + 1 :]
        if not is_image_key(name):
            raise OutsideStore(
                f"{shown} is not an image of the store {where.url} (ab/<sha256>.<ext>)"
            )
        return key

    def resolve(self, ref: str) -> str:
        return self.ref_of(self._key(ref))

    # --- operations ----------------------------------------------------------------------

    def writer(self) -> S3Writer:
        return S3Writer(self)

    def head(self, key: str) -> int | None:
        """The object's size, or None if there is none."""
        try:
            return int(obstore.head(self._s3, key)["size"])
        except _MISSING as exc:
            self._unless_bucket_missing(exc, "read", key)
            return None
        except _FAILED as exc:
            raise self._translate(exc, "read", key) from None

    def upload(self, key: str, body: Any, size: int) -> None:
        """One PUT, or a multipart upload above the threshold; the library aborts failures."""
        try:
            obstore.put(
                self._s3,
                key,
                body,
                use_multipart=size > self.options.multipart_threshold,
                chunk_size=self.options.part_size,
                max_concurrency=PART_CONCURRENCY,
            )
        except _FAILED as exc:
            raise self._translate(exc, "write", key) from None

    def read(self, ref: str, limit: int) -> bytes:
        key = self._key(ref)
        try:
            result = obstore.get(self._s3, key)
            size = int(result.meta["size"])
            if size > limit:
                raise ObjectTooLarge(size, limit)  # the body is dropped unread
            data = bytearray()
            for chunk in result.stream(min_chunk_size=READ_CHUNK):
                data += chunk
                if len(data) > limit:
                    raise ObjectTooLarge(len(data), limit)
        except _MISSING as exc:
            self._unless_bucket_missing(exc, "read", key)
            raise ObjectMissing(ref) from None
        except _FAILED as exc:
            raise self._translate(exc, "read", key) from None
        return bytes(data)

    def size(self, ref: str) -> int:
        found = self.head(self._key(ref))
        if found is None:
            raise ObjectMissing(ref)
        return found

    def delete(self, ref: str) -> bool:
        key = self._key(ref)
        if self.head(key) is None:
            return False
        try:
            obstore.delete(self._s3, key)
        except _FAILED as exc:
            raise self._translate(exc, "delete", key) from None
        return True

    def entries(self) -> Iterator[StoreEntry]:
        """Every object under the prefix, by LastModified (S3 has no partial objects)."""
        prefix = self.options.location.prefix
        try:
            for chunk in obstore.list(self._s3, prefix or None, chunk_size=1000):
                for meta in chunk:
                    key = meta["path"]
                    yield StoreEntry(
                        name=key[len(prefix) + 1 :] if prefix else key,
                        handle=key,
                        size=int(meta["size"]),
                        mtime=meta["last_modified"].timestamp(),
                        temporary=False,
                    )
        except _FAILED as exc:
            raise self._translate(exc, "list", prefix or "/") from None

    def remove(self, entries: Iterable[StoreEntry]) -> list[StoreEntry]:
        """Batch delete (DeleteObjects, 1000 keys a request); S3 counts absent keys too."""
        batch = list(entries)
        if batch:
            try:
                obstore.delete(self._s3, [entry.handle for entry in batch])
            except _FAILED as exc:
                raise self._translate(exc, "delete", batch[0].handle) from None
        return batch

    # --- errors ------------------------------------------------------------------------------

    def _unless_bucket_missing(self, exc: Exception, operation: str, key: str) -> None:
        """A 404 is an absent object, unless its body says the bucket itself is absent."""
        if _code_and_status(exc)[0] == "NoSuchBucket":
            raise self._translate(exc, operation, key) from None

    def _explain_forbidden(self, operation: str, key: str) -> TaskError:
        """Why a request was refused, asked of a LIST, whose error body names the reason.

        A HEAD's 403 has no body at all, and some servers (SeaweedFS) answer a write into
        a bucket that does not exist with AccessDenied; a LIST of the prefix says
        SignatureDoesNotMatch, NoSuchBucket, RequestTimeTooSkewed... or succeeds, and then
        the refusal really is a permission.
        """
        try:
            next(iter(obstore.list(self._s3, self.options.location.prefix or None, chunk_size=1)))
        except StopIteration:
            pass
        except _FAILED as exc:
            code, _status = _code_and_status(exc)
            if code and code != "AccessDenied":
                return self._translate(exc, operation, key, diagnose=False)
        return self._denied(operation, "AccessDenied")

    def _denied(self, operation: str, code: str) -> TaskError:
        bucket = self.options.location.bucket
        return TaskError(
            "storage_denied",
            f"the identity of {env_name('storage_s3_access_key_id')} may not {operation} in "
            f"{self.location}; grant it read, write, list and delete on bucket {bucket!r} "
            f"({code})",
        )

    def _translate(
        self, exc: Exception, operation: str, key: str, *, diagnose: bool = True
    ) -> TaskError:
        """The task error for a failed request; messages name settings, never secrets."""
        code, status = _code_and_status(exc)
        endpoint = self.options.endpoint
        text = str(exc)
        if code == "SignatureDoesNotMatch":
            return TaskError(
                "storage_credentials",
                f"{env_name('storage_s3_secret_access_key')} is wrong (SignatureDoesNotMatch)",
            )
        if code == "InvalidAccessKeyId":
            return TaskError(
                "storage_credentials",
                f"{env_name('storage_s3_access_key_id')} is not known to the object store at "
                f"{endpoint} (InvalidAccessKeyId)",
            )
        if code == "NoSuchBucket":
            return TaskError(
                "storage_bucket",
                f"bucket {self.options.location.bucket!r} does not exist at {endpoint}; create "
                f"it or correct {env_name('storage_url')} (NoSuchBucket)",
            )
        if code == "RequestTimeTooSkewed":
            return TaskError(
                "storage_clock",
                "this host's clock and the object store's differ by more than S3 allows "
                "(15 minutes); synchronise the clocks with NTP (RequestTimeTooSkewed)",
            )
        if diagnose and (code == "AccessDenied" or (code is None and status == 403)):
            return self._explain_forbidden(operation, key)
        if code == "AccessDenied" or status == 403:
            return self._denied(operation, code or "HTTP 403")
        if isinstance(exc, UnauthenticatedError):
            return TaskError(
                "storage_credentials",
                f"the object store at {endpoint} refused the credentials of "
                f"{env_name('storage_s3_access_key_id')} ({code or status})",
            )
        if code in TRANSIENT_CODES or (status is not None and (status >= 500 or status == 429)):
            return TransientError(
                "storage_unavailable",
                f"the object store at {endpoint} answered {code or f'HTTP {status}'}; "
                "retrying later",
            )
        if status is None:
            if any(marker.lower() in text.lower() for marker in _TLS_MARKERS):
                return TaskError("storage_tls", _tls_reason(text, endpoint))
            return TransientError(
                "storage_unavailable",
                f"cannot reach the object store at {endpoint} "
                f"({env_name('storage_s3_endpoint_url')}): {_network_reason(text)}",
            )
        return TaskError(
            "storage_error",
            f"{operation} of {self.ref_of(key)} failed: {code or f'HTTP {status}'}",
        )


def _code_and_status(exc: BaseException) -> tuple[str | None, int | None]:
    """The S3 error code and HTTP status the library's message carries, if any."""
    text = str(exc)
    code = _CODE.search(text)
    status = _STATUS.search(text)
    return (code[1] if code else None), (int(status[1]) if status else None)


def _tls_reason(text: str, endpoint: str) -> str:
    """Why the endpoint's certificate was refused, from the TLS library's debug text."""
    if "Expired" in text or "NotValidYet" in text:
        return f"the certificate of {endpoint} has expired or is not yet valid; renew it"
    if "NotValidForName" in text:
        return (
            f"the certificate of {endpoint} does not name that host; the endpoint "
            f"({env_name('storage_s3_endpoint_url')}) must use a name the certificate carries"
        )
    return (
        f"the certificate of {endpoint} is not trusted; set "
        f"{env_name('storage_s3_ca_bundle')} to the CA that signed it"
    )


def _network_reason(text: str) -> str:
    """What went wrong on the wire, from the kind the library's debug text names."""
    if "ConnectionRefused" in text:
        return "connection refused"
    if "kind: Timeout" in text or "TimedOut" in text or "operation timed out" in text:
        return "timed out"
    if "dns error" in text or "failed to lookup address" in text:
        return "the name does not resolve"
    if "kind: Connect" in text:
        return "cannot connect"
    return "the request failed"
