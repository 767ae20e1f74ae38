"""Per-frame verdict: how likely a fit is right, from evidence in the fit itself.

MAGSAC++ returns *a* model for almost any match set: on night / fog / low-texture pairs it
locks onto a couple of dozen wrong "inliers", and when the correct matches lie in one band of
the image the model is determined there and extrapolated elsewhere. Neither the inlier count
nor the inlier ratio separates those fits from the right ones (docs/ACCURACY.md). This module
computes a few features that do, and a logistic score ``p(right | features)`` calibrated by
``scripts/verdict_study.py`` (coefficients below; "right" = mean corner error <= 10 px for
homography / affine; rotation error <= 2 deg and, when observable, translation direction error
<= 10 deg for the essential pose).

Features (all cheap, no extra matching):

* ``log_inliers``, ``inlier_ratio``: the classic evidence;
* ``coverage``: share of the cells of an 8x8 grid that hold an inlier, the smaller of the two
  images (a fit carried by one band or corner covers few cells);
* ``log_corner_sigma`` (homography / affine): the first-order standard deviation (px) of the
  four image corners mapped by the fit, from the inliers' Jacobian and their RMS residual. A
  fit whose inliers lie in one band extrapolates to the corners and gets a large value;
* ``log_rotation_sigma_deg`` (essential): the same for the rotation, from the pose covariance;
* ``rms_residual_px``: RMS residual of the inliers (published as evidence, not scored).

Measured on cached matches (scripts/verdict_study.py): the corner sigma separates right from
wrong homographies best; the inlier ratio adds the gross failures; coverage, the inlier count,
the RMS residual and the agreement of single-polarity fits added nothing on held-out data, so
the score uses ratio + corner sigma (homography) and ratio + coverage + rotation sigma
(essential); the other features are still reported.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .result import GeometryResult

GRID = 8
#: essential mode, polarity "both": the pooled fit's rotation must agree with the rotation fitted
#: to one polarity's matches alone within this (deg), else the fit is unstable (a slightly
#: different match set gives another pose: seen in replay at 3-5 deg error) and not OK.
#: On the study's 200 stereo pairs it removes 2 of 69 OK frames at min_quality 0.9 (docs/ACCURACY.md).
MAX_POLARITY_DISAGREEMENT_DEG = 1.5
#: noise floor for the corner / pose uncertainty (px): matchers quantise to ~1 px
MIN_SIGMA_PX = 0.5

#: logistic coefficients per model family, fitted by ``scripts/verdict_study.py report --fit``
#: on roadscene_dev bases 0-300 (224 pairs) + synthetic seeds 0-99 (planar for homography,
#: stereo for essential); bases 400-700 and seeds 100-199 are held out. Homography: fitted
#: with the authors' XFeat* coordinates, checked again with the corrected ones (held-out OK
#: precision 0.972 both times); essential: refitted with the corrected coordinates and the
#: 4 px rotation floor (docs/ACCURACY.md, "Per-frame verdict").
COEFFICIENTS: dict[str, dict[str, float]] = {
    "homography": {"bias": 3.634, "inlier_ratio": 6.987, "log_corner_sigma": -3.476},
    "essential": {"bias": -1.466, "inlier_ratio": 3.261, "coverage": 2.443, "log_rotation_sigma_deg": -1.773},
}
#: affine fits are scored with the homography model (same corner extrapolation evidence)
FAMILY = {"homography": "homography", "affine": "homography", "essential": "essential"}


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
        cs = corner_sigma(g.matrix, p0[m], visible_wh, sigma, affine=g.mode == "affine")
        feats["log_corner_sigma"] = math.log(min(max(cs, 1e-3), 1e6))
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


def quality_score(mode: str, features: dict[str, float]) -> float | None:
    """Calibrated p(right) of a fit from its features; None for modes without a model."""
    family = FAMILY.get(mode)
    if family is None or not features:
        return None
    coef = COEFFICIENTS[family]
    z = coef["bias"] + sum(w * features.get(k, 0.0) for k, w in coef.items() if k != "bias")
    return float(1.0 / (1.0 + math.exp(-max(min(z, 50.0), -50.0))))


def assess(
    geometry: GeometryResult,
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    visible_wh,
    thermal_wh,
) -> Quality:
    """Features and calibrated score of one fit (see the module docstring)."""
    feats = quality_features(geometry, kpts0, kpts1, visible_wh, thermal_wh)
    return Quality(quality_score(geometry.mode, feats), feats)
