"""Per-frame verdict: how likely a fit is right, from evidence in the fit itself.

MAGSAC++ returns *a* model for almost any match set: on night / fog / low-texture pairs it
locks onto a couple of dozen wrong "inliers", and when the correct matches lie in one band of
the image the model is determined there and extrapolated elsewhere. Neither the inlier count
nor the inlier ratio separates those fits from the right ones (docs/ACCURACY.md). This module
computes a few features that do and a calibrated score ``p(right | features)`` from them
(coefficients fitted by ``scripts/verdict_study.py``; "right" = mean corner error <= 10 px for
homography / affine; rotation error <= 2 deg for the essential pose).

Features (all cheap, no extra matching):

* ``log_inliers``, ``inlier_ratio``: the classic evidence;
* ``coverage``: share of the cells of an 8x8 grid that hold an inlier, the smaller of the two
  images (a fit carried by one band or corner covers few cells);
* ``log_corner_sigma`` (homography / affine): the first-order standard deviation (px) of the
  four image corners mapped by the fit, from the inliers' Jacobian and their RMS residual. A
  fit whose inliers lie in one band extrapolates to the corners and gets a large value;
* ``log_split_corner_px``, ``hull_fraction`` (homography / affine): disagreement of fits to
  halves of the inliers, and the inliers' hull over the image (published, not scored);
* ``log_rotation_sigma_deg`` (essential): the first-order rotation sigma of the pose fit;
* ``log_polarity_disagreement_deg`` (essential, polarity "both"): the rotation angle between the
  pooled fit and the closest fit to one polarity's matches alone;
* ``rms_residual_px``: RMS residual of the inliers.

Homography / affine: a logistic regression (COEFFICIENTS). Essential: a model of the rotation
error itself (ROTATION_SIGMA): its per-axis standard deviation predicted from the coverage and
the polarity disagreement, fitted by maximum likelihood to the errors of held-apart synthetic
stereo fits. The pipeline publishes that sigma as the pose's rotation covariance, and the score
is the probability it implies that the rotation is within 2 deg: the covariance a SLAM stack
weighs the pose with and the verdict come from one model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .result import GeometryResult
from .warp import apply_homography

GRID = 8
#: noise floor for the corner / pose uncertainty (px): matchers quantise to ~1 px
MIN_SIGMA_PX = 0.5

#: logistic coefficients per model family, fitted by ``scripts/verdict_study.py report --fit``.
#: Homography (2026-12-07, ``--fit --select --fit-families homography``): the features chosen by
#: leave-one-drive-out log-loss among ``CANDIDATES`` and fitted on the *fit drives* of
#: roadscene_dev + roadscene_calib (evaluation.drives.split_by_drive: 56 pairs, 11 drives, warp
#: bases 0-300) + synthetic planar seeds 0-99; the other 12 drives (55 pairs) are never fitted
#: on and give the figures in docs/ACCURACY.md. Homography_refined (fits of the refinement pass,
#: ``refine``): the same, ``--refine --fit --select --fit-families homography_refined``, on every
#: refit of the fit split.
COEFFICIENTS: dict[str, dict[str, float]] = {
    "homography": {"bias": 3.724, "log_corner_sigma": -4.73, "rms_residual_px": 1.562},
    "homography_refined": {"bias": 4.669, "log_corner_sigma": -3.912},
}
#: essential: ``log(sigma_deg) = bias + sum(w * feature)``, the per-axis standard deviation of
#: the rotation error (error vector ~ N(0, sigma^2 I)), fitted by maximum likelihood by
#: ``scripts/verdict_study.py report --fit`` on synthetic stereo seeds 100-299 matched and fitted
#: with config/driving_rig.yaml's settings (seeds 0-99 held out). "essential": polarity "both"
#: (the polarity disagreement is known); "essential_single": one polarity's matches.
ROTATION_SIGMA: dict[str, dict[str, float]] = {
    "essential": {"bias": 0.925, "coverage": -2.516, "log_polarity_disagreement_deg": 0.269},
    "essential_single": {"bias": 2.862, "coverage": -7.811},
}
#: an essential fit is right when its rotation is within this (deg) of the truth
ROTATION_RIGHT_DEG = 2.0
#: affine fits are scored with the homography model (same corner extrapolation evidence)
FAMILY = {"homography": "homography", "affine": "homography", "essential": "essential"}
#: the polarity disagreement is clipped to this range (deg) before its log is taken; no
#: single-polarity pose at all counts as the maximum
POLARITY_DISAGREEMENT_RANGE = (0.05, 90.0)


@dataclass
class Quality:
    """The verdict's evidence: ``score`` in [0, 1] (None when the mode has no calibrated
    model, e.g. fundamental) and the features it was computed from."""

    score: float | None
    features: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"score": self.score, "features": dict(self.features)}


def _corners(wh) -> np.ndarray:
    w, h = float(wh[0]), float(wh[1])
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)


def _homography_rows(H: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """d(projected x, y)/d(h11..h32) for H with h33 = 1: (2N, 8)."""
    x, y = pts[:, 0], pts[:, 1]
    w = H[2, 0] * x + H[2, 1] * y + H[2, 2]
    u = (H[0, 0] * x + H[0, 1] * y + H[0, 2]) / w
    v = (H[1, 0] * x + H[1, 1] * y + H[1, 2]) / w
    one, zero = np.ones_like(x), np.zeros_like(x)
    ru = np.stack([x, y, one, zero, zero, zero, -u * x, -u * y], 1) / w[:, None]
    rv = np.stack([zero, zero, zero, x, y, one, -v * x, -v * y], 1) / w[:, None]
    return np.stack([ru, rv], 1).reshape(-1, 8)


def corner_sigma(H: np.ndarray, p0: np.ndarray, wh, sigma_px: float, affine: bool = False) -> float:
    """RMS first-order standard deviation (px) of the visible image's corners mapped by H,
    when H is fitted by least squares to the visible points ``p0`` with pixel noise ``sigma_px``.
    Large when the points constrain H only in one region and H extrapolates to the corners."""
    H = np.asarray(H, dtype=np.float64)
    H = H / H[2, 2]
    J = _homography_rows(H, p0)
    Jc = _homography_rows(H, _corners(wh))
    if affine:  # 6 parameters: no perspective terms
        J, Jc = J[:, :6], Jc[:, :6]
    scale = np.linalg.norm(J, axis=0)
    scale[scale == 0] = 1.0
    _, s, Vt = np.linalg.svd(J / scale, full_matrices=False)
    if s[-1] <= s[0] * 1e-12:
        return math.inf
    A = (Jc / scale) @ Vt.T / s  # corner rows in the whitened parameter space
    return float(sigma_px * np.sqrt(np.sum(A * A) / 4.0))


def _fit_homography_lsq(p0: np.ndarray, p1: np.ndarray, affine: bool) -> np.ndarray | None:
    """Least-squares homography (or affine) of points already judged inliers; None if degenerate."""
    import cv2

    if affine:
        sol, *_ = np.linalg.lstsq(np.column_stack([p0, np.ones(len(p0))]), p1, rcond=None)
        return np.vstack([sol.T, [0.0, 0.0, 1.0]])
    H, _ = cv2.findHomography(p0, p1, 0)
    return None if H is None or not np.isfinite(H).all() or abs(H[2, 2]) < 1e-12 else H / H[2, 2]


def split_corner_disagreement(H: np.ndarray, p0: np.ndarray, p1: np.ndarray, wh, affine: bool = False,
                              min_points: int = 8) -> float:
    """Largest mean corner distance (px) between the fit ``H`` and least-squares fits to one
    half of its inliers, the halves cut at the median along each image axis (four halves).

    Noise cannot explain what this sees: when the inliers of one half say something else about
    the image corners than the whole, the fit's extrapolation rests on structure the residuals
    do not show (a systematic offset in one band, parallax, a few wrong "inliers" carrying a
    region). inf when a half has too few points to fit."""
    corners = _corners(wh)
    ref = apply_homography(H, corners)
    worst = 0.0
    for axis in (0, 1):
        cut = np.median(p0[:, axis])
        for half in (p0[:, axis] <= cut, p0[:, axis] > cut):
            if half.sum() < min_points:
                return math.inf
            Hh = _fit_homography_lsq(p0[half], p1[half], affine)
            if Hh is None:
                return math.inf
            worst = max(worst, float(np.linalg.norm(apply_homography(Hh, corners) - ref, axis=1).mean()))
    return worst


def hull_fraction(points: np.ndarray, wh) -> float:
    """Area of the points' convex hull as a share of the w x h image."""
    import cv2

    if len(points) < 3:
        return 0.0
    hull = cv2.convexHull(np.asarray(points, dtype=np.float32))
    return float(cv2.contourArea(hull)) / (float(wh[0]) * float(wh[1]))


def grid_coverage(points: np.ndarray, wh, grid: int = GRID) -> float:
    """Share of the grid x grid cells of a w x h image that hold at least one point."""
    if len(points) == 0:
        return 0.0
    w, h = float(wh[0]), float(wh[1])
    cx = np.clip((points[:, 0] / w * grid).astype(int), 0, grid - 1)
    cy = np.clip((points[:, 1] / h * grid).astype(int), 0, grid - 1)
    return float(len(np.unique(cy * grid + cx))) / (grid * grid)


def quality_features(
    geometry: GeometryResult,
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    visible_wh,
    thermal_wh,
) -> dict[str, float]:
    """The verdict features of a fit that has a model (see the module docstring). Empty for a
    fit without one."""
    g = geometry
    if g.matrix is None or g.mode not in FAMILY:
        return {}
    m = np.asarray(g.inliers, dtype=bool)
    p0 = np.asarray(kpts0, dtype=np.float64).reshape(-1, 2)
    p1 = np.asarray(kpts1, dtype=np.float64).reshape(-1, 2)
    finite = np.isfinite(p0).all(1) & np.isfinite(p1).all(1)
    n_in = int(m.sum())
    feats = {
        "log_inliers": math.log(max(n_in, 1)),
        "inlier_ratio": n_in / max(1, int(finite.sum())),
        "coverage": min(grid_coverage(p0[m], visible_wh), grid_coverage(p1[m], thermal_wh)),
    }
    sigma = max(float(g.rms_residual_px or 0.0), MIN_SIGMA_PX)
    feats["rms_residual_px"] = float(g.rms_residual_px or 0.0)
    if FAMILY[g.mode] == "homography":
        affine = g.mode == "affine"
        cs = corner_sigma(g.matrix, p0[m], visible_wh, sigma, affine=affine)
        feats["log_corner_sigma"] = math.log(min(max(cs, 1e-3), 1e6))
        split = split_corner_disagreement(g.matrix, p0[m], p1[m], visible_wh, affine=affine)
        feats["log_split_corner_px"] = math.log(min(max(split, 0.1), 1e4))
        feats["hull_fraction"] = hull_fraction(p0[m], visible_wh)
    else:
        cov = g.covariance
        rot = math.inf if cov is None else math.degrees(math.sqrt(max(np.trace(np.asarray(cov)[3:, 3:]) / 3.0, 0.0)))
        feats["log_rotation_sigma_deg"] = math.log(min(max(rot, 1e-4), 1e3))
    return feats


def polarity_disagreement_deg(geometry: GeometryResult, polarity_fits: list[GeometryResult]) -> float:
    """Smallest rotation angle (deg) between an essential fit and the fits of single polarities
    (inf when none of them has a pose)."""
    best = math.inf
    for f in polarity_fits:
        if f.ok and f.R is not None and geometry.R is not None:
            c = (np.trace(np.asarray(geometry.R) @ np.asarray(f.R).T) - 1.0) / 2.0
            best = min(best, math.degrees(math.acos(min(1.0, max(-1.0, c)))))
    return best


def family_of(mode: str, refined: bool = False, features: dict | None = None) -> str | None:
    """The model that scores a fit of ``mode``: a fit of the refinement pass (Pipeline.refine)
    has its own coefficients, since matching a pre-warped image changes what the features mean
    (more, better spread inliers for right and wrong first fits alike); an essential fit without
    the polarity disagreement (one polarity's matches) has its own rotation model."""
    family = FAMILY.get(mode)
    if family == "homography" and refined:
        return "homography_refined"
    if family == "essential" and features is not None and "log_polarity_disagreement_deg" not in features:
        return "essential_single"
    return family


def add_polarity_disagreement(features: dict[str, float], angle_deg: float) -> None:
    """Record the polarity disagreement (:func:`polarity_disagreement_deg`) as features."""
    lo, hi = POLARITY_DISAGREEMENT_RANGE
    features["polarity_disagreement_deg"] = angle_deg
    features["log_polarity_disagreement_deg"] = math.log(min(max(angle_deg, lo), hi))


def _linear(coef: dict[str, float], features: dict[str, float]) -> float:
    return coef["bias"] + sum(w * features.get(k, 0.0) for k, w in coef.items() if k != "bias")


def rotation_sigma_deg(features: dict[str, float], models: dict | None = None) -> float:
    """Predicted per-axis standard deviation (deg) of an essential fit's rotation error."""
    models = ROTATION_SIGMA if models is None else models
    z = _linear(models[family_of("essential", features=features)], features)
    return float(math.exp(max(min(z, 10.0), -10.0)))


def maxwell_cdf(x: float) -> float:
    """P(|e| <= x sigma) for a 3-vector e ~ N(0, sigma^2 I)."""
    return float(math.erf(x / math.sqrt(2.0)) - math.sqrt(2.0 / math.pi) * x * math.exp(-x * x / 2.0))


def quality_score(mode: str, features: dict[str, float], refined: bool = False,
                  coefficients: dict | None = None) -> float | None:
    """Calibrated p(right) of a fit from its features; None for modes without a model.
    ``coefficients``: COEFFICIENTS and ROTATION_SIGMA merged, to score with others (the study)."""
    family = family_of(mode, refined, features)
    if family is None or not features:
        return None
    coefs = {**COEFFICIENTS, **ROTATION_SIGMA} if coefficients is None else coefficients
    if family.startswith("essential"):
        return maxwell_cdf(ROTATION_RIGHT_DEG / rotation_sigma_deg(features, coefs))
    z = _linear(coefs[family], features)
    return float(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))))


def assess(
    geometry: GeometryResult,
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    visible_wh,
    thermal_wh,
    refined: bool = False,
    polarity_disagreement: float | None = None,
) -> Quality:
    """Features and calibrated score of one fit (see the module docstring); ``refined``: a fit
    of the refinement pass (:func:`family_of`); ``polarity_disagreement`` (deg, essential with
    polarity "both"): :func:`polarity_disagreement_deg` of the fit."""
    feats = quality_features(geometry, kpts0, kpts1, visible_wh, thermal_wh)
    if feats and polarity_disagreement is not None:
        add_polarity_disagreement(feats, polarity_disagreement)
    return Quality(quality_score(geometry.mode, feats, refined), feats)
