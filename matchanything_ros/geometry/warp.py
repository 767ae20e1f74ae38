"""Resample the thermal image into the visible image's pixel grid."""
from __future__ import annotations

import numpy as np


def warp_thermal_to_visible(
    thermal: np.ndarray,
    H: np.ndarray,
    visible_shape: tuple[int, ...],
    *,
    interpolation: int | None = None,
    border_value: float = 0,
    replicate_border: bool = False,
) -> np.ndarray:
    """Warp ``thermal`` onto the visible grid with H (visible px -> thermal px, x1 ~ H x0).

    Every visible pixel looks up its thermal pixel through H directly (OpenCV's
    WARP_INVERSE_MAP), so H is never inverted. ``visible_shape`` is the visible image's shape
    ((H, W) or (H, W, C)); dtype and channels of ``thermal`` are kept (uint16 stays uint16).
    Pixels that map outside the thermal image get ``border_value``, or with
    ``replicate_border`` the nearest edge pixel (no artificial edge for a matcher to find).
    """
    import cv2

    H = np.asarray(H, dtype=np.float64)
    if H.shape == (2, 3):
        H = np.vstack([H, [0.0, 0.0, 1.0]])
    if H.shape != (3, 3) or not np.all(np.isfinite(H)):
        raise ValueError(f"H must be a finite 3x3 (or 2x3 affine) matrix, got shape {H.shape}")
    if len(visible_shape) < 2 or visible_shape[0] <= 0 or visible_shape[1] <= 0:
        raise ValueError(f"visible_shape must be (height, width[, channels]), got {visible_shape}")
    thermal = np.asarray(thermal)
    if thermal.size == 0:
        raise ValueError("thermal image is empty")
    flags = (cv2.INTER_LINEAR if interpolation is None else interpolation) | cv2.WARP_INVERSE_MAP
    height, width = int(visible_shape[0]), int(visible_shape[1])
    border = cv2.BORDER_REPLICATE if replicate_border else cv2.BORDER_CONSTANT
    return cv2.warpPerspective(thermal, H, (width, height), flags=flags, borderMode=border, borderValue=border_value)


def apply_homography(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """(N, 2) points mapped by the 3x3 ``H`` (points at infinity come back as inf / nan)."""
    p = np.c_[np.asarray(pts, dtype=np.float64).reshape(-1, 2), np.ones(len(pts))] @ np.asarray(H, dtype=np.float64).T
    with np.errstate(divide="ignore", invalid="ignore"):
        return p[:, :2] / p[:, 2:3]
