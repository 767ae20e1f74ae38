"""Debug drawings: matches side by side, and a registration overlay (edges, checkerboard or blend)."""
from __future__ import annotations

from typing import Any

import numpy as np

INLIER_BGR = (0, 255, 0)  # green
OUTLIER_BGR = (0, 0, 255)  # red
UNVERIFIED_BGR = (0, 255, 255)  # yellow: no inlier mask given
EDGE_BGR = (255, 0, 255)  # magenta: thermal edges over the visible image
REGISTRATION_MODES = ("edges", "checkerboard", "blend")


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


def _label(canvas: np.ndarray, text: str, right: int, bottom: int) -> None:
    """Light text on a black box whose bottom-right corner is (right, bottom)."""
    import cv2

    scale = max(0.35, min(0.8, canvas.shape[1] / 1600))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    x0, y0 = max(0, right - tw - 10), max(0, bottom - th - base - 8)
    cv2.rectangle(canvas, (x0, y0), (right - 1, bottom - 1), (0, 0, 0), -1)
    cv2.putText(canvas, text, (x0 + 5, bottom - base - 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)


def _title(canvas: np.ndarray, text: str) -> None:
    import cv2

    scale = max(0.4, min(0.8, canvas.shape[1] / 1400))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    if tw > canvas.shape[1] - 10:  # shrink to fit the width rather than cut the caption
        scale = max(0.3, scale * (canvas.shape[1] - 10) / tw)
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.rectangle(canvas, (0, 0), (min(canvas.shape[1], tw + 10), th + base + 8), (0, 0, 0), -1)
    cv2.putText(canvas, text, (5, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)


def match_plan(
    n: int,
    valid: np.ndarray,
    inliers: np.ndarray | None,
    max_draw: int,
    outliers: bool,
) -> tuple[np.ndarray, np.ndarray, str]:
    """Which matches :func:`draw_matches` draws, and its caption: (shown, lines, caption).

    ``valid``: the indices of the matches with finite keypoints. ``shown``: every match drawn (as
    a dot in both images): without ``outliers`` only inliers, outliers first so that inliers are
    drawn on top. ``lines``: the ones also joined by a line, at most ``max_draw``, an evenly
    spread, deterministic subset keeping the inlier / outlier mix (more lines hide both images)."""
    if inliers is not None and not outliers:
        valid = valid[inliers[valid]]
    shown = valid if inliers is None else np.concatenate([valid[~inliers[valid]], valid[inliers[valid]]])
    lines = valid
    if len(lines) > max_draw:
        lines = lines[np.linspace(0, len(lines) - 1, max_draw).round().astype(int)] if max_draw else lines[:0]
    if inliers is not None:
        lines = np.concatenate([lines[~inliers[lines]], lines[inliers[lines]]])
    caption = f"{n} matches" if inliers is None else f"{int(inliers.sum())}/{n} inliers"
    if len(lines) < len(shown):
        caption += f" (lines for {len(lines)}, dots for all {len(shown)})"
    if inliers is not None and not outliers and len(shown) < n:
        caption += ", outliers not drawn"
    return shown, lines, caption


def match_colour(inliers: np.ndarray | None, i: int) -> tuple[int, int, int]:
    """BGR colour of match ``i``: green inlier, red outlier, yellow when no mask was given."""
    return UNVERIFIED_BGR if inliers is None else (INLIER_BGR if inliers[i] else OUTLIER_BGR)


def draw_matches(
    visible: np.ndarray,
    thermal: np.ndarray,
    matches: Any,
    inliers: np.ndarray | None = None,
    max_draw: int = 60,
    title: str | None = None,
    outliers: bool = False,
    labels: tuple[str, str] = ("visible", "thermal"),
) -> np.ndarray:
    """Visible (left) and thermal (right) side by side, each labelled, with the matches.

    ``matches`` is a :class:`~matchanything_ros.matching.Matches` or a (kpts0, kpts1) pair in
    original pixels. Inliers are drawn green; outliers only with ``outliers=True``, in red (on
    cross-modal pairs they are often most of the raw matches, and their crossing lines hide the
    result). Without an ``inliers`` mask every match is yellow. Every shown match is a dot in
    both images; at most ``max_draw`` of them are also joined by a line (:func:`match_plan`). A
    title line at the top left gives the counts, prefixed by ``title`` if given (the model, the
    status, the score: what the picture is evidence of). Returns a (max(h0, h1), w0 + w1, 3) uint8 BGR image; 16-bit
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
    shown, lines, caption = match_plan(n, valid, inliers, max_draw, outliers)
    radius = max(2, round(min(canvas.shape[:2]) / 250))
    _label(canvas, labels[0], w0, h0)  # under the matches: a label hides no evidence
    _label(canvas, labels[1], w0 + w1, h1)
    for i in lines:
        a = (int(round(k0[i, 0])), int(round(k0[i, 1])))
        b = (int(round(k1[i, 0])) + w0, int(round(k1[i, 1])))
        cv2.line(canvas, a, b, match_colour(inliers, i), 1, cv2.LINE_AA)
    for i in shown:
        colour = match_colour(inliers, i)
        cv2.circle(canvas, (int(round(k0[i, 0])), int(round(k0[i, 1]))), radius, colour, -1, cv2.LINE_AA)
        cv2.circle(canvas, (int(round(k1[i, 0])) + w0, int(round(k1[i, 1]))), radius, colour, -1, cv2.LINE_AA)
    _title(canvas, f"{title}: {caption}" if title else caption)
    return canvas


def draw_registration(
    visible: np.ndarray,
    warped_thermal: np.ndarray,
    mode: str = "edges",
    tile: int = 48,
    alpha: float = 0.5,
    title: str | None = None,
) -> np.ndarray:
    """Overlay of the visible image and the thermal image already warped onto it (e.g. with
    :func:`matchanything_ros.geometry.warp_thermal_to_visible`), to judge registration by eye.

    ``edges`` (default): the thermal image's edges in magenta over the visible image in grey:
    where the registration is right they lie on the visible image's own edges; ``checkerboard``:
    alternating ``tile``-pixel squares of visible and thermal (thermal shown with the INFERNO
    colormap); ``blend``: ``(1 - alpha) * visible + alpha * thermal``. Both images must have the
    same height and width. A caption says what is shown (``title`` before it). Returns uint8 BGR
    of the visible image's size.
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
    prefix = f"{title}: " if title else ""
    if mode == "edges":
        grey = cv2.cvtColor(cv2.cvtColor(vis, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)
        out = (grey.astype(np.float32) * 0.8).astype(np.uint8)  # dimmed: the edges stand out
        th8 = cv2.cvtColor(_to_bgr8(warped_thermal if np.asarray(warped_thermal).ndim == 2 else
                                    np.asarray(warped_thermal)[:, :, 0], "warped_thermal"), cv2.COLOR_BGR2GRAY)
        edges = cv2.Canny(cv2.GaussianBlur(th8, (5, 5), 1.2), 40, 120)
        out[edges > 0] = EDGE_BGR
        _title(out, prefix + "thermal edges (magenta) on the visible image")
        return out
    if mode == "blend":
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        out = cv2.addWeighted(vis, 1.0 - alpha, th, alpha, 0.0)
        if title:
            _title(out, prefix + f"blend, thermal weight {alpha:g}")
        return out
    if tile < 1:
        raise ValueError(f"tile must be >= 1 pixel, got {tile}")
    h, w = vis.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    use_thermal = ((yy // tile + xx // tile) % 2).astype(bool)
    out = vis.copy()
    out[use_thermal] = th[use_thermal]
    if title:
        _title(out, prefix + f"checkerboard of visible and thermal (INFERNO), {tile} px squares")
    return out
