"""Image preprocessing for ELoFTR and the inverse mapping of keypoints.

The network has no mask input, so both images are *resized* (not padded) to one common size whose
sides are multiples of 32; the long side is ``resolution`` and the aspect ratio is as close as
possible to that of the two inputs. Keypoints come back per image with separate x/y scale factors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from matchanything_ros.matching.base import to_gray_uint8

#: both network sides are multiples of this (1/8 coarse grid, then 4x4 attention aggregation)
SIZE_DIVISOR = 32
#: smallest side accepted (the coarse grid must keep cells after the 2-cell border removal)
MIN_SIDE = 64


def network_size(shape0: tuple[int, ...], shape1: tuple[int, ...], resolution: int) -> tuple[int, int]:
    """Common network input (height, width) for two images of shapes (H, W[, C]).

    The long side is ``resolution``; the short side follows the geometric mean of the two aspect
    ratios, rounded to a multiple of 32 (at least 64).
    """
    resolution = int(resolution)
    if resolution < MIN_SIDE or resolution % SIZE_DIVISOR:
        raise ValueError(
            f"resolution {resolution} must be a multiple of {SIZE_DIVISOR} and at least {MIN_SIDE} "
            f"(e.g. 512, 640, 832)"
        )
    for shape in (shape0, shape1):
        if len(shape) < 2 or shape[0] < 1 or shape[1] < 1:
            raise ValueError(f"empty image of shape {tuple(shape)}")
    aspect = math.sqrt((shape0[1] / shape0[0]) * (shape1[1] / shape1[0]))  # width / height
    short = resolution / aspect if aspect >= 1 else resolution * aspect
    short = max(MIN_SIDE, min(resolution, int(round(short / SIZE_DIVISOR)) * SIZE_DIVISOR))
    return (short, resolution) if aspect >= 1 else (resolution, short)


@dataclass
class PreparedPair:
    """Network inputs and how to map their keypoints back to the original images."""

    image0: np.ndarray  # float32 (1, 1, h, w) in [0, 1]
    image1: np.ndarray
    size: tuple[int, int]  # (h, w) network input
    scale0: tuple[float, float]  # (sx, sy): original pixels per network pixel, image 0
    scale1: tuple[float, float]

    def to_original(self, kpts: np.ndarray, which: int) -> np.ndarray:
        """Network-pixel (x, y) -> original-pixel (x, y), pixel centres at integers: the exact
        inverse of cv2.resize's centre mapping, x = (x' + 0.5) * s - 0.5."""
        sx, sy = self.scale0 if which == 0 else self.scale1
        out = np.empty_like(kpts, dtype=np.float32)
        out[:, 0] = (kpts[:, 0] + 0.5) * sx - 0.5
        out[:, 1] = (kpts[:, 1] + 0.5) * sy - 0.5
        return out


def _resize_gray(gray: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    import cv2

    h, w = size
    # area averaging when shrinking (no aliasing), bilinear when enlarging
    shrinking = gray.shape[0] > h or gray.shape[1] > w
    resized = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
    return (resized.astype(np.float32) / 255.0)[None, None]


def prepare_pair(image0: np.ndarray, image1: np.ndarray, resolution: int) -> PreparedPair:
    """uint8 (H, W) gray or (H, W, 3) BGR images of any sizes -> grayscale [0, 1] network inputs
    of one common size (see :func:`network_size`)."""
    gray0, gray1 = to_gray_uint8(image0), to_gray_uint8(image1)
    size = network_size(gray0.shape, gray1.shape, resolution)
    h, w = size
    return PreparedPair(
        image0=_resize_gray(gray0, size),
        image1=_resize_gray(gray1, size),
        size=size,
        scale0=(gray0.shape[1] / w, gray0.shape[0] / h),
        scale1=(gray1.shape[1] / w, gray1.shape[0] / h),
    )
