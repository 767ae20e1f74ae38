"""Image preprocessing for ELoFTR and the inverse mapping of keypoints.

Pixels are prepared exactly as the authors' Space does (``hloc/match_dense.match_images`` with
``confs['matchanything_eloftr']`` and the wrapper ``hloc/matchers/matchanything.py``): the RGB
image as float32, shrunk to a long side of at most 832 (``resize_max``), resized to the network
size with ``cv2.INTER_AREA`` (``INTER_LINEAR`` when either side grows), ``/255``, ``*255``, cast to
uint8 (truncating, so 254.99998 becomes 254), converted to grey by Pillow's ``L`` and ``/255``.
The network itself pads to a square with a mask (``ELoFTRConfig.pad_to_square``).

The network size is either fixed (the Space forces 640x480 whatever the aspect) or chosen per
pair: long side ``resolution``, aspect as close as possible to the two inputs', sides multiples
of 32. Keypoints come back per image with separate x/y scale factors.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: both network sides are multiples of this (1/8 coarse grid, then 4x4 attention aggregation)
SIZE_DIVISOR = 32
#: smallest side accepted (the coarse grid must keep cells after the 2-cell border removal)
MIN_SIDE = 64
#: the Space's ``resize_max``: larger images are first shrunk to this long side
RESIZE_MAX = 832


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


def _check_uint8(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        return image
    raise ValueError(f"expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def _cv2_area(image: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    """The Space's ``resize_image(image, size, "cv2_area")``: area, or bilinear if a side grows."""
    import cv2

    h, w = image.shape[:2]
    grows = w < size_wh[0] or h < size_wh[1]
    return cv2.resize(image, size_wh, interpolation=cv2.INTER_LINEAR if grows else cv2.INTER_AREA)


def authors_gray(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 (H, W) grey or (H, W, 3) BGR -> float32 (1, 1, h, w) network input in [0, 1], pixel
    for pixel what the authors' Space feeds its network for ``size`` = (h, w)."""
    from PIL import Image

    image = _check_uint8(image)
    # a grey image is what the Space sees as R = G = B: Pillow's L of equal channels is exact
    pixels = (image[..., ::-1] if image.ndim == 3 else image).astype(np.float32)  # BGR -> RGB
    long_side = max(pixels.shape[:2])
    if long_side > RESIZE_MAX:  # match_images' resize_max step
        scale = RESIZE_MAX / long_side
        pixels = _cv2_area(pixels, tuple(int(round(x * scale)) for x in pixels.shape[1::-1]))
    h, w = size
    pixels = _cv2_area(pixels, (w, h)) / np.float32(255.0)  # match_images: image / 255.0 (float32)
    pixels = (pixels * np.float32(255)).astype(np.uint8)  # the wrapper: * 255, astype (truncates)
    if pixels.ndim == 3:
        pixels = np.asarray(Image.fromarray(pixels).convert("L"))
    return (pixels.astype(np.float32) / np.float32(255.0))[None, None]


def prepare_pair(
    image0: np.ndarray, image1: np.ndarray, resolution: int, fixed_size: tuple[int, int] | None = None
) -> PreparedPair:
    """uint8 (H, W) gray or (H, W, 3) BGR images of any sizes -> grayscale [0, 1] network inputs
    of one common size: ``fixed_size`` (h, w) if given (the Space uses (480, 640)), else
    :func:`network_size`."""
    image0, image1 = _check_uint8(image0), _check_uint8(image1)
    if fixed_size is not None:
        size = (int(fixed_size[0]), int(fixed_size[1]))
        if min(size) < MIN_SIDE or size[0] % SIZE_DIVISOR or size[1] % SIZE_DIVISOR:
            raise ValueError(f"network size {size[1]}x{size[0]}: sides must be multiples of {SIZE_DIVISOR}, at least {MIN_SIDE}")
    else:
        size = network_size(image0.shape, image1.shape, resolution)
    h, w = size
    return PreparedPair(
        image0=authors_gray(image0, size),
        image1=authors_gray(image1, size),
        size=size,
        scale0=(image0.shape[1] / w, image0.shape[0] / h),
        scale1=(image1.shape[1] / w, image1.shape[0] / h),
    )
