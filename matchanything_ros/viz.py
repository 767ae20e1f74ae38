"""Debug drawings: matches side by side, and a registration overlay (checkerboard or blend)."""
from __future__ import annotations

from typing import Any

import numpy as np

INLIER_BGR = (0, 255, 0)  # green
OUTLIER_BGR = (0, 0, 255)  # red
UNVERIFIED_BGR = (0, 255, 255)  # yellow: no inlier mask given
REGISTRATION_MODES = ("checkerboard", "blend")


def _to_bgr8(image: np.ndarray, name: str, colormap: int | None = None) -> np.ndarray:
    """uint8 gray/BGR/BGRA pass through (as BGR); other dtypes are stretched with the default
    thermal normalisation so 16-bit frames can be drawn directly."""
    import cv2

    from .imaging.thermal import normalize_thermal

    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)) or image.size == 0:
        raise ValueError(f"{name} must be an (H, W) or (H, W, 3) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = normalize_thermal(image)
    if image.ndim == 2:
        if colormap is not None:
            return cv2.applyColorMap(image, colormap)
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image).copy()


def _keypoints(matches: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(matches, "kpts0") and hasattr(matches, "kpts1"):
        k0, k1 = matches.kpts0, matches.kpts1
    else:
        k0, k1 = matches
    k0 = np.asarray(k0, dtype=np.float64).reshape(-1, 2)
    k1 = np.asarray(k1, dtype=np.float64).reshape(-1, 2)
    if len(k0) != len(k1):
        raise ValueError(f"matches: {len(k0)} visible vs {len(k1)} thermal keypoints")
    return k0, k1


def _title(canvas: np.ndarray, text: str) -> None:
    import cv2

    scale = max(0.4, min(1.0, canvas.shape[1] / 1400))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(canvas, (0, 0), (min(canvas.shape[1], tw + 10), th + base + 8), (0, 0, 0), -1)
    cv2.putText(canvas, text, (5, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def match_plan(
    n: int,
    valid: np.ndarray,
    inliers: np.ndarray | None,
    max_draw: int,
    outliers: bool,
) -> tuple[np.ndarray, str]:
    """Which matches :func:`draw_matches` draws, in drawing order, and its caption.

    ``valid``: the indices of the matches with finite keypoints. Without ``outliers`` only
    inliers are drawn; past ``max_draw`` an evenly spread, deterministic subset (keeping the
    inlier / outlier mix); outliers first, so that inliers are drawn on top."""
    if inliers is not None and not outliers:
        valid = valid[inliers[valid]]
    if len(valid) > max_draw:
        valid = valid[np.linspace(0, len(valid) - 1, max_draw).round().astype(int)] if max_draw else valid[:0]
    order = valid if inliers is None else np.concatenate([valid[~inliers[valid]], valid[inliers[valid]]])
    caption = f"{n} matches" if inliers is None else f"{int(inliers.sum())}/{n} inliers"
    shown = n if inliers is None or outliers else int(inliers.sum())
    if len(order) < shown:
        caption += f" (drawn {len(order)})"
    if inliers is not None and not outliers and shown < n:
        caption += ", outliers not drawn"
    return order, caption


def match_colour(inliers: np.ndarray | None, i: int) -> tuple[int, int, int]:
    """BGR colour of match ``i``: green inlier, red outlier, yellow when no mask was given."""
    return UNVERIFIED_BGR if inliers is None else (INLIER_BGR if inliers[i] else OUTLIER_BGR)


def draw_matches(
    visible: np.ndarray,
    thermal: np.ndarray,
    matches: Any,
    inliers: np.ndarray | None = None,
    max_draw: int = 300,
    title: str | None = None,
    outliers: bool = False,
) -> np.ndarray:
    """Visible (left) and thermal (right) side by side with match lines.

    ``matches`` is a :class:`~matchanything_ros.matching.Matches` or a (kpts0, kpts1) pair in
    original pixels. Inliers are drawn green; outliers only with ``outliers=True``, in red (on
    cross-modal pairs they are often most of the raw matches, and their crossing lines hide the
    result). Without an ``inliers`` mask every match is yellow. At most ``max_draw`` matches are
    drawn (:func:`match_plan` says which). A title line at the top left gives the counts,
    prefixed by ``title`` if given. Returns a (max(h0, h1), w0 + w1, 3) uint8 BGR image; 16-bit
    or float inputs are stretched with the default thermal normalisation.
    """
    import cv2

    left = _to_bgr8(visible, "visible")
    right = _to_bgr8(thermal, "thermal")
    k0, k1 = _keypoints(matches)
    n = len(k0)
    if inliers is not None:
        inliers = np.asarray(inliers, dtype=bool).reshape(-1)
        if len(inliers) != n:
            raise ValueError(f"inliers has {len(inliers)} entries for {n} matches")
    if max_draw < 0:
        raise ValueError(f"max_draw must be >= 0, got {max_draw}")

    h0, w0 = left.shape[:2]
    h1, w1 = right.shape[:2]
    canvas = np.zeros((max(h0, h1), w0 + w1, 3), dtype=np.uint8)
    canvas[:h0, :w0] = left
    canvas[:h1, w0:] = right

    valid = np.flatnonzero(np.isfinite(k0).all(axis=1) & np.isfinite(k1).all(axis=1))
    order, caption = match_plan(n, valid, inliers, max_draw, outliers)
    radius = max(2, round(min(canvas.shape[:2]) / 200))
    for i in order:
        colour = match_colour(inliers, i)
        a = (int(round(k0[i, 0])), int(round(k0[i, 1])))
        b = (int(round(k1[i, 0])) + w0, int(round(k1[i, 1])))
        cv2.line(canvas, a, b, colour, 1, cv2.LINE_AA)
        cv2.circle(canvas, a, radius, colour, -1, cv2.LINE_AA)
        cv2.circle(canvas, b, radius, colour, -1, cv2.LINE_AA)
    _title(canvas, f"{title}: {caption}" if title else caption)
    return canvas


def draw_registration(
    visible: np.ndarray,
    warped_thermal: np.ndarray,
    mode: str = "checkerboard",
    tile: int = 48,
    alpha: float = 0.5,
) -> np.ndarray:
    """Overlay of the visible image and the thermal image already warped onto it (e.g. with
    :func:`matchanything_ros.geometry.warp_thermal_to_visible`), to judge registration by eye.

    ``checkerboard``: alternating ``tile``-pixel squares of visible and thermal (thermal shown
    with the INFERNO colormap so edges between squares are easy to follow); ``blend``:
    ``(1 - alpha) * visible + alpha * thermal``. Both images must have the same height and
    width. Returns uint8 BGR of the visible image's size.
    """
    import cv2

    if mode not in REGISTRATION_MODES:
        raise ValueError(f"mode must be one of {REGISTRATION_MODES}, got {mode!r}")
    vis = _to_bgr8(visible, "visible")
    th = np.asarray(warped_thermal)
    if th.ndim == 3 and th.shape[2] == 1:
        th = th[:, :, 0]
    th = _to_bgr8(th, "warped_thermal", colormap=cv2.COLORMAP_INFERNO)
    if vis.shape[:2] != th.shape[:2]:
        raise ValueError(
            f"warped_thermal {th.shape[:2]} must have the visible image's size {vis.shape[:2]}; "
            "warp it with warp_thermal_to_visible(thermal, H, visible.shape)"
        )
    if mode == "blend":
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        return cv2.addWeighted(vis, 1.0 - alpha, th, alpha, 0.0)
    if tile < 1:
        raise ValueError(f"tile must be >= 1 pixel, got {tile}")
    h, w = vis.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    use_thermal = ((yy // tile + xx // tile) % 2).astype(bool)
    out = vis.copy()
    out[use_thermal] = th[use_thermal]
    return out
