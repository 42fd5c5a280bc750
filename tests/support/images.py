"""Images generated for tests: real encoder output, never checked-in binaries.

Each helper takes a *seed* so a test gets content no other test produced: the validator
remembers every hash it has seen, so reusing bytes across tests would turn a "valid"
expectation into "duplicate".
"""

from __future__ import annotations

import io
import random
import struct
import zlib

from PIL import Image


def _noise(seed: str, size: tuple[int, int], mode: str = "RGB") -> Image.Image:
    rng = random.Random(seed)
    channels = len(mode)
    raw = rng.randbytes(size[0] * size[1] * channels)
    return Image.frombytes(mode, size, raw)


def png(seed: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    _noise(seed, size).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(seed: str, size: tuple[int, int] = (64, 48)) -> bytes:
    buf = io.BytesIO()
    _noise(seed, size).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def tiny_png(seed: str) -> bytes:
    """Below the default 32x32 minimum."""
    return png(seed, (8, 8))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A valid 1-bit greyscale PNG whose pixels would need hundreds of MB once decoded.

    Built row by row with a streaming compressor, so the test itself never holds the
    decoded image: the file is a few tens of KB.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    compressor = zlib.compressobj(9)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    parts = [compressor.compress(row) for _ in range(height)]
    parts.append(compressor.flush())
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", b"".join(parts))
        + _chunk(b"IEND", b"")
    )
