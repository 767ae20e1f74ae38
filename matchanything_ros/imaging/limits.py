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
#: the byte limit that goes with ``max_pixels``: 8 bytes per pixel (16-bit BGRA), so a frame of
#: wide pixels (64FC4: 32 bytes each) cannot hold 4x the memory the pixel limit suggests
MAX_BYTES_PER_PIXEL = 8


@dataclass(frozen=True)
class SizeLimits:
    max_pixels: int = DEFAULT_MAX_PIXELS
    min_side: int = DEFAULT_MIN_SIDE


def size_problem(width: int, height: int, limits: SizeLimits, nbytes: int | None = None) -> tuple[str, str] | None:
    """``(reason key, message)`` when ``width`` x ``height`` (and ``nbytes`` of pixel data, when
    known) is outside ``limits``, else None.

    Reason keys: ``too_large`` (more than ``max_pixels``, or more than ``max_pixels`` x
    MAX_BYTES_PER_PIXEL bytes), ``too_small`` (a side below ``min_side``)."""
    width, height = int(width), int(height)
    if width * height > limits.max_pixels:
        return "too_large", (f"image {width}x{height} has {width * height} pixels, "
                             f"more than the limit of {limits.max_pixels}")
    if nbytes is not None and nbytes > limits.max_pixels * MAX_BYTES_PER_PIXEL:
        return "too_large", (f"image {width}x{height} holds {nbytes} bytes, more than the limit of "
                             f"{limits.max_pixels * MAX_BYTES_PER_PIXEL} ({MAX_BYTES_PER_PIXEL} bytes x max pixels)")
    if min(width, height) < limits.min_side:
        return "too_small", f"image {width}x{height} has a side below the minimum of {limits.min_side} px"
    return None


def _header_size(source, formats: tuple[str, ...] | None = None) -> tuple[int, int] | None:
    """(width, height) from the image header in ``source`` (a path or a binary file object) by
    Pillow without decoding pixels; None when Pillow does not know it (or it is not one of
    ``formats``). A header claiming more pixels than Pillow's own bomb limit still yields its
    size: the callers apply our limit."""
    from PIL import Image, UnidentifiedImageError

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None  # we apply our own limit; Pillow's would hide the size
        try:
            with Image.open(source, formats=formats) as image:
                return int(image.width), int(image.height)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def file_image_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) from an image file's header without decoding its pixels (Pillow), or
    None when Pillow does not know the format (callers refuse such a file: a format whose size
    cannot be read first, Radiance HDR say, may decode to gigabytes)."""
    return _header_size(path)


#: formats a sensor_msgs/CompressedImage may carry (image_transport's compressed: JPEG or PNG)
COMPRESSED_FORMATS = ("JPEG", "PNG")


def compressed_image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a JPEG or PNG held in ``data``, without decoding its
    pixels (Pillow); None for anything else (a format whose size cannot be read first is never
    decoded)."""
    import io

    return _header_size(io.BytesIO(data), COMPRESSED_FORMATS)


def check_image_file(path: str | Path, limits: SizeLimits | None = None) -> tuple[str, str] | None:
    """``(reason key, message)`` when the image file ``path`` must not be decoded, else None:
    ``no_header`` (a header Pillow cannot read: never decoded unchecked) or a
    :func:`size_problem` of its header's size."""
    size = file_image_size(path)
    if size is None:
        return "no_header", "no image header this tool reads before decoding (PNG, JPEG, TIFF, PGM, BMP, WebP)"
    return size_problem(*size, limits or SizeLimits())
