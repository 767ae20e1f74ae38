"""Image size limits, checked before any pixel is decoded (decompression bombs, slivers).

A 389 KB PNG can decode to 20000x20000 (5.8 GB, 88 s in ``match``), and an image a few pixels
wide is useless to every matcher. Both the node (on the message header) and the CLI (on the
file header, read by Pillow without decoding) refuse such images with a clear reason.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

#: defaults shared by the node parameters ``limits.*`` and the CLI options
DEFAULT_MAX_PIXELS = 40_000_000  # 40 MP: above any visible/thermal camera we know of
DEFAULT_MIN_SIDE = 16  # px


@dataclass(frozen=True)
class SizeLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE


def size_problem(width: int, height: int, limits: SizeLimits) -> tuple[str, str] | None:
    """``(reason key, message)`` when ``width`` x ``height`` is outside ``limits``, else None.

    Reason keys: ``too_large`` (more than ``max_pixels``), ``too_small`` (a side below
    ``min_side``)."""
    width, height = int(width), int(height)
    if width * height > limits.max_pixels:
        return "too_large", (f"image {width}x{height} has {width * height} pixels, "
                             f"more than the limit of {limits.max_pixels}")
    if min(width, height) < limits.min_side:
        return "too_small", f"image {width}x{height} has a side below the minimum of {limits.min_side} px"
    return None


def file_image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header without decoding its pixels (Pillow), or
    None when Pillow does not know the format (the caller decodes and checks afterwards).

    A header claiming more pixels than Pillow's own bomb limit still yields its size."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # we apply our own limit; Pillow's would hide the size
        try:
            with Image.open(path) as image:
                return int(image.width), int(image.height)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved
