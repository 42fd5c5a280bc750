"""(c) Crawl throughput against a loopback image server that takes 100 ms per image.

The server runs in its own process (so its threads do not share the benchmark client's
GIL), answers ``/img/<n>.png`` with a distinct small PNG after sleeping ``DELAY``, keeps
connections alive, and listens with a deep backlog so a burst of new connections is not
held back by SYN retries. Every image is different, so every download is really stored.
"""

from __future__ import annotations

import contextlib
import io
import multiprocessing
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from PIL import Image

from benchmarks.batch import BatchResult, run_batch
from benchmarks.cases import BatchCase
from benchmarks.env import Bench

DELAY = 0.1
CRAWL_TASK = "builder.tasks.crawl_task"


def png(index: int) -> bytes:
    """A 48x48 PNG unique to *index* (colour from the index, one marker pixel)."""
    image = Image.new("RGB", (48, 48), (index % 256, (index // 256) % 256, 128))
    image.putpixel((index % 48, 0), (255, 255, 255))
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: TCP_NODELAY: with Nagle on, a response written in two sends (headers, then body)
    #: on a kept-alive connection waits for the client's delayed ACK of the first, about
    #: 40 ms per image on Linux, which the figures would charge to the crawler.
    disable_nagle_algorithm = True
    server: _Server

    def do_GET(self) -> None:
        name = self.path.rsplit("/", 1)[-1].removesuffix(".png")
        if not name.isdigit():
            self.send_error(404)
            return
        body = png(int(name))
        time.sleep(self.server.delay)
        # Status line, headers and body in one send (send_response/end_headers would
        # write the headers apart from the body).
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        self.answered()
        self.wfile.write(head + body)

    def answered(self) -> None:
        """Called just before the response is sent (benchmarks/polite.py counts there)."""

    def log_message(self, format: str, *args: Any) -> None:
        return


class _Server(ThreadingHTTPServer):
    request_queue_size = 512
    daemon_threads = True
    delay = DELAY


def _serve(port_queue: Any, delay: float) -> None:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.delay = delay
    port_queue.put(server.server_address[1])
    server.serve_forever()


@contextlib.contextmanager
def slow_image_server(delay: float = DELAY) -> Iterator[str]:
    """Base URL of a loopback server in a child process that waits *delay* s per image."""
    ctx = multiprocessing.get_context("spawn")
    ports: Any = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(ports, delay), daemon=True)
    proc.start()
    try:
        yield f"http://127.0.0.1:{ports.get(timeout=30)}"
    finally:
        proc.terminate()
        proc.join(10)


def _check(envelopes: list[Any]) -> None:
    bad = [e for e in envelopes if e["data"]["failed"] or not e["data"]["succeeded"]]
    if bad:
        raise RuntimeError(f"{len(bad)} crawls did not store every image: {bad[0]['data']!r}")


def chunks(items: list[Any], per_task: int) -> list[Any]:
    """One item per task as the seed sends them (*per_task* 1), else lists of *per_task*."""
    if per_task == 1:
        return items
    return [items[i : i + per_task] for i in range(0, len(items), per_task)]


def run_crawl(bench: Bench, case: BatchCase, base: str, first: int, n: int) -> BatchResult:
    """Crawl images first..first+n, *case.per_task* URLs per task."""
    profile = case.profile
    # Warm every pool process/thread: each opens its HTTP client on first use.
    w = max(20, profile.concurrency * profile.instances)
    warm = [f"{base}/img/{i}.png" for i in range(first, first + w)]
    urls = [f"{base}/img/{i}.png" for i in range(first + w, first + w + n)]
    return run_batch(
        bench,
        profile,
        queue="crawl",
        task=CRAWL_TASK,
        warmup=warm,  # one URL per task: every pool thread warms up
        payloads=chunks(urls, case.per_task),
        check=_check,
        label=case.label,
        items=n,
    )
