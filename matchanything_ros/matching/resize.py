"""Resizing images for a matcher and mapping keypoints back to original pixels."""
from __future__ import annotations

import numpy as np


def fit_long_side(width: int, height: int, long_side: int, multiple: int = 1, min_side: int = 0) -> tuple[int, int]:
    """(width, height) scaled so the longer side is ``long_side``, aspect kept, each side
    rounded to a multiple of ``multiple`` (at least one multiple, and at least ``min_side``
    rounded up: a sliver is stretched, which the separate x/y scales undo)."""
    scale = long_side / max(width, height)
    floor = max(multiple, -(-min_side // multiple) * multiple)
    w = max(floor, int(round(width * scale / multiple)) * multiple)
    h = max(floor, int(round(height * scale / multiple)) * multiple)
    return w, h


def resize_for_matcher(
    image: np.ndarray, long_side: int, multiple: int = 1, min_side: int = 0
) -> tuple[np.ndarray, tuple[float, float]]:
    """Resize to :func:`fit_long_side`; returns the image and (sx, sy) = original / resized."""
    import cv2

    h, w = image.shape[:2]
    nw, nh = fit_long_side(w, h, long_side, multiple, min_side)
    if (nw, nh) == (w, h):
        return image, (1.0, 1.0)
    interp = cv2.INTER_AREA if nw < w else cv2.INTER_LINEAR
    return cv2.resize(image, (nw, nh), interpolation=interp), (w / nw, h / nh)


def to_original(kpts: np.ndarray, scale: tuple[float, float]) -> np.ndarray:
    """Keypoints in resized pixels -> original pixels. OpenCV's resize aligns pixel *areas*,
    so with centres at integer coordinates x_orig = (x + 0.5) * s - 0.5."""
    k = np.asarray(kpts, dtype=np.float64).reshape(-1, 2)
    s = np.asarray(scale, dtype=np.float64)
    return ((k + 0.5) * s - 0.5).astype(np.float32)
