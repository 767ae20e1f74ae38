"""sensor_msgs/Image buffers <-> numpy, without cv_bridge.

A ROS image is ``(encoding, width, height, step, is_bigendian, data)``: ``height`` rows of
``step`` bytes each, of which the first ``width * channels * itemsize`` bytes are pixels and the
rest is row padding. This module converts such a buffer to a ``(H, W)`` / ``(H, W, C)`` numpy
array in native byte order and back, and offers two small colour helpers (:func:`to_bgr8`,
:func:`to_mono`). It is written here rather than taken from cv_bridge because the PyPI
``cv-bridge`` package is a ROS 1 port that maps ``16UC1`` to the wrong type, and because the
ROS-free core, bag replay and the rclpy node all need the same code without a ROS install.

Supported encodings: ``rgb8 bgr8 rgba8 bgra8 rgb16 bgr16 rgba16 bgra16 mono8 mono16`` and every
OpenCV-style ``{8,16,32,64}{U,S,F}C{1..4}`` name (``8UC3``, ``16UC1``, ``32FC1``, ...).
Bayer and YUV encodings are not supported.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np


class ImageFormatError(ValueError):
    """An image buffer or array does not fit its encoding (unknown encoding, bad sizes, ...)."""


# Named ROS encodings: name -> (numpy dtype, channels).
_NAMED = {
    "rgb8": (np.uint8, 3),
    "bgr8": (np.uint8, 3),
    "rgba8": (np.uint8, 4),
    "bgra8": (np.uint8, 4),
    "rgb16": (np.uint16, 3),
    "bgr16": (np.uint16, 3),
    "rgba16": (np.uint16, 4),
    "bgra16": (np.uint16, 4),
    "mono8": (np.uint8, 1),
    "mono16": (np.uint16, 1),
}
_GENERIC = re.compile(r"^(8|16|32|64)([USF])C([1-4])$")
_GENERIC_DTYPES = {
    ("8", "U"): np.uint8,
    ("8", "S"): np.int8,
    ("16", "U"): np.uint16,
    ("16", "S"): np.int16,
    ("32", "S"): np.int32,
    ("32", "F"): np.float32,
    ("64", "F"): np.float64,
}
# Channel order of colour encodings; OpenCV-style nC3 / nC4 are taken as BGR / BGRA, as in
# OpenCV and cv_bridge.
_RGB_ORDER = {"rgb8", "rgba8", "rgb16", "rgba16"}


def encoding_info(encoding: str) -> tuple[np.dtype, int]:
    """(numpy dtype, number of channels) of a ROS image encoding; ImageFormatError if unknown."""
    if not isinstance(encoding, str):
        raise ImageFormatError(f"image encoding must be a string, got {type(encoding).__name__}")
    if encoding in _NAMED:
        dtype, channels = _NAMED[encoding]
        return np.dtype(dtype), channels
    m = _GENERIC.match(encoding)
    if m and (m.group(1), m.group(2)) in _GENERIC_DTYPES:
        return np.dtype(_GENERIC_DTYPES[(m.group(1), m.group(2))]), int(m.group(3))
    raise ImageFormatError(
        f"unsupported image encoding {encoding!r}; supported: {', '.join(_NAMED)} and "
        "OpenCV-style names such as 8UC1, 8UC3, 16UC1, 16SC1, 32FC1, 64FC1 (bayer/yuv are not "
        "supported: debayer upstream, e.g. with image_proc)"
    )


def supported_encodings() -> list[str]:
    """Every encoding name this module converts."""
    generic = [f"{b}{k}C{c}" for (b, k) in _GENERIC_DTYPES for c in range(1, 5)]
    return list(_NAMED) + generic


@dataclass
class ImageBuffer:
    """The fields of a sensor_msgs/Image (without header), ready to copy into a message."""

    encoding: str
    width: int
    height: int
    step: int
    is_bigendian: bool
    data: bytes


def _as_bytes(data: Any) -> np.ndarray:
    """Accept bytes, bytearray, memoryview, array.array, list of ints or a uint8 numpy array
    (rclpy and rosbags give different types) and return a flat uint8 view."""
    if isinstance(data, np.ndarray):
        if data.dtype != np.uint8:
            raise ImageFormatError(f"image data must be bytes / uint8, got numpy dtype {data.dtype}")
        return data.reshape(-1)
    if isinstance(data, (bytes, bytearray, memoryview)):
        return np.frombuffer(data, dtype=np.uint8)
    try:
        return np.frombuffer(memoryview(data), dtype=np.uint8)  # array.array('B'), buffers
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def image_to_numpy(
    encoding: str, width: int, height: int, step: int, is_bigendian: bool, data: Any, *, copy: bool = True
) -> np.ndarray:
    """Decode a sensor_msgs/Image buffer to a numpy array in native byte order.

    Returns (H, W) for one-channel encodings, (H, W, C) otherwise, with the channel order of the
    encoding (``rgb8`` stays RGB). The result owns its memory (row padding removed); with
    ``copy=False`` it is a view of ``data`` (possibly read-only) whenever rows are unpadded and the
    byte order is native, which saves a copy per image on the node's hot path. Raises
    ImageFormatError for an unknown encoding, empty data, or sizes that do not add up.
    """
    dtype, channels = encoding_info(encoding)
    width, height, step = int(width), int(height), int(step)
    if width <= 0 or height <= 0:
        raise ImageFormatError(f"image {encoding!r} has empty size {width}x{height}")
    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageFormatError(f"image {encoding!r} {width}x{height} has no data")
    row_bytes = width * channels * dtype.itemsize
    if step < row_bytes:
        raise ImageFormatError(
            f"image step {step} is smaller than width*pixel size = {width}*{channels * dtype.itemsize} "
            f"= {row_bytes} bytes for encoding {encoding!r}"
        )
    if buf.size != step * height:
        raise ImageFormatError(
            f"image data has {buf.size} bytes but step*height = {step}*{height} = {step * height} "
            f"(encoding {encoding!r}, {width}x{height})"
        )
    rows = buf.reshape(height, step)[:, :row_bytes]
    wire = dtype.newbyteorder(">" if is_bigendian else "<")
    pixels = np.ascontiguousarray(rows).view(wire).reshape(height, width, channels)
    out = pixels.astype(dtype.newbyteorder("="), copy=copy)
    return out[:, :, 0] if channels == 1 else out


def numpy_to_image(
    array: np.ndarray, encoding: str, *, is_bigendian: bool = False, step: int | None = None
) -> ImageBuffer:
    """Encode a numpy array as sensor_msgs/Image fields.

    The array's dtype and channel count must match ``encoding`` exactly (no silent conversion);
    (H, W) and (H, W, 1) are both accepted for one-channel encodings. ``step`` (bytes per row,
    default: no padding) may exceed the packed row size; padding bytes are zero. ``is_bigendian``
    selects the byte order written to ``data``.
    """
    dtype, channels = encoding_info(encoding)
    array = np.asarray(array)
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] != channels:
        raise ImageFormatError(
            f"encoding {encoding!r} needs an array of shape (H, W{'' if channels == 1 else f', {channels}'}), "
            f"got shape {array.shape}"
        )
    if array.dtype != dtype:
        raise ImageFormatError(
            f"encoding {encoding!r} needs dtype {dtype}, got {array.dtype}; convert the array first "
            "(e.g. normalize_thermal for 16-bit -> 8-bit)"
        )
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageFormatError(f"cannot encode an empty image of shape {array.shape}")
    row_bytes = width * channels * dtype.itemsize
    step = row_bytes if step is None else int(step)
    if step < row_bytes:
        raise ImageFormatError(f"step {step} is smaller than the packed row size {row_bytes} bytes")
    wire = array.astype(dtype.newbyteorder(">" if is_bigendian else "<"), copy=False)
    packed = np.ascontiguousarray(wire).view(np.uint8).reshape(height, row_bytes)
    if step > row_bytes:
        padded = np.zeros((height, step), dtype=np.uint8)
        padded[:, :row_bytes] = packed
        packed = padded
    return ImageBuffer(encoding, int(width), int(height), step, bool(is_bigendian), packed.tobytes())


def msg_to_numpy(msg: Any, *, copy: bool = True) -> np.ndarray:
    """:func:`image_to_numpy` on anything with sensor_msgs/Image fields (rclpy or rosbags)."""
    return image_to_numpy(msg.encoding, msg.width, msg.height, msg.step, msg.is_bigendian, msg.data, copy=copy)


def decode_compressed(data: Any) -> np.ndarray:
    """Decode a sensor_msgs/CompressedImage payload (JPEG / PNG, including 16-bit PNG) with
    OpenCV, keeping bit depth and channels; colour comes back BGR. ImageFormatError on failure."""
    import cv2

    buf = _as_bytes(data)
    if buf.size == 0:
        raise ImageFormatError("compressed image has no data")
    image = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageFormatError(
            f"could not decode compressed image ({buf.size} bytes); expected JPEG or PNG "
            "(compressedDepth / theora transports are not supported)"
        )
    return image


def _check_shape(array: np.ndarray, encoding: str) -> tuple[np.ndarray, int]:
    dtype, channels = encoding_info(encoding)
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    got = 1 if array.ndim == 2 else (array.shape[2] if array.ndim == 3 else -1)
    if got != channels:
        raise ImageFormatError(
            f"array of shape {array.shape} does not match encoding {encoding!r} ({channels} channel(s))"
        )
    if array.dtype != dtype:
        raise ImageFormatError(f"array dtype {array.dtype} does not match encoding {encoding!r} ({dtype})")
    return array, channels


def to_bgr8(array: np.ndarray, encoding: str, *, copy: bool = True) -> np.ndarray:
    """8-bit colour or mono image -> (H, W, 3) uint8 BGR (a copy; with ``copy=False`` a BGR input
    comes back as it is, for callers that already own the array).

    Only 8-bit encodings are converted (rgb8, bgr8, rgba8, bgra8, mono8, 8UC1, 8UC3 (taken as
    BGR), 8UC4 (BGRA)); alpha is dropped. 16-bit and float images raise ImageFormatError: they
    need a contrast stretch, which is :func:`matchanything_ros.imaging.thermal.normalize_thermal`'s
    job, not a fixed scale chosen here.
    """
    import cv2

    dtype, _ = encoding_info(encoding)
    if dtype != np.uint8:
        raise ImageFormatError(
            f"to_bgr8 converts 8-bit encodings only, got {encoding!r}; stretch 16-bit/float images "
            "to uint8 with normalize_thermal(image, ThermalConfig(...)) first"
        )
    array, channels = _check_shape(array, encoding)
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(array), cv2.COLOR_GRAY2BGR)
    if channels == 2:
        raise ImageFormatError(f"cannot convert two-channel encoding {encoding!r} to BGR")
    rgb = encoding in _RGB_ORDER
    if channels == 3:
        if rgb:
            return cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
        return array.copy() if copy else array
    return cv2.cvtColor(array, cv2.COLOR_RGBA2BGR if rgb else cv2.COLOR_BGRA2BGR)


def to_mono(array: np.ndarray, encoding: str) -> np.ndarray:
    """Any supported image -> (H, W) single channel.

    One-channel encodings are returned unchanged in dtype (mono16 stays uint16, 32FC1 stays
    float32). Colour images become luma (ITU-R 601, OpenCV's cvtColor), keeping dtype for 8-bit,
    16-bit unsigned and 32-bit float; other colour depths raise ImageFormatError.
    """
    import cv2

    array, channels = _check_shape(array, encoding)
    if channels == 1:
        return array
    if channels == 2:
        raise ImageFormatError(f"cannot convert two-channel encoding {encoding!r} to mono")
    if array.dtype not in (np.uint8, np.uint16, np.float32):
        raise ImageFormatError(
            f"colour to mono supports 8U, 16U and 32F images, got {encoding!r} ({array.dtype})"
        )
    rgb = encoding in _RGB_ORDER
    if channels == 3:
        code = cv2.COLOR_RGB2GRAY if rgb else cv2.COLOR_BGR2GRAY
    else:
        code = cv2.COLOR_RGBA2GRAY if rgb else cv2.COLOR_BGRA2GRAY
    return cv2.cvtColor(np.ascontiguousarray(array), code)
