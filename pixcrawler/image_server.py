"""The image the verification's crawl->validate chain fetches, and the server that serves it.

It serves from the verifying host, so a chain can be tested without any outside URL;
the workers fetch it like any crawl (``pixcrawler verify`` checks that they may).
"""

from __future__ import annotations

import io
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from secrets import token_bytes, token_hex
from typing import Any

from pixcrawler.celery_core.config import CelerySettings, env_name

#: Side of the square of random pixels that makes each test image new (JPEG's blocks
#: are 8x8, so the noise survives its compression).
NOISE_SIDE = 8


class NoAcceptableFormat(LookupError):
    """The validator would refuse every format this module can write."""


def probe_image(settings: CelerySettings) -> tuple[bytes, str]:
    """A new image the validator accepts under *settings*: (bytes, MIME type).

    New on every call (a corner of random pixels), so its SHA-256 has never been seen:
    a chain that crawled an image already in the store, or already registered by the
    validator, would prove nothing about this run's crawl, store and validation.
    """
    from PIL import Image

    side = max(64, settings.validation_min_width, settings.validation_min_height)
    formats = {"PNG": "image/png", "JPEG": "image/jpeg", "GIF": "image/gif", "WEBP": "image/webp"}
    allowed = [f for f in settings.validation_allowed_formats if f in formats]
    if not allowed:
        raise NoAcceptableFormat(
            f"{env_name('validation_allowed_formats')} allows none of {', '.join(formats)}"
        )
    fmt = "PNG" if "PNG" in allowed else allowed[0]
    image = Image.new("RGB", (side, side))
    image.putdata([((x * 4) % 256, (y * 4) % 256, 128) for y in range(side) for x in range(side)])
    noise = Image.frombytes("RGB", (NOISE_SIDE, NOISE_SIDE), token_bytes(NOISE_SIDE**2 * 3))
    image.paste(noise, (0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue(), formats[fmt]


@contextmanager
def serve_image(address: str, body: bytes, content_type: str) -> Iterator[tuple[str, list[int]]]:
    """Serve *body* at one unguessable path for the duration of the block.

    Yields the URL and a list that receives one entry per request served, so a failure
    can say whether a worker reached the server at all.
    """
    path = f"/pixcrawler-verify-{token_hex(8)}.img"
    hits: list[int] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != path:
                self.send_error(404)
                return
            hits.append(1)
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: stdout belongs to the check lines (and to --json)."""

    server_class = ThreadingHTTPServer
    if ":" in address:

        class V6Server(ThreadingHTTPServer):
            address_family = socket.AF_INET6

        server_class = V6Server
    server = server_class((address, 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="verify-http", daemon=True
    )
    thread.start()
    host = f"[{address}]" if ":" in address else address
    try:
        yield f"http://{host}:{port}{path}", hits
    finally:
        server.shutdown()
        server.server_close()
