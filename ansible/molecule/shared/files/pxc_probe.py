"""Molecule verify helper, copied onto test hosts and run with the deployed venv's Python.

It checks a deployment from the outside the way a client would, so verify does not trust
unit states alone: tasks really pass through a queue, a worker restart really loses
nothing, Redis really refuses strangers. It reads settings the way the workers do
(PIXCRAWLER_ENV_FILE) and never prints them: only task ids, states and queue names.

Subcommands (each prints one JSON document; exit 0 means the check held):
  queue QUEUE [--count N]          N health checks sent to QUEUE all succeed on QUEUE
  submit --out F [--url U [--crawl-queue Q]] [--queue Q --count N] [--marker M]
                                   send a crawl of U and N health checks, record their ids
                                   in F; with --marker wait until the slow server saw the
                                   crawl's request
  collect --ids F [--since T] [--after T --times F.times] [--runs R]
                                   every task recorded in F (or more files) succeeded;
                                   the last completion time (and the first after T; the
                                   first of a task published after T); with R (events)
                                   which of the others never ran and which ran but lost
                                   their result
  redis-noauth --host H --port P [--cafile CA]
                                   an unauthenticated PING is refused with an auth error
  redis-closed --host H --port P   nothing accepts a TCP connection there
  slowhttp --port P --delay S --marker M
                                   serve a PNG on 127.0.0.1 after S seconds; append a line
                                   to M on every request (runs until killed)
  wait-requests --marker M --count N
                                   wait until the slow server has seen N requests
  requests --marker M              how many URLs the slow server saw once, twice ...
  flood --out F --count N [--queue Q ...] [--priority P ...]
                                   N health checks, round robin over the queues (and
                                   the message priorities: kombu keeps one list each)
  stream --out F --seconds S --rate R
                                   publish health checks for S seconds; F records the
                                   ids whose publish returned (F.times: when each
                                   returned), and how many were refused
  broker-state                     unacknowledged deliveries (and their owner nodes) and
                                   the backlog of every queue, over all priority lists
  events --out F --stop M          count task-succeeded events per task (Celery's own
                                   events, as Flower sees them) into F until M exists
  dupes --ids F --runs R           which of the tasks in F succeeded more than once, by
                                   the counts in R (from events)
  chains --serve-address A --count N
                                   N crawl->validate chains, each of a new image served
                                   here on A: every crawl ran from `crawl`, every
                                   validation from `validation`, and each found the image
  grpc-refuses --host H --port P   a gRPC port demands a client certificate: plain HTTP/2
                                   gets no HTTP/2 answer, TLS without a certificate fails
  listeners --pid PID              the TCP addresses process PID listens on (run as its
                                   user: /proc/PID/fd is readable by its owner; stdlib only)
  connect --expect open|dropped HOST:PORT ...
                                   a TCP connection to each: open, refused or timeout
                                   (a dropped SYN); every one as expected (stdlib only)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import ssl
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HEALTH = "celery_core.health_check"
CRAWL = "builder.tasks.crawl_task"
VALIDATE = "validator.tasks.validate_task"
#: What an insecure gRPC client sends first: the HTTP/2 preface and an empty SETTINGS frame.
H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"


def _emit(doc: dict[str, Any], ok: bool) -> int:
    doc["ok"] = ok
    print(json.dumps(doc, sort_keys=True))
    return 0 if ok else 1


def _app() -> Any:
    from pixcrawler.celery_core.app import get_celery_app

    return get_celery_app()


def _wait(ids: list[str], timeout: float) -> dict[str, dict[str, Any]]:
    from celery.result import AsyncResult

    app = _app()
    deadline = time.monotonic() + timeout
    out: dict[str, dict[str, Any]] = {}
    for task_id in ids:
        res = AsyncResult(task_id, app=app)
        # Past the deadline only what is stored already counts: a get() waits at least
        # one poll of the result subscription (1 s), so 458 lost tasks took 458 s more.
        if time.monotonic() >= deadline and res.state not in ("SUCCESS", "FAILURE"):
            out[task_id] = {"state": res.state, "error": "TimeoutError"}
            continue
        try:
            value = res.get(timeout=max(1.0, deadline - time.monotonic()), propagate=False)
        except Exception as exc:  # a timeout is a result here, not a crash
            out[task_id] = {"state": res.state, "error": type(exc).__name__}
            continue
        queue = value.get("queue") if isinstance(value, dict) else None
        out[task_id] = {"state": res.state, "queue": queue, "done": _epoch(res.date_done)}
    return out


def _epoch(when: Any) -> float | None:
    """A result's date_done (UTC) as a Unix time, for recovery times."""
    from datetime import UTC, datetime

    if isinstance(when, str):
        when = datetime.fromisoformat(when)
    if not isinstance(when, datetime):
        return None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def cmd_queue(args: argparse.Namespace) -> int:
    app = _app()
    ids = [app.send_task(HEALTH, queue=args.queue).id for _ in range(args.count)]
    results = _wait(ids, args.timeout)
    ok = all(r["state"] == "SUCCESS" and r.get("queue") == args.queue for r in results.values())
    return _emit({"queue": args.queue, "results": results}, ok)


def cmd_submit(args: argparse.Namespace) -> int:
    app = _app()
    ids: list[str] = []
    if args.url:
        ids += [
            app.send_task(CRAWL, args=[f"{args.url}?n={n}"], queue=args.crawl_queue).id
            for n in range(args.crawls)
        ]
    ids += [app.send_task(HEALTH, queue=args.queue).id for _ in range(args.count)]
    Path(args.out).write_text(json.dumps(ids))
    seen = True
    if args.marker:
        deadline = time.monotonic() + args.timeout
        while not Path(args.marker).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = Path(args.marker).exists()
    return _emit({"submitted": len(ids), "slow_request_seen": seen}, seen)


def _requests(marker: Path) -> int:
    return len(marker.read_text().splitlines()) if marker.exists() else 0


def cmd_wait_requests(args: argparse.Namespace) -> int:
    marker = Path(args.marker)
    deadline = time.monotonic() + args.timeout
    while _requests(marker) < args.count and time.monotonic() < deadline:
        time.sleep(0.2)
    return _emit({"requests": _requests(marker)}, _requests(marker) >= args.count)


def cmd_requests(args: argparse.Namespace) -> int:
    """How often the slow server saw each URL: {times requested: number of URLs}."""
    marker = Path(args.marker)
    paths = marker.read_text().splitlines() if marker.exists() else []
    per_url: dict[str, int] = {}
    for path in set(paths):
        times = str(paths.count(path))
        per_url[times] = per_url.get(times, 0) + 1
    return _emit({"requests": len(paths), "urls_by_times_requested": per_url}, True)


def _queues(args: argparse.Namespace) -> list[str]:
    from pixcrawler.celery_core.queues import QUEUE_NAMES

    return list(args.queue or QUEUE_NAMES)


def cmd_flood(args: argparse.Namespace) -> int:
    app, queues = _app(), _queues(args)
    priorities = args.priority or [None]
    ids = [
        app.send_task(
            HEALTH, queue=queues[n % len(queues)], priority=priorities[n % len(priorities)]
        ).id
        for n in range(args.count)
    ]
    Path(args.out).write_text(json.dumps(ids))
    return _emit({"submitted": len(ids), "queues": queues}, True)


def _record(out: str, ids: list[str], returned: dict[str, float]) -> None:
    Path(out).write_text(json.dumps(ids))
    Path(out + ".times").write_text(json.dumps(returned))


def cmd_stream(args: argparse.Namespace) -> int:
    """Publish like an application does through an outage: a publish that raises is the
    application's to retry and is not counted; one that returned must not be lost."""
    app, queues = _app(), _queues(args)
    ids: list[str] = []
    returned: dict[str, float] = {}
    refused = 0
    end = time.monotonic() + args.seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        try:
            task_id = app.send_task(HEALTH, queue=queues[n % len(queues)]).id
        except Exception:  # connection refused, timeouts: the broker did not accept it
            refused += 1
            time.sleep(0.5)
        else:
            ids.append(task_id)
            returned[task_id] = time.time()
        if n % 50 == 0:  # rewriting the whole list each time would slow the stream down
            _record(args.out, ids, returned)
        time.sleep(1 / args.rate)
    _record(args.out, ids, returned)
    return _emit({"accepted": len(ids), "refused": refused}, len(ids) > 0)


def cmd_broker_state(args: argparse.Namespace) -> int:
    from pixcrawler.celery_core.queues import PRIORITY_STEPS, QUEUE_NAMES
    from pixcrawler.celery_core.transport import owners as owners_of

    app = _app()
    with app.connection_for_write() as conn:
        channel = conn.default_channel
        client = channel.client
        sep = "\x06\x16"  # kombu's separator between a queue and its priority bucket
        backlog = {
            q: sum(int(client.llen(q if p == 0 else f"{q}{sep}{p}")) for p in PRIORITY_STEPS)
            for q in QUEUE_NAMES
        }
        owners = owners_of(channel)
        unacked = int(client.hlen(channel.unacked_key))
    return _emit({"backlog": backlog, "unacked": unacked, "owners": owners}, True)


def _events_tick(receiver: Any, runs: dict[str, int], out: Path, stop: Path, ready: Path) -> None:
    ready.touch()
    out.write_text(json.dumps(runs))
    receiver.should_stop = stop.exists()


def cmd_events(args: argparse.Namespace) -> int:
    """Workers log successes only at INFO, and the deployed units log at WARNING: count
    Celery's task-succeeded events instead. Reconnects through broker restarts."""
    app = _app()
    runs: dict[str, int] = {}
    out, stop = Path(args.out), Path(args.stop)
    out.write_text(json.dumps(runs))
    ready = Path(args.out + ".ready")

    def succeeded(event: dict[str, Any]) -> None:
        runs[event["uuid"]] = runs.get(event["uuid"], 0) + 1

    while not stop.exists():
        try:
            with app.connection_for_read() as conn:
                receiver = app.events.Receiver(conn, handlers={"task-succeeded": succeeded})
                # ConsumerMixin's loop checks should_stop after every drain (1 s at most).
                receiver.on_iteration = lambda r=receiver: _events_tick(r, runs, out, stop, ready)
                receiver.capture(limit=None, timeout=None, wakeup=False)
        except Exception:  # the broker went away: reconnect until told to stop
            time.sleep(1)
    out.write_text(json.dumps(runs))
    return _emit({"tasks_seen": len(runs)}, True)


def cmd_dupes(args: argparse.Namespace) -> int:
    ids: list[str] = []
    for f in args.ids:
        ids += json.loads(Path(f).read_text())
    runs: dict[str, int] = json.loads(Path(args.runs).read_text())
    twice = sorted(i for i in ids if runs.get(i, 0) > 1)
    seen = sum(1 for i in ids if i in runs)
    doc = {"tasks": len(ids), "success_events": seen, "duplicated": len(twice)}
    return _emit({**doc, "duplicated_ids": twice[:20]}, True)


def cmd_collect(args: argparse.Namespace) -> int:
    ids: list[str] = []
    for f in args.ids:
        ids += json.loads(Path(f).read_text())
    results = _wait(ids, args.timeout)
    ok = all(r["state"] == "SUCCESS" for r in results.values())
    lost = [i for i, r in results.items() if r["state"] != "SUCCESS"]
    done = [r["done"] for r in results.values() if r.get("done")]
    doc = {"total": len(ids), "not_succeeded": lost, "last_done": max(done, default=None)}
    if args.since is not None:  # when workers consumed again after an outage
        doc["first_done_since"] = min((d for d in done if d >= args.since), default=None)
    if args.after is not None and args.times:  # ... counting only tasks sent after it
        sent_at: dict[str, float] = json.loads(Path(args.times).read_text())
        late = [r["done"] for i, r in results.items() if sent_at.get(i, 0) >= args.after]
        doc["first_done_published_after"] = min((d for d in late if d), default=None)
    if args.runs:  # a task without a result either never ran or ran and lost its result
        runs: dict[str, int] = json.loads(Path(args.runs).read_text())
        doc["never_ran"] = sum(1 for i in lost if not runs.get(i))
        doc["ran_result_lost"] = sum(1 for i in lost if runs.get(i))
    return _emit({**doc, "results": results}, ok)


def cmd_redis_noauth(args: argparse.Namespace) -> int:
    import redis

    tls = {"ssl": True, "ssl_ca_certs": args.cafile} if args.cafile else {}
    client = redis.Redis(host=args.host, port=args.port, socket_timeout=5, **tls)
    try:
        answer = client.ping()
    except redis.AuthenticationError as exc:
        return _emit({"refused": True, "reply": str(exc)}, True)
    except redis.ResponseError as exc:
        refused = "NOAUTH" in str(exc) or "NOPERM" in str(exc) or "auth" in str(exc).lower()
        return _emit({"refused": refused, "reply": str(exc)}, refused)
    except redis.ConnectionError as exc:
        return _emit({"refused": False, "reply": f"connection failed: {exc}"}, False)
    return _emit({"refused": False, "reply": repr(answer)}, False)


def cmd_redis_closed(args: argparse.Namespace) -> int:
    try:
        with socket.create_connection((args.host, args.port), timeout=3):
            pass
    except OSError as exc:
        return _emit({"host": args.host, "connect": f"failed: {exc}"}, True)
    return _emit({"host": args.host, "connect": "accepted"}, False)


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 40, 90)).save(buf, "PNG")
    return buf.getvalue()


def _noise_png() -> bytes:
    """A PNG no one has stored before (random pixels), so every chain stores a new object."""
    from PIL import Image

    buf = io.BytesIO()
    Image.frombytes("RGB", (64, 64), os.urandom(64 * 64 * 3)).save(buf, "PNG")
    return buf.getvalue()


def _envelope_queue(value: Any) -> Any:
    return value.get("queue") if isinstance(value, dict) else None


def cmd_chains(args: argparse.Namespace) -> int:
    from celery import chain

    app = _app()
    run = os.urandom(4).hex()
    images = {f"/chain-{run}-{n}.png": _noise_png() for n in range(args.count)}
    hits: dict[str, int] = dict.fromkeys(images, 0)

    class Images(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            body = images.get(path)
            if body is None:
                self.send_error(404)
                return
            hits[path] += 1
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *a: Any) -> None:
            pass

    server = ThreadingHTTPServer((args.serve_address, 0), Images)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://{args.serve_address}:{server.server_address[1]}"
    started = time.monotonic()
    sent = {
        path: chain(
            app.signature(CRAWL, args=(base + path,)), app.signature(VALIDATE)
        ).apply_async()
        for path in images
    }
    outcomes: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + args.timeout
    for path, result in sent.items():
        try:
            value = result.get(timeout=max(1.0, deadline - time.monotonic()), propagate=False)
        except Exception as exc:  # a timeout is an outcome here
            outcomes[path] = {"state": result.state, "error": type(exc).__name__}
            continue
        crawl = result.parent
        # Celery sends a chain's next task before it stores the current one's result.
        crawl_value = (
            crawl.get(timeout=max(1.0, deadline - time.monotonic()), propagate=False)
            if crawl is not None
            else None
        )
        data = value.get("data") if isinstance(value, dict) else None
        first = (data.get("outcomes") or [{}])[0] if isinstance(data, dict) else {}
        outcomes[path] = {
            "state": result.state,
            "crawl_state": crawl.state if crawl is not None else None,
            "crawl_queue": _envelope_queue(crawl_value),
            "validation_queue": _envelope_queue(value),
            "validation": first.get("status") if isinstance(first, dict) else None,
            "error": None if result.state == "SUCCESS" else str(value)[:200],
        }
    server.shutdown()
    good = [
        p
        for p, o in outcomes.items()
        if o["state"] == "SUCCESS"
        and o.get("crawl_state") == "SUCCESS"
        and o.get("crawl_queue") == "crawl"
        and o.get("validation_queue") == "validation"
        and o.get("validation") == "valid"
        and hits[p] >= 1
    ]
    bad = {p: o for p, o in outcomes.items() if p not in good}
    doc = {
        "chains": len(images),
        "succeeded": len(good),
        "seconds": round(time.monotonic() - started, 1),
        "failed": dict(list(bad.items())[:5]),
    }
    return _emit(doc, len(good) == len(images))


def cmd_grpc_refuses(args: argparse.Namespace) -> int:
    doc: dict[str, Any] = {"host": args.host, "port": args.port}
    with socket.create_connection((args.host, args.port), timeout=5) as raw:
        raw.sendall(H2_PREFACE)
        try:
            reply = raw.recv(64)
        except OSError:
            reply = b""
    # An HTTP/2 server answers the preface with a SETTINGS frame (type 4 in byte 3).
    doc["plaintext_answered"] = len(reply) >= 9 and reply[3] == 0x04
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    try:
        with (
            socket.create_connection((args.host, args.port), timeout=5) as raw,
            context.wrap_socket(raw, server_hostname=args.host) as tls,
        ):
            tls.sendall(H2_PREFACE)
            # TLS 1.3: the server's "certificate required" alert arrives with the first read.
            data = tls.recv(64)
        doc["tls_without_certificate"] = f"accepted ({len(data)} bytes back)"
        accepted = len(data) > 0
    except (ssl.SSLError, OSError) as exc:
        doc["tls_without_certificate"] = f"refused: {exc}"
        accepted = False
    return _emit(doc, not doc["plaintext_answered"] and not accepted)


def _proc_address(hex_address: str) -> str:
    """/proc/net/tcp{,6}'s local address (host-order hex words) as address:port."""
    address, port = hex_address.split(":")
    raw = bytes.fromhex(address)
    if len(raw) == 4:
        host = socket.inet_ntop(socket.AF_INET, raw[::-1])
    else:
        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        host = socket.inet_ntop(socket.AF_INET6, words)
    return f"{host}:{int(port, 16)}"


def cmd_listeners(args: argparse.Namespace) -> int:
    inodes = set()
    for fd in Path(f"/proc/{args.pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:[") : -1])
    listening = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{args.pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                listening.add(_proc_address(fields[1]))
    return _emit({"pid": args.pid, "listening": sorted(listening)}, bool(listening))


def cmd_slowhttp(args: argparse.Namespace) -> int:
    body = _png()
    marker = Path(args.marker)

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with marker.open("a") as seen:
                seen.write(self.path + "\n")
            time.sleep(args.delay)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *a: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", args.port), Slow).serve_forever()
    return 0


def _connect(target: str, timeout: float) -> str:
    host, _, port = target.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return "open"
    except ConnectionRefusedError:
        return "refused"
    except TimeoutError:
        return "timeout"
    except OSError as exc:
        return f"error: {exc}"


def cmd_connect(args: argparse.Namespace) -> int:
    """A firewall's drop shows as a timeout: a refusal would mean the SYN got through."""
    want = "open" if args.expect == "open" else "timeout"
    with ThreadPoolExecutor(max_workers=16) as pool:
        results = pool.map(lambda t: _connect(t, args.timeout), args.targets)
        seen = dict(zip(args.targets, results, strict=True))
    wrong = {t: got for t, got in seen.items() if got != want}
    return _emit({"seen": seen, "wrong": wrong}, not wrong)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("queue")
    q.add_argument("queue")
    q.add_argument("--count", type=int, default=3)
    q.add_argument("--timeout", type=float, default=60)
    s = sub.add_parser("submit")
    s.add_argument("--out", required=True)
    s.add_argument("--url")
    s.add_argument("--queue", default="crawl")
    s.add_argument("--crawl-queue", default="crawl")
    s.add_argument("--count", type=int, default=0)
    s.add_argument("--crawls", type=int, default=1, help="crawls of --url to send")
    s.add_argument("--marker")
    s.add_argument("--timeout", type=float, default=60)
    c = sub.add_parser("collect")
    c.add_argument("--ids", nargs="+", required=True)
    c.add_argument("--timeout", type=float, default=120)
    c.add_argument("--since", type=float, help="also report the first completion after this")
    c.add_argument("--after", type=float, help="... and the first of a task published after this")
    c.add_argument("--times", help="stream's F.times: when each publish returned")
    c.add_argument("--runs", help="events' counts: tell never-ran from result-lost")
    for name in ("redis-noauth", "redis-closed"):
        r = sub.add_parser(name)
        r.add_argument("--host", required=True)
        r.add_argument("--port", type=int, default=6379)
        r.add_argument("--cafile", help="speak TLS, verifying the server with this CA")
    h = sub.add_parser("slowhttp")
    h.add_argument("--port", type=int, default=8089)
    h.add_argument("--delay", type=float, default=8)
    h.add_argument("--marker", required=True)
    w = sub.add_parser("wait-requests")
    w.add_argument("--marker", required=True)
    w.add_argument("--count", type=int, required=True)
    w.add_argument("--timeout", type=float, default=60)
    rq = sub.add_parser("requests")
    rq.add_argument("--marker", required=True)
    f = sub.add_parser("flood")
    f.add_argument("--out", required=True)
    f.add_argument("--count", type=int, required=True)
    f.add_argument("--queue", action="append")
    f.add_argument("--priority", type=int, action="append")
    st = sub.add_parser("stream")
    st.add_argument("--out", required=True)
    st.add_argument("--seconds", type=float, required=True)
    st.add_argument("--rate", type=float, default=20)
    st.add_argument("--queue", action="append")
    sub.add_parser("broker-state")
    e = sub.add_parser("events")
    e.add_argument("--out", required=True)
    e.add_argument("--stop", required=True)
    d = sub.add_parser("dupes")
    d.add_argument("--ids", nargs="+", required=True)
    d.add_argument("--runs", required=True)
    ch = sub.add_parser("chains")
    ch.add_argument("--serve-address", required=True)
    ch.add_argument("--count", type=int, default=20)
    ch.add_argument("--timeout", type=float, default=180)
    ls = sub.add_parser("listeners")
    ls.add_argument("--pid", type=int, required=True)
    g = sub.add_parser("grpc-refuses")
    g.add_argument("--host", required=True)
    g.add_argument("--port", type=int, required=True)
    cn = sub.add_parser("connect")
    cn.add_argument("--expect", choices=["open", "dropped"], required=True)
    cn.add_argument("--timeout", type=float, default=3)
    cn.add_argument("targets", nargs="+")
    args = p.parse_args()
    handler = {
        "queue": cmd_queue,
        "submit": cmd_submit,
        "collect": cmd_collect,
        "redis-noauth": cmd_redis_noauth,
        "redis-closed": cmd_redis_closed,
        "slowhttp": cmd_slowhttp,
        "wait-requests": cmd_wait_requests,
        "requests": cmd_requests,
        "flood": cmd_flood,
        "stream": cmd_stream,
        "broker-state": cmd_broker_state,
        "events": cmd_events,
        "dupes": cmd_dupes,
        "chains": cmd_chains,
        "grpc-refuses": cmd_grpc_refuses,
        "listeners": cmd_listeners,
        "connect": cmd_connect,
    }[args.cmd]
    return handler(args)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Skip interpreter teardown: celery's AsyncResult.__del__ talks to Redis while modules
    # are being torn down and prints a harmless but alarming traceback.
    os._exit(code)
