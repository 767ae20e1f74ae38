"""Relative pose helpers: frame conversion and a first-order covariance for the essential fit.

Covariance model. The essential fit leaves 5 degrees of freedom: a rotation (3) and a unit
translation direction (2). We parameterise a perturbation of OpenCV's (R, t) as
``R' = R exp([w]x)``, ``t' = normalize(t + a b1 + b b2)`` with (b1, b2) spanning the tangent
plane of t, linearise the Sampson distances of the inliers (normalised image coordinates) with
respect to (w, a, b) by central differences, and take ``cov5 = s^2 (J^T J)^+`` with the residual
variance ``s^2 = sum(r^2) / (n - 5)``. This is then propagated to the thermal camera's pose in
the visible camera's optical frame (x right, y down, z forward): position ``p = -R^T t`` and a
small rotation ``d`` applied on the left, ``R_01' = exp([d]x) R_01``, in ROS order
(x, y, z, rot_x, rot_y, rot_z).

The translation's scale is not observable from two views: the position is reported on the
unit sphere and :data:`UNKNOWN_SCALE_VARIANCE` is added along its direction, so a filter that
fuses this pose learns nothing about the baseline length from it. When the scene has too little
parallax for the translation direction either (see ``translation_observable`` in
:func:`pose_covariance`), the whole translation block gets that variance.

Limits: this is a first-order covariance for a correct inlier set. On clean synthetic data it
matches the scatter of the estimates (test_geometry.py::test_covariance_matches_the_observed_scatter).
Real cross-modal matches have correlated, biased errors that do not average out, so the
pipeline computes it inflated by :data:`POSE_COVARIANCE_INFLATION` plus a rotation floor of
:data:`POSE_ROTATION_FLOOR_PX` (and a translation-direction floor from the parallax). Even so its
rotation sigma does not predict the rotation error of real fits (correlation ~0 on synthetic
stereo, docs/ACCURACY.md), so the pipeline publishes the rotation block of the verdict's error
model instead (:func:`with_rotation_sigma`, quality.ROTATION_SIGMA); the first-order rotation
sigma stays a verdict feature. Outliers that MAGSAC++ accepts as inliers bias the fit, which no
covariance computed from the inliers can show: that is the verdict's job (quality.py).
"""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np

from .result import GeometryResult

#: variance (in units of the unit-norm translation, squared) added along the translation
#: direction of the covariance, because two views cannot observe the baseline length
UNKNOWN_SCALE_VARIANCE = 1.0e6
#: factor on the first-order covariance for real matches (the pipeline's): cross-modal match
#: errors are correlated and biased, not independent pixel noise, so the first-order covariance
#: is optimistic by about this much. Calibrated by scripts/verdict_study.py on synthetic
#: stereo seeds 0-49 (rotation NEES, docs/ACCURACY.md "Pose covariance consistency").
POSE_COVARIANCE_INFLATION = 30.0
#: rotation standard deviation (px at the focal length) added to every rotation, for the same
#: reason: errors of a few pixels shared by many matches do not average out over the inliers.
#: Calibrated with POSE_COVARIANCE_INFLATION (same study); 3 -> 4 px when XFeat*'s coordinates
#: were corrected (their smaller residuals shrank the first-order part; 3, 4 and 5 px scanned).
POSE_ROTATION_FLOOR_PX = 4.0


def camera1_pose_in_camera0(R: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OpenCV relative pose (X1 = R X0 + t) -> pose of camera 1 in camera 0's frame.

    Returns (R_01, t_01) with X0 = R_01 X1 + t_01: R_01 = R^T is camera 1's orientation and
    t_01 = -R^T t its optical centre, both expressed in camera 0's frame.
    """
    R = np.asarray(R, dtype=np.float64).reshape(3, 3)
    t = np.asarray(t, dtype=np.float64).reshape(3)
    return R.T.copy(), -R.T @ t


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _tangent_basis(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.eye(3)[int(np.argmin(np.abs(t)))]
    b1 = np.cross(t, helper)
    b1 /= np.linalg.norm(b1)
    return b1, np.cross(t, b1)


def _exp_so3(w: np.ndarray) -> np.ndarray:
    return cv2.Rodrigues(np.asarray(w, dtype=np.float64).reshape(3, 1))[0]


def _log_so3(M: np.ndarray) -> np.ndarray:
    """Rotation vector of a rotation matrix. Written out because cv2.Rodrigues rounds angles
    below ~1e-5 rad to zero, which would zero the finite-difference Jacobian."""
    vee = np.array([M[2, 1] - M[1, 2], M[0, 2] - M[2, 0], M[1, 0] - M[0, 1]]) / 2.0
    s = np.linalg.norm(vee)
    angle = np.arctan2(s, (np.trace(M) - 1.0) / 2.0)
    if angle > np.pi - 1e-6:  # never hit by the small perturbations here; keep OpenCV's answer
        return cv2.Rodrigues(M)[0].ravel()
    return vee if s < 1e-12 else vee * (angle / s)


def _perturb(R: np.ndarray, t: np.ndarray, basis, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    b1, b2 = basis
    t2 = t + p[3] * b1 + p[4] * b2
    return R @ _exp_so3(p[:3]), t2 / np.linalg.norm(t2)


def sampson_distances(E: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Sampson distances of (N, 2) correspondences for x1^T E x0 = 0 (same units as x0 / x1)."""
    h0 = np.column_stack([x0, np.ones(len(x0))])
    h1 = np.column_stack([x1, np.ones(len(x1))])
    Ex0 = h0 @ E.T
    Etx1 = h1 @ E
    num = np.einsum("ij,ij->i", h1, Ex0)
    den = Ex0[:, 0] ** 2 + Ex0[:, 1] ** 2 + Etx1[:, 0] ** 2 + Etx1[:, 1] ** 2
    return num / np.sqrt(np.maximum(den, 1e-300))


def rotation_parallax(R: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    """Per-correspondence distance (normalised units) between x1 and x0 carried by the rotation
    alone: what is left for the translation (plus noise) to explain."""
    h0 = np.column_stack([x0, np.ones(len(x0))]) @ np.asarray(R, dtype=np.float64).T
    return np.linalg.norm(h0[:, :2] / h0[:, 2:] - x1, axis=1)


def pose_covariance(
    R: np.ndarray,
    t: np.ndarray,
    x0: np.ndarray,
    x1: np.ndarray,
    translation_observable: bool = True,
    inflation: float = 1.0,
    rotation_floor: float = 0.0,
) -> np.ndarray | None:
    """6x6 covariance (ROS order) of camera 1's pose in camera 0, from inlier correspondences in
    normalised coordinates (see the module docstring). None with fewer than 6 inliers.

    With ``translation_observable=False`` (too little parallax: the fit cannot tell the
    translation direction) the first-order model is not trusted: the whole translation block
    gets :data:`UNKNOWN_SCALE_VARIANCE` with no cross terms, and the rotation variance is at
    least the squared median rotation-compensated residual, because an arbitrary translation
    direction biases the rotation by about that much. ``inflation`` multiplies the first-order
    part (1 = the textbook covariance for independent noise; see :data:`POSE_COVARIANCE_INFLATION`)
    and ``rotation_floor`` (radians), when > 0, is added as an isotropic rotation standard
    deviation and replaces the parallax-based floor above (calibrated on real matches, that floor
    was 1.5x too conservative: docs/ACCURACY.md)."""
    R = np.asarray(R, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64).reshape(3)
    t = t / np.linalg.norm(t)
    x0 = np.asarray(x0, dtype=np.float64)
    x1 = np.asarray(x1, dtype=np.float64)
    n = len(x0)
    if n < 6:
        return None
    basis = _tangent_basis(t)

    def residuals(p):
        Rp, tp = _perturb(R, t, basis, p)
        return sampson_distances(_skew(tp) @ Rp, x0, x1)

    r0 = residuals(np.zeros(5))
    eps = 1e-6
    J = np.empty((n, 5))
    for k in range(5):
        d = np.zeros(5)
        d[k] = eps
        J[:, k] = (residuals(d) - residuals(-d)) / (2 * eps)
    sigma2 = float(r0 @ r0) / (n - 5)
    cov5 = float(inflation) * sigma2 * np.linalg.pinv(J.T @ J)

    # Jacobian of (position, left rotation) of camera 1 in camera 0 w.r.t. the 5 parameters.
    R01, p01 = camera1_pose_in_camera0(R, t)
    G = np.empty((6, 5))
    for k in range(5):
        d = np.zeros(5)
        d[k] = eps
        plus = camera1_pose_in_camera0(*_perturb(R, t, basis, d))
        minus = camera1_pose_in_camera0(*_perturb(R, t, basis, -d))
        G[:3, k] = (plus[1] - minus[1]) / (2 * eps)
        G[3:, k] = (_log_so3(plus[0] @ R01.T) - _log_so3(minus[0] @ R01.T)) / (2 * eps)
    cov = G @ cov5 @ G.T
    if translation_observable:
        u = p01 / np.linalg.norm(p01)
        cov[:3, :3] += UNKNOWN_SCALE_VARIANCE * np.outer(u, u)
        if rotation_floor > 0:
            # the same few-pixel systematic error tilts the translation direction by about
            # floor / parallax (radians): the parallax is all that determines it
            parallax = max(float(np.median(rotation_parallax(R, x0, x1))), 1e-12)
            cov[:3, :3] += min(rotation_floor / parallax, 1.0) ** 2 * (np.eye(3) - np.outer(u, u))
    else:
        floor = 0.0 if rotation_floor > 0 else float(np.median(rotation_parallax(R, x0, x1))) ** 2
        cov[:3, :] = 0.0
        cov[:, :3] = 0.0
        cov[:3, :3] = UNKNOWN_SCALE_VARIANCE * np.eye(3)
        cov[3:, 3:] += floor * np.eye(3)
    cov[3:, 3:] += float(rotation_floor) ** 2 * np.eye(3)
    return 0.5 * (cov + cov.T)


def with_rotation_sigma(geometry: GeometryResult, sigma_rad: float) -> GeometryResult:
    """``geometry`` with the rotation block of its pose covariance replaced by ``sigma_rad``^2 I
    (and no rotation-translation cross terms): a rotation error model that does not come from
    the first-order propagation (quality.ROTATION_SIGMA)."""
    if geometry.covariance is None:
        return geometry
    cov = np.array(geometry.covariance, dtype=np.float64)
    cov[3:, :3] = 0.0
    cov[:3, 3:] = 0.0
    cov[3:, 3:] = float(sigma_rad) ** 2 * np.eye(3)
    return dataclasses.replace(geometry, covariance=cov)
