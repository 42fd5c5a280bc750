"""End-to-end verification of a deployment, run by an operator (or Ansible) on a host.

It reads the same env file as the workers and exercises the real path a task takes:
the Sentinels around the broker (with a sentinel:// broker), broker, result backend,
the image store (a probe object written, read and deleted with the app's own identity),
live consumers per queue, a health check through each queue, and a crawl->validate
chain on a new image it serves itself. Every check is bounded by ``--timeout`` (socket
timeouts, ``result.get(timeout=...)`` and a thread join as the last resort), so a hung
Redis or object store yields FAIL lines, not a hung shell.

It only ever touches its own messages and objects: nothing is purged, no queue is
drained, only its own task ids are awaited, forgotten, or (after a timeout) revoked. The
chain's image is new on every run (an image already stored or already validated would
prove nothing) and is deleted from the store once the chain has passed.

Secrets never reach the output: URLs are shown redacted and every detail line is
scrubbed of the passwords found in the settings before it is printed.

The checks and their command line live here; what they use lives with its kind: the
settings in :mod:`pixcrawler.celery_core.config`, the bounded client in
:mod:`pixcrawler.celery_core.client`, the scrubbing in :mod:`pixcrawler.celery_core.scrub`,
the error descriptions in :mod:`pixcrawler.errortext` and the test image and its server
in :mod:`pixcrawler.image_server`.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pwd
import socket
import sys
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import asdict, dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from secrets import token_bytes
from typing import TYPE_CHECKING, Any, TypeVar, cast

from pixcrawler.celery_core.base import ENVELOPE_SCHEMA
from pixcrawler.celery_core.client import client_app
from pixcrawler.celery_core.config import (
    DEFAULT_ENV_FILE,
    ENV_FILE_VARIABLE,
    CelerySettings,
    SettingsError,
    env_name,
    load_operator_settings,
)
from pixcrawler.celery_core.errors import TaskError
from pixcrawler.celery_core.queues import QUEUE_NAMES
from pixcrawler.celery_core.redact import redact_url, strip_userinfo
from pixcrawler.celery_core.scrub import scrub, secrets_of
from pixcrawler.errortext import describe_error, describe_task_error
from pixcrawler.image_server import NoAcceptableFormat, probe_image, serve_image
from pixcrawler.storage import ImageStore, OutsideStore, open_store
from pixcrawler.storage.location import FileLocation
from pixcrawler.verify_sentinel import SentinelProblem, check_sentinels

if TYPE_CHECKING:
    import redis
    from celery import Celery
    from celery.result import AsyncResult

HEALTH_TASK = "celery_core.health_check"
CRAWL_TASK = "builder.tasks.crawl_task"
VALIDATE_TASK = "validator.tasks.validate_task"

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
#: Extension of the storage check's probe object (never an image extension).
PROBE_EXTENSION = "probe"
#: Celery polls for results once a second, so a wait can overrun its timeout by that much.
RESULT_POLL = 1.0
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
SENTINEL_CHECK = "sentinel"
#: Checks whose SKIP means "does not apply here" (no Sentinel without sentinel://), so
#: --strict does not count it.
OPTIONAL_CHECKS = frozenset({SENTINEL_CHECK})

T = TypeVar("T")


# --- results of checks ------------------------------------------------------------------------


@dataclass
class Check:
    name: str
    status: str
    ms: int
    detail: str

    def line(self) -> str:
        return f"{self.status}  {self.name:<26}  {self.ms:>6}  {self.detail}"


class CheckFailed(Exception):
    """A check's verdict with an operator-readable reason (raised inside a check)."""


class Skipped(Exception):
    """The check cannot run here; the message says why and what to do."""


# --- asking Redis and the workers ----------------------------------------------------------------


def server_version(client: redis.Redis) -> str:
    """PING proves access; the version is a courtesy, as INFO is often denied by ACLs."""
    import redis.exceptions

    client.ping()
    try:
        info = client.info("server")
    except redis.exceptions.ResponseError:  # NOPERM: INFO is in @dangerous
        return "PONG"
    return f"PONG from Redis {info.get('redis_version', '?')}"


def ping_broker(app: Celery) -> str:
    with app.connection_for_write() as conn:
        conn.ensure_connection(max_retries=0)
        return server_version(conn.default_channel.client)  # type: ignore[attr-defined]


def ping_backend(app: Celery) -> str:
    return server_version(app.backend.client)  # type: ignore[attr-defined]


def active_consumers(app: Celery, timeout: float) -> dict[str, list[str]]:
    """queue -> worker node names consuming it, from the workers' own answers."""
    replies = app.control.inspect(timeout=timeout).active_queues() or {}
    consumers: dict[str, list[str]] = {}
    for node, queues in sorted(replies.items()):
        for queue in queues or []:
            name = queue.get("name") if isinstance(queue, dict) else None
            if name:
                consumers.setdefault(str(name), []).append(str(node))
    return consumers


def store_refusal(root: Path) -> str | None:
    """Why this user must not test writing into the local store at *root*, or None.

    Only the service user's own writes prove anything, and anyone else's could harm:
    root's probe would leave a shard directory root owns, in which the workers could
    never write again.
    """
    existing = next((p for p in (root, *root.parents) if p.exists()), Path("/"))
    owner = existing.stat().st_uid
    if os.geteuid() == owner:
        return None
    return (
        f"not run as the service user: {existing} belongs to {_user_name(owner)}; run as "
        f"that user (runuser -u {_user_name(owner)} -- ...) to test writing to {root}"
    )


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def probe_store(store: ImageStore, root: Path | None) -> str:
    """Write, read back and delete one object with the app's identity."""
    if root is not None and root.exists() and not os.access(root, os.W_OK):
        raise CheckFailed(f"{root} is not writable by {_user_name(os.geteuid())}")
    body = b"pixcrawler verify probe " + token_bytes(16)
    with store.writer() as writer:
        writer.write(body)
        stored = writer.commit(PROBE_EXTENSION)
    try:
        if store.read(stored.ref, len(body)) != body:
            raise CheckFailed(f"{stored.ref} read back differs from what was written")
    finally:
        deleted = store.delete(stored.ref)
    if not deleted or store.exists(stored.ref):
        raise CheckFailed(f"{stored.ref} could not be deleted")
    return f"{store.location}: wrote, read and deleted a probe object ({len(body)} bytes)"


def local_names() -> set[str]:
    hostname = socket.gethostname()
    return {"localhost", hostname, hostname.split(".")[0], socket.getfqdn()}


def revoke(app: Celery, ids: Sequence[str]) -> None:
    """Tell workers to drop our own late messages; never touches anyone else's."""
    if ids:
        with suppress(Exception):
            app.control.revoke(list(ids))


def forget(results: Sequence[AsyncResult[Any]]) -> None:
    for result in results:
        with suppress(Exception):
            result.forget()


# --- the run -----------------------------------------------------------------------------------


@dataclass
class Options:
    queues: tuple[str, ...]
    timeout: float
    inspect_timeout: float
    serve_address: str
    image_url: str | None
    strict: bool
    as_json: bool


class Verifier:
    """Runs the checks in order, each within what is left of the overall timeout."""

    def __init__(
        self,
        settings: CelerySettings,
        options: Options,
        emit: Callable[[Check], None],
        started: float,
    ) -> None:
        self.settings = settings
        self.options = options
        self.emit = emit
        self.deadline = started + options.timeout
        self.secrets = secrets_of(settings)
        self.checks: list[Check] = []
        self._store: ImageStore | None = None
        # Short enough that a hung Redis leaves time for the remaining checks.
        self.io_timeout = min(settings.redis_socket_timeout, max(1.0, options.timeout / 4))

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def record(self, name: str, status: str, ms: float, detail: str) -> Check:
        check = Check(name, status, round(ms), scrub(detail, self.secrets))
        self.checks.append(check)
        self.emit(check)
        return check

    def bounded(self, fn: Callable[[], T]) -> T:
        """Run *fn* in a thread and stop waiting when the overall timeout is reached.

        Socket timeouts normally end a stuck call first; this is the guarantee for the
        cases they miss (a DNS lookup, a TLS handshake, a library retry loop).
        """
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["value"] = fn()
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=target, name="verify-check", daemon=True)
        thread.start()
        thread.join(max(0.0, self.remaining()) + RESULT_POLL)
        if thread.is_alive():
            raise CheckFailed(f"did not finish within the --timeout of {self.options.timeout:g} s")
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]

    def step(self, name: str, fn: Callable[[], str], target: str = "") -> bool:
        """Run one check; True if it passed. *target* prefixes an error's description."""
        if self.remaining() <= 0:
            self.record(
                name, FAIL, 0, f"not run: the --timeout of {self.options.timeout:g} s was used up"
            )
            return False
        start = time.monotonic()
        try:
            detail = self.bounded(fn)
        except Skipped as exc:
            self.record(name, SKIP, (time.monotonic() - start) * 1000, str(exc))
            return False
        except CheckFailed as exc:
            self.record(name, FAIL, (time.monotonic() - start) * 1000, str(exc))
            return False
        except Exception as exc:
            detail = describe_error(exc, self.io_timeout)
            if target:
                detail = f"{target}: {detail}"
            self.record(name, FAIL, (time.monotonic() - start) * 1000, detail)
            return False
        self.record(name, PASS, (time.monotonic() - start) * 1000, detail)
        return True

    def skip(self, name: str, reason: str) -> None:
        self.record(name, SKIP, 0, reason)

    def run(self, source: str, settings_ms: float) -> list[Check]:
        s = self.settings
        self.record(
            "settings",
            PASS,
            settings_ms,
            f"from {source}; broker {redact_url(s.broker_url.get_secret_value())}, "
            f"results {redact_url(s.result_backend.get_secret_value())}",
        )
        app = client_app(s, self.io_timeout)
        broker_url = redact_url(s.broker_url.get_secret_value())
        backend_url = redact_url(s.result_backend.get_secret_value())

        self.check_sentinel()
        broker_ok = self.step("broker", lambda: f"{broker_url}: {ping_broker(app)}", broker_url)
        backend_ok = self.step(
            "result_backend", lambda: f"{backend_url}: {ping_backend(app)}", backend_url
        )
        self.step("storage", self.check_storage)
        consumers = self.check_consumers(app, broker_ok)
        self.check_health(app, broker_ok, backend_ok, consumers)
        self.check_chain(app, broker_ok, backend_ok, consumers)
        return self.checks

    def check_sentinel(self) -> None:
        """The Sentinel set around the broker (verify_sentinel.py); only for sentinel://."""
        scheme = self.settings.broker_scheme
        if scheme != "sentinel":
            self.skip(SENTINEL_CHECK, f"the broker is {scheme}://, not sentinel://")
            return

        def survey() -> str:
            try:
                return check_sentinels(self.settings, self.io_timeout)
            except SentinelProblem as exc:
                raise CheckFailed(str(exc)) from None

        self.step(SENTINEL_CHECK, survey)

    def store(self) -> ImageStore:
        """The store the workers use, as this host's settings name it (built once)."""
        if self._store is None:
            self._store = open_store(self.settings)
        return self._store

    def check_storage(self) -> str:
        location = self.settings.storage_location
        root = location.root if isinstance(location, FileLocation) else None
        if root is not None:
            refusal = store_refusal(root)
            if refusal:
                raise Skipped(refusal)
        try:
            return probe_store(self.store(), root)
        except TaskError as exc:  # the store's own diagnosis names the setting
            raise CheckFailed(f"{self.store().location}: {exc.message}") from None

    def check_consumers(self, app: Celery, broker_ok: bool) -> dict[str, list[str]] | None:
        queues = self.options.queues
        if not broker_ok:
            for queue in queues:
                self.skip(f"consumers[{queue}]", "broker check failed")
            return None
        start = time.monotonic()
        wait = max(0.1, min(self.options.inspect_timeout, self.remaining()))
        try:
            consumers = self.bounded(lambda: active_consumers(app, wait))
        except Exception as exc:
            detail = str(exc) if isinstance(exc, CheckFailed) else describe_error(exc, wait)
            for queue in queues:
                self.record(f"consumers[{queue}]", FAIL, (time.monotonic() - start) * 1000, detail)
            return None
        ms = (time.monotonic() - start) * 1000
        for queue in queues:
            nodes = consumers.get(queue, [])
            if nodes:
                self.record(
                    f"consumers[{queue}]", PASS, ms, f"{len(nodes)} worker(s): {', '.join(nodes)}"
                )
            else:
                answered = len({n for ns in consumers.values() for n in ns})
                self.record(
                    f"consumers[{queue}]",
                    FAIL,
                    ms,
                    f"no live worker consumes {queue!r} ({answered} worker(s) answered "
                    f"within {wait:g} s); start one with -Q {queue}",
                )
        return consumers

    def check_health(
        self,
        app: Celery,
        broker_ok: bool,
        backend_ok: bool,
        consumers: dict[str, list[str]] | None,
    ) -> None:
        targets: list[str] = []
        for queue in self.options.queues:
            name = f"health_check[{queue}]"
            if not broker_ok:
                self.skip(name, "broker check failed")
            elif not backend_ok:
                self.skip(name, "result backend check failed")
            elif consumers is not None and not consumers.get(queue):
                # Publishing would leave a message that nobody takes.
                self.skip(name, f"not dispatched: no consumer on {queue!r}")
            elif self.remaining() <= 0:
                self.record(name, FAIL, 0, "not run: the --timeout was used up")
            else:
                targets.append(queue)
        if not targets:
            return
        start = time.monotonic()
        try:
            outcomes = self.bounded(lambda: self.round_trips(app, targets))
        except Exception as exc:
            detail = str(exc) if isinstance(exc, CheckFailed) else describe_error(exc)
            for queue in targets:
                self.record(
                    f"health_check[{queue}]", FAIL, (time.monotonic() - start) * 1000, detail
                )
            return
        for queue in targets:
            status, ms, detail = outcomes[queue]
            self.record(f"health_check[{queue}]", status, ms, detail)

    def round_trips(self, app: Celery, queues: list[str]) -> dict[str, tuple[str, float, str]]:
        """Dispatch a health check to every queue first, then collect each answer."""
        from celery.exceptions import TimeoutError as ResultTimeout

        sent: dict[str, tuple[AsyncResult[Any], float]] = {}
        outcomes: dict[str, tuple[str, float, str]] = {}
        for queue in queues:
            began = time.monotonic()
            try:
                sent[queue] = (app.send_task(HEALTH_TASK, queue=queue), began)
            except Exception as exc:
                outcomes[queue] = (FAIL, 0.0, f"publish failed: {describe_error(exc)}")
        late: list[str] = []
        for queue, (result, began) in sent.items():
            wait = max(0.1, self.remaining() - RESULT_POLL)
            try:
                value = result.get(timeout=wait, propagate=False)
            except Exception as exc:
                late.append(str(result.id))
                reason = describe_error(exc, wait)
                if isinstance(exc, ResultTimeout):
                    reason = f"no result within {wait:.1f} s (task {result.id} revoked)"
                outcomes[queue] = (FAIL, (time.monotonic() - began) * 1000, reason)
                continue
            ms = (time.monotonic() - began) * 1000
            status, detail = judge_health(result, value, queue)
            if status == PASS and not is_stored(result):
                status, detail = FAIL, self.not_stored()
            outcomes[queue] = (status, ms, detail)
            forget([result])
        revoke(app, late)
        return outcomes

    def not_stored(self) -> str:
        url = redact_url(self.settings.result_backend.get_secret_value())
        return (
            f"the result arrived (Redis pub/sub spans databases) but is not stored in {url}: "
            f"the workers write results elsewhere; compare {env_name('result_backend')} "
            "on the workers and here"
        )

    def check_chain(
        self,
        app: Celery,
        broker_ok: bool,
        backend_ok: bool,
        consumers: dict[str, list[str]] | None,
    ) -> None:
        name = "crawl_validate_chain"
        if not broker_ok:
            return self.skip(name, "broker check failed")
        if not backend_ok:
            return self.skip(name, "result backend check failed")
        for queue in ("crawl", "validation"):
            if consumers is not None and not consumers.get(queue):
                return self.skip(name, f"no consumer on {queue!r}")
        self.step(name, lambda: self.crawl_validate(app, consumers))
        return None

    def crawl_validate(self, app: Celery, consumers: dict[str, list[str]] | None) -> str:
        if self.options.image_url:
            return self.run_chain(app, self.options.image_url, None)
        address = ip_address(self.options.serve_address)
        refusal = self.serve_refusal(address, consumers)
        if refusal:
            raise Skipped(refusal)
        try:
            body, content_type = probe_image(self.settings)
        except NoAcceptableFormat as exc:
            raise Skipped(str(exc)) from None
        with serve_image(str(address), body, content_type) as (url, hits):
            return self.run_chain(app, url, hits)

    def serve_refusal(
        self, address: IPv4Address | IPv6Address, consumers: dict[str, list[str]] | None
    ) -> str | None:
        """Why the workers could not fetch from *address*, or None if they can."""
        from pixcrawler.builder.fetch import is_forbidden

        if is_forbidden(address, self.settings.crawl_allowed_networks):
            return (
                f"workers refuse {address}: it is not public and not in "
                f"{env_name('crawl_allowed_networks')}; pass --image-url with a URL the "
                "crawl workers may fetch, or --serve-address with an allowed address"
            )
        if address.is_loopback and consumers is not None:
            local = local_names()
            remote = [n for n in consumers.get("crawl", []) if n.partition("@")[2] not in local]
            if remote:
                return (
                    f"crawl workers on other hosts ({', '.join(remote)}) cannot reach "
                    f"{address} here; pass --serve-address with this host's address or "
                    "--image-url with a URL they can reach"
                )
        return None

    def run_chain(self, app: Celery, url: str, hits: list[int] | None) -> str:
        from celery import chain
        from celery.exceptions import TimeoutError as ResultTimeout
        from celery.result import AsyncResult

        workflow = chain(app.signature(CRAWL_TASK, args=(url,)), app.signature(VALIDATE_TASK))
        result = workflow.apply_async()
        crawl = result.parent if isinstance(result.parent, AsyncResult) else None
        mine = [r for r in (crawl, result) if r is not None]
        wait = max(0.1, self.remaining() - RESULT_POLL)
        try:
            value = result.get(timeout=wait, propagate=False)
        except Exception as exc:
            revoke(app, [str(r.id) for r in mine])
            served = "" if hits is None else f"; the image was fetched {len(hits)} time(s)"
            if isinstance(exc, ResultTimeout):
                state = crawl.state if crawl is not None else "?"
                raise CheckFailed(
                    f"no result within {wait:.1f} s (crawl state {state}{served}; tasks revoked)"
                ) from None
            raise
        try:
            detail = judge_chain(result, crawl, value, url)
            ref = stored_ref(crawl)
            try:
                self.store().resolve(ref)
            except OutsideStore:
                raise CheckFailed(
                    f"the crawl stored the image as {ref}, outside this host's store "
                    f"{self.store().location}: the workers' {env_name('storage_url')} (or "
                    f"{env_name('storage_dir')}) differs from this host's"
                ) from None
            with suppress(Exception):  # a fresh image per run: do not keep each one
                self.store().delete(ref)
            return detail
        finally:
            forget(mine)


def is_stored(result: AsyncResult[Any]) -> bool:
    """Whether the result is in this client's backend, where a later poll would look.

    A waiting client receives the result by pub/sub, which Redis delivers across
    databases, so a worker writing to another database still "answers" a live wait.
    """
    backend = cast("Any", result.backend)
    return backend.get(backend.get_key_for_task(result.id)) is not None


def stored_ref(crawl: AsyncResult[Any] | None) -> str:
    """Where the crawl says it stored the image (its result's first file)."""
    envelope = crawl.result if crawl is not None else None
    data = envelope.get("data") if isinstance(envelope, dict) else None
    files = data.get("files") if isinstance(data, dict) else None
    if not files or not isinstance(files[0], str):
        raise CheckFailed(f"unexpected crawl result (not a {ENVELOPE_SCHEMA} envelope)")
    return files[0]


def judge_health(result: AsyncResult[Any], value: Any, queue: str) -> tuple[str, str]:
    if result.failed():
        return FAIL, f"task failed: {describe_task_error(value)}"
    if not isinstance(value, dict) or value.get("schema") != ENVELOPE_SCHEMA:
        return FAIL, f"unexpected result (not a {ENVELOPE_SCHEMA} envelope)"
    data = value.get("data") or {}
    answered_from = data.get("queue")
    if answered_from != queue:
        return FAIL, f"sent to {queue!r} but executed from {answered_from!r}"
    versions = data.get("versions") or {}
    return PASS, (
        f"answered by {data.get('hostname')} (pid {data.get('pid')}, "
        f"pixcrawler {versions.get('pixcrawler')}, celery {versions.get('celery')})"
    )


def judge_chain(
    result: AsyncResult[Any], crawl: AsyncResult[Any] | None, value: Any, url: str
) -> str:
    shown = strip_userinfo(url)
    if result.failed():
        crawl_failed = crawl is not None and crawl.failed()
        stage = "crawl" if crawl_failed else "validation"
        reason = describe_task_error(value)
        if stage == "validation" and getattr(value, "code", None) == "missing_file":
            reason += (
                " (crawl and validation workers must use one store: the same "
                f"{env_name('storage_url')}; s3:// when they share no directory)"
            )
        raise CheckFailed(f"{stage} of {shown} failed: {reason}")
    data = value.get("data") if isinstance(value, dict) else None
    outcomes = data.get("outcomes") if isinstance(data, dict) else None
    if not outcomes:
        raise CheckFailed(f"unexpected validation result (not a {ENVELOPE_SCHEMA} envelope)")
    first = outcomes[0]
    if first.get("status") == "duplicate":
        # The image is new to this run, so "seen before" means validation did not judge
        # what this crawl stored.
        raise CheckFailed(
            f"validation called the new test image a duplicate of task "
            f"{first.get('duplicate_of')}: it did not validate what this crawl stored"
        )
    if first.get("status") != "valid":
        raise CheckFailed(f"validation rejected the image: {first.get('message')}")
    return (
        f"{shown} crawled to {first.get('path')} and validated: {first.get('format')} "
        f"{first.get('width')}x{first.get('height')}"
    )


# --- command line ----------------------------------------------------------------------------


def _queue_list(value: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(q.strip() for q in value.split(",") if q.strip()))
    unknown = [q for q in names if q not in QUEUE_NAMES]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"unknown queue(s) {', '.join(unknown) or '(none given)'}; "
            f"known queues: {', '.join(QUEUE_NAMES)}"
        )
    return names


def _positive(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number") from None
    if not number > 0:
        raise argparse.ArgumentTypeError("must be greater than 0")
    return number


def _serve_address(value: str) -> str:
    try:
        address = ip_address(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IP address") from None
    if address.is_unspecified:
        raise argparse.ArgumentTypeError(
            "give the address the crawl workers should connect to, not a wildcard"
        )
    return str(address)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``pixcrawler verify`` and ``scripts/test_celery_redis.py``."""
    parser.add_argument(
        "--env-file",
        metavar="PATH",
        help=f"settings file (default: ${ENV_FILE_VARIABLE}, else {DEFAULT_ENV_FILE} if it "
        "exists, else the process environment)",
    )
    parser.add_argument(
        "--queues",
        type=_queue_list,
        default=QUEUE_NAMES,
        metavar="Q1,Q2",
        help=f"queues that must have consumers (default: all of {','.join(QUEUE_NAMES)})",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=30.0,
        metavar="SECONDS",
        help="bound on the whole run (default: 30)",
    )
    parser.add_argument(
        "--inspect-timeout",
        type=_positive,
        default=1.5,
        metavar="SECONDS",
        help="how long to wait for workers to report their queues (default: 1.5)",
    )
    parser.add_argument(
        "--serve-address",
        type=_serve_address,
        default="127.0.0.1",
        metavar="IP",
        help="address to serve the chain's test image on (default: 127.0.0.1)",
    )
    parser.add_argument(
        "--image-url",
        metavar="URL",
        help="crawl this image instead of serving one (multi-host setups)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="treat SKIP as failure in the exit code"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON document")


def _printer(as_json: bool) -> Callable[[Check], None]:
    def emit(check: Check) -> None:
        if not as_json:
            print(check.line(), flush=True)

    return emit


def _exit_code(checks: Sequence[Check], strict: bool) -> int:
    def bad(check: Check) -> bool:
        if check.status == SKIP:
            return strict and check.name not in OPTIONAL_CHECKS
        return check.status == FAIL

    return EXIT_FAILED if any(bad(c) for c in checks) else EXIT_OK


def _report(checks: Sequence[Check], code: int, as_json: bool) -> None:
    if as_json:
        document = {"ok": code == EXIT_OK, "checks": [asdict(c) for c in checks]}
        print(json.dumps(document, indent=2), flush=True)
        return
    counts = {s: sum(c.status == s for c in checks) for s in (PASS, FAIL, SKIP)}
    verdict = "OK" if code == EXIT_OK else "FAILED"
    print(
        f"{verdict}: {counts[PASS]} passed, {counts[FAIL]} failed, {counts[SKIP]} skipped",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    """Run the checks for parsed *args*; the process exit code."""
    started = time.monotonic()
    # Library warnings must not interleave with the check lines or the JSON document.
    logging.getLogger().addHandler(logging.NullHandler())
    options = Options(
        queues=tuple(args.queues),
        timeout=args.timeout,
        inspect_timeout=args.inspect_timeout,
        serve_address=args.serve_address,
        image_url=args.image_url,
        strict=args.strict,
        as_json=args.json,
    )
    emit = _printer(options.as_json)
    try:
        settings, source = load_operator_settings(args.env_file)
        settings_ms = (time.monotonic() - started) * 1000
    except SettingsError as exc:
        check = Check("settings", FAIL, round((time.monotonic() - started) * 1000), str(exc))
        if options.as_json:
            _report([check], EXIT_USAGE, True)
        else:
            print(check.line(), file=sys.stderr, flush=True)
        return EXIT_USAGE
    checks = Verifier(settings, options, emit, started).run(source, settings_ms)
    code = _exit_code(checks, options.strict)
    _report(checks, code, options.as_json)
    return code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="test_celery_redis.py",
        description="Verify a PixCrawler deployment: broker, result backend, image store, "
        "consumers, a task through every queue and a crawl->validate chain.",
    )
    add_arguments(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))
