"""Accuracy metrics shared by the accuracy protocol, bag evaluation and the demo.

Conventions: H maps visible pixels to thermal pixels (x1 ~ H x0); R, t are OpenCV's relative
pose (X1 = R X0 + t). A missing estimate (None) counts as an infinite error, i.e. a failure.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from ..geometry.warp import apply_homography

__all__ = [
    "corner_error",
    "homography_reprojection_errors",
    "match_precision",
    "pose_auc",
    "rotation_error_deg",
    "success_rates",
    "translation_angle_deg",
]



def corner_error(H_est: np.ndarray | None, H_gt: np.ndarray, width: int, height: int) -> float:
    """Mean distance (px) between the four visible-image corners mapped by H_est and by H_gt
    (corners at pixel centres (0, 0) ... (width-1, height-1)); inf when H_est is None or
    degenerate."""
    if H_est is None:
        return float("inf")
    H_est = np.asarray(H_est, dtype=np.float64)
    if H_est.shape != (3, 3) or not np.all(np.isfinite(H_est)):
        return float("inf")
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    err = np.linalg.norm(apply_homography(H_est, corners) - apply_homography(H_gt, corners), axis=1).mean()
    return float(err) if np.isfinite(err) else float("inf")


def success_rates(errors: Iterable[float], thresholds: Iterable[float] = (3, 5, 10)) -> dict[float, float]:
    """Fraction of errors <= each threshold ({threshold: rate}); inf/nan errors are failures."""
    e = np.asarray(list(errors), dtype=np.float64)
    e = np.where(np.isfinite(e), e, np.inf)
    return {float(t): (float(np.mean(e <= t)) if len(e) else 0.0) for t in thresholds}


def pose_auc(errors: Iterable[float], thresholds: Iterable[float] = (3, 5, 10)) -> dict[float, float]:
    """Area under the recall-vs-error curve up to each threshold, normalised to [0, 1] (the
    LoFTR / SuperGlue "AUC@t"; works for corner errors in px and pose errors in degrees).
    inf/nan errors are failures."""
    e = np.asarray(list(errors), dtype=np.float64)
    e = np.sort(np.where(np.isfinite(e), e, np.inf))
    out = {}
    for t in thresholds:
        t = float(t)
        if len(e) == 0:
            out[t] = 0.0
            continue
        recall = np.arange(1, len(e) + 1) / len(e)
        # Recall is a step function: 0 before the first error, i/n after the i-th.
        x = np.r_[0.0, e]
        y = np.r_[0.0, recall]
        last = np.searchsorted(x, t)
        xs = np.r_[x[:last], t]
        ys = np.r_[y[:last], y[last - 1]]
        out[t] = float(np.trapezoid(ys, xs) / t) if hasattr(np, "trapezoid") else float(np.trapz(ys, xs) / t)
    return out


def homography_reprojection_errors(kpts0: np.ndarray, kpts1: np.ndarray, H_gt: np.ndarray) -> np.ndarray:
    """Per-match distance (px) between kpts1 and H_gt applied to kpts0."""
    k0 = np.asarray(kpts0, dtype=np.float64).reshape(-1, 2)
    k1 = np.asarray(kpts1, dtype=np.float64).reshape(-1, 2)
    if len(k0) != len(k1):
        raise ValueError(f"kpts0 ({len(k0)}) and kpts1 ({len(k1)}) must have the same length")
    err = np.linalg.norm(apply_homography(H_gt, k0) - k1, axis=1)
    return np.where(np.isfinite(err), err, np.inf)


def match_precision(kpts0: np.ndarray, kpts1: np.ndarray, H_gt: np.ndarray, px: float = 3.0) -> float:
    """Fraction of matches whose ground-truth reprojection error is below ``px`` (the "inlier
    ratio under ground truth"); 0.0 when there are no matches."""
    err = homography_reprojection_errors(kpts0, kpts1, H_gt)
    return float(np.mean(err < px)) if len(err) else 0.0


def rotation_error_deg(R_est: np.ndarray | None, R_gt: np.ndarray) -> float:
    """Angle (degrees) of the rotation R_est^T R_gt; inf when R_est is None."""
    if R_est is None:
        return float("inf")
    R = np.asarray(R_est, dtype=np.float64).T @ np.asarray(R_gt, dtype=np.float64)
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(cos)))


def translation_angle_deg(t_est: np.ndarray | None, t_gt: np.ndarray, sign_invariant: bool = False) -> float:
    """Angle (degrees) between two translation directions (scale is not observable from two
    views); ``sign_invariant`` folds t and -t together. inf when t_est is None or zero."""
    if t_est is None:
        return float("inf")
    a = np.asarray(t_est, dtype=np.float64).reshape(3)
    b = np.asarray(t_gt, dtype=np.float64).reshape(3)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na < 1e-12 or nb < 1e-12:
        return float("inf")
    cos = np.clip(a @ b / (na * nb), -1.0, 1.0)
    if sign_invariant:
        cos = abs(cos)
    return float(np.degrees(np.arccos(cos)))
