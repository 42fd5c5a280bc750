"""Check one stored image with Pillow, reading the header before decoding anything.

The pixel-count guard runs on the header's dimensions, before any decode, so a
decompression bomb is refused without allocating its pixels.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from pixcrawler.celery_core.config import CelerySettings
from pixcrawler.celery_core.errors import TaskError

# Our own guard (VALIDATION_MAX_PIXELS) runs first; Pillow's stays as a backstop.
Image.MAX_IMAGE_PIXELS = max(Image.MAX_IMAGE_PIXELS or 0, 1)


@dataclass(frozen=True)
class ImageInfo:
    format: str
    width: int
    height: int
    mode: str
    sha256: str


def inspect_image(data: bytes, settings: CelerySettings) -> ImageInfo:
    """Validate *data*; raise TaskError with a specific code when it is not acceptable."""
    try:
        with Image.open(io.BytesIO(data)) as probe:
            fmt = probe.format or "UNKNOWN"
            width, height = probe.size
            if width * height > settings.validation_max_pixels:
                raise TaskError(
                    "decompression_bomb",
                    f"{width}x{height} exceeds {settings.validation_max_pixels} pixels",
                    {"width": width, "height": height},
                )
            if fmt not in settings.validation_allowed_formats:
                raise TaskError("format_not_allowed", f"format {fmt} is not allowed")
            if width < settings.validation_min_width or height < settings.validation_min_height:
                raise TaskError(
                    "too_small",
                    f"{width}x{height} is below the minimum "
                    f"{settings.validation_min_width}x{settings.validation_min_height}",
                    {"width": width, "height": height},
                )
            probe.verify()
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # a full decode catches truncated and corrupt pixel data
            mode = image.mode
    except TaskError:
        raise
    except UnidentifiedImageError:
        raise TaskError("not_an_image", "Pillow cannot identify this file as an image") from None
    except Image.DecompressionBombError as exc:
        raise TaskError("decompression_bomb", str(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise TaskError("corrupt_image", f"{type(exc).__name__}: {exc}") from None
    return ImageInfo(fmt, width, height, mode, hashlib.sha256(data).hexdigest())
