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
  collect --ids F                  every task recorded in F (or more files) succeeded
  redis-noauth --host H --port P   an unauthenticated PING is refused with an auth error
  redis-closed --host H --port P   nothing accepts a TCP connection there
  slowhttp --port P --delay S --marker M
                                   serve a PNG on 127.0.0.1 after S seconds; touch M on
                                   the first request (runs until killed)
"""

from __future__ import annotations

import argparse
import io
import json
import os
import socket
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

HEALTH = "celery_core.health_check"
CRAWL = "builder.tasks.crawl_task"


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
        try:
            value = res.get(timeout=max(1.0, deadline - time.monotonic()), propagate=False)
        except Exception as exc:  # a timeout is a result here, not a crash
            out[task_id] = {"state": res.state, "error": type(exc).__name__}
            continue
        queue = value.get("queue") if isinstance(value, dict) else None
        out[task_id] = {"state": res.state, "queue": queue}
    return out


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
        ids.append(app.send_task(CRAWL, args=[args.url], queue=args.crawl_queue).id)
    ids += [app.send_task(HEALTH, queue=args.queue).id for _ in range(args.count)]
    Path(args.out).write_text(json.dumps(ids))
    seen = True
    if args.marker:
        deadline = time.monotonic() + args.timeout
        while not Path(args.marker).exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        seen = Path(args.marker).exists()
    return _emit({"submitted": len(ids), "slow_request_seen": seen}, seen)


def cmd_collect(args: argparse.Namespace) -> int:
    ids: list[str] = []
    for f in args.ids:
        ids += json.loads(Path(f).read_text())
    results = _wait(ids, args.timeout)
    ok = all(r["state"] == "SUCCESS" for r in results.values())
    lost = [i for i, r in results.items() if r["state"] != "SUCCESS"]
    return _emit({"total": len(ids), "not_succeeded": lost, "results": results}, ok)


def cmd_redis_noauth(args: argparse.Namespace) -> int:
    import redis

    client = redis.Redis(host=args.host, port=args.port, socket_timeout=5)
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


def cmd_slowhttp(args: argparse.Namespace) -> int:
    body = _png()
    marker = Path(args.marker)

    class Slow(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            marker.touch()
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
    s.add_argument("--marker")
    s.add_argument("--timeout", type=float, default=60)
    c = sub.add_parser("collect")
    c.add_argument("--ids", nargs="+", required=True)
    c.add_argument("--timeout", type=float, default=120)
    for name in ("redis-noauth", "redis-closed"):
        r = sub.add_parser(name)
        r.add_argument("--host", required=True)
        r.add_argument("--port", type=int, default=6379)
    h = sub.add_parser("slowhttp")
    h.add_argument("--port", type=int, default=8089)
    h.add_argument("--delay", type=float, default=8)
    h.add_argument("--marker", required=True)
    args = p.parse_args()
    handler = {
        "queue": cmd_queue,
        "submit": cmd_submit,
        "collect": cmd_collect,
        "redis-noauth": cmd_redis_noauth,
        "redis-closed": cmd_redis_closed,
        "slowhttp": cmd_slowhttp,
    }[args.cmd]
    return handler(args)


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    # Skip interpreter teardown: celery's AsyncResult.__del__ talks to Redis while modules
    # are being torn down and prints a harmless but alarming traceback.
    os._exit(code)
