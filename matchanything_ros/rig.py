"""Rig mode: the visible/thermal rig's geometry estimated over time, a gate and a drift alarm.

A visible and a thermal camera bolted together keep the same relative geometry in every frame.
:class:`RigEstimator` pools the per-frame inlier correspondences of the last ``window`` frames
(at most ``max_points`` per frame) and refits one model to the pool with MAGSAC++, so the
estimate comes from the evidence of many frames, not from an average of per-frame answers:
wrong per-frame fits contribute points that do not agree with each other and lose the vote.

* ``homography`` (planar / far scenes, UAV nadir): H, visible px -> thermal px. Its uncertainty
  is the covariance of the four mapped image corners (8x8, px^2), by bootstrap over frames
  (frames drawn with replacement, least-squares refit on their inliers), so errors shared by
  the matches of one frame count once per frame, not once per match.
* ``essential`` (scenes with depth, needs K): rotation R and translation direction t (OpenCV,
  X1 = R X0 + t, |t| = 1), refined by Gauss-Newton on the Sampson distances of the pooled
  inliers; covariance of the thermal camera's pose in the visible frame (6x6, ROS order x, y, z,
  rot_x, rot_y, rot_z) by the same bootstrap, plus the unobservable scale along t.

The gate (:meth:`RigEstimator.update`) checks each OK per-frame result against the converged
estimate: corner distance between the frame's H and the rig's H, or the rotation angle and the
translation-direction angle between the frame's pose and the rig's, against a threshold plus
three sigma of the estimate. Frames beyond it are RIG_MISMATCH (not OK).

A frame the gate finds RIG_MISMATCH does not enter the estimate (it would drag the estimate
toward a changed rig and widen its sigma, hiding the change it shows); it still counts for the
drift alarm.

Drift alarm: a second, *candidate* estimate is fitted to the last ``recent`` frames only. When
it differs from the estimate beyond the gate and most recent frames agree with it and not with
the estimate, the rig is *disputed* (WARN); after ``alarm_frames`` such frames in a row the
geometry has *changed* (ERROR, held for ``alarm_hold`` frames): the estimate restarts from the
frames that agree with the candidate and re-converges as new frames arrive.
"""
from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .geometry.warp import apply_homography

RIG_MODES = {"homography": "homography", "affine": "homography", "essential": "essential"}
#: per-frame status of an OK geometry the rig estimate disagrees with
RIG_MISMATCH = "RIG_MISMATCH"
#: rig states, in diagnostics and the replay timings (level: 0 OK, 1 WARN, 2 ERROR)
CONVERGING, TRACKING, DISPUTED, CHANGED, UNSUPPORTED = "CONVERGING", "TRACKING", "DISPUTED", "CHANGED", "UNSUPPORTED"
UNKNOWN_SCALE_VARIANCE = 1.0e6  # as geometry.pose: two views do not observe the baseline length
_BOOTSTRAP = 24
#: inliers pooled over the window at most (the defaults, 30 frames x 300, stay below it)
POOL_POINTS = 12_000
BOOTSTRAP_ITERS = 3  # Gauss-Newton iterations of each essential bootstrap refit
_AGREE = 0.5  # a frame agrees with a model when this share of its inliers fits it
#: essential rig: a translation direction with a larger bootstrap sigma counts as not observable
MAX_TRANSLATION_SIGMA_DEG = 10.0


@dataclass
class RigConfig:
    """Rig-mode parameters (ROS parameters ``rig.*``)."""

    enabled: bool = False  # estimate the rig over time and gate the per-frame results
    window: int = 30  # frames whose inliers are pooled for the estimate
    max_points: int = 300  # inliers kept per frame (random subset), bounds the pool
    min_frames: int = 5  # frames of evidence before the estimate gates anything
    gate_px: float = 6.0  # homography: max corner distance (px) frame H <-> rig H (+ 3 sigma)
    gate_deg: float = 1.0  # essential: max rotation angle (deg) frame <-> rig (+ 3 sigma)
    gate_translation_deg: float = 15.0  # essential: max translation-direction angle (deg, + 3 sigma)
    recent: int = 6  # frames of the candidate estimate that watches for a changed rig
    # frames in a row the candidate must win before the rig counts as changed. 1 (was 3): chosen
    # by scripts/drift_study.py on the fit drives (no false alarm in 8 sequences, 4 of them
    # without a change; then the shortest ERROR delay), checked on the others (docs/ACCURACY.md)
    alarm_frames: int = 1
    alarm_hold: int = 50  # frames the ERROR is held after a change
    # Essential: the bootstrap over frames sees how much frames disagree, not the error they
    # share. Cross-modal matches carry structured errors of a fraction of a pixel (not noise:
    # with ground-truth-correct matches only, the pooled direction is still off by up to 3.6 deg
    # where least squares claims 0.6 deg), so the covariance gets a floor the bootstrap cannot
    # give: systematic_px per rotation axis (as a shift of that size at the focal length) and
    # systematic_deg on the translation direction (per tangent axis). Chosen on six synthetic
    # fixed-rig sequences so that NEES stays in its 95 % bounds (docs/ACCURACY.md, "Rig mode";
    # scripts/rig_study.py).
    systematic_px: float = 1.0
    systematic_deg: float = 3.0
    # Two-rate rig (rig_refresh.py): a second, slower and more accurate model ("" = off) matches
    # every `refresh_every`-th pair in the background and adds its fit to the estimate, while the
    # pipeline's own model answers every frame and is gated against the estimate.
    refresh_model: str = ""
    refresh_weights: str = ""  # its weights ("" = its local cache)
    refresh_every: int = 10  # pairs between two refreshes (a busy refresher skips its turn)
    refresh_only: bool = False  # the estimate pools only the refresh model's frames
    refresh_wait: bool = False  # run each refresh inline (deterministic: bag evaluation)

    def validate(self) -> None:
        if self.window < 2:
            raise ValueError(f"rig.window must be >= 2, got {self.window}")
        if self.max_points < 8:
            raise ValueError(f"rig.max_points must be >= 8, got {self.max_points}")
        if not 1 <= self.min_frames <= self.window:
            raise ValueError(f"rig.min_frames must be in [1, rig.window], got {self.min_frames}")
        if not 2 <= self.recent <= self.window:
            raise ValueError(f"rig.recent must be in [2, rig.window], got {self.recent}")
        for name in ("gate_px", "gate_deg", "gate_translation_deg"):
            if not getattr(self, name) > 0:
                raise ValueError(f"rig.{name} must be > 0, got {getattr(self, name)}")
        if self.alarm_frames < 1 or self.alarm_hold < 0:
            raise ValueError("rig.alarm_frames must be >= 1 and rig.alarm_hold >= 0")
        if self.systematic_px < 0:
            raise ValueError(f"rig.systematic_px must be >= 0, got {self.systematic_px}")
        if not 0 <= self.systematic_deg < 90:
            raise ValueError(f"rig.systematic_deg must be in [0, 90), got {self.systematic_deg}")
        if self.refresh_every < 1:
            raise ValueError(f"rig.refresh_every must be >= 1, got {self.refresh_every}")
        if self.refresh_only and not self.refresh_model:
            raise ValueError("rig.refresh_only needs rig.refresh_model")


@dataclass
class RigModel:
    """One rig geometry: ``H`` (homography mode) or ``R``, ``t`` (essential mode)."""

    mode: str
    H: np.ndarray | None = None
    R: np.ndarray | None = None
    t: np.ndarray | None = None
    translation_observable: bool = True


@dataclass
class RigEstimate:
    """A snapshot of the rig estimate (thread-safe copy for publishing and diagnostics)."""

    mode: str
    model: RigModel
    covariance: np.ndarray | None  # H: 8x8 corners (px^2); E: 6x6 pose, ROS order
    sigma: float  # H: RMS corner sigma (px); E: rotation sigma (deg)
    sigma_translation_deg: float | None  # E only
    frames: int  # frames pooled
    points: int  # pooled inliers supporting the estimate
    converged: bool
    state: str
    level: int
    message: str
    image_size: tuple[int, int]  # visible (w, h)
    updates: int  # frames seen so far
    changes: int  # how many times the rig was found changed
    version: int  # increments when the estimate is refitted
    sources: dict[str, int] = field(default_factory=dict)  # frames pooled per model ("": the frame model)


@dataclass
class RigCheck:
    """The gate's verdict on one frame."""

    status: str  # "OK", RIG_MISMATCH, or "UNCHECKED" (no converged estimate / frame not OK)
    distance: float | None = None  # H: corner px; E: rotation deg
    distance_translation_deg: float | None = None
    threshold: float | None = None
    agreement: float | None = None  # share of the frame's inliers that fit the rig model
    state: str = CONVERGING
    level: int = 0
    unit: str = "px"  # of distance / threshold: "px" (homography) or "deg" (essential)

    @property
    def mismatch(self) -> bool:
        return self.status == RIG_MISMATCH

    def describe(self) -> str:
        if self.status != RIG_MISMATCH:
            return f"rig {self.state.lower()}"
        text = f"disagrees with the rig estimate: {self.distance:.2f} {self.unit} (limit {self.threshold:.2f})"
        if self.distance_translation_deg is not None:
            text += f" (translation {self.distance_translation_deg:.1f} deg)"
        return text


@dataclass
class _Frame:
    index: int
    p0: np.ndarray  # homography: px; essential: normalised coordinates
    p1: np.ndarray
    source: str = ""  # the model whose matches these are


# -- model operations -------------------------------------------------------------------------
def _corners(w: int, h: int) -> np.ndarray:
    return np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)



def corner_distance(Ha: np.ndarray, Hb: np.ndarray, size: tuple[int, int]) -> float:
    """Mean distance (px) of the visible image's corners mapped by ``Ha`` and ``Hb``."""
    c = _corners(*size)
    d = np.linalg.norm(apply_homography(Ha, c) - apply_homography(Hb, c), axis=1).mean()
    return float(d) if np.isfinite(d) else math.inf


def rotation_angle_deg(Ra: np.ndarray, Rb: np.ndarray) -> float:
    c = np.clip((np.trace(Ra.T @ Rb) - 1.0) / 2.0, -1.0, 1.0)
    return float(np.degrees(np.arccos(c)))


def direction_angle_deg(ta: np.ndarray, tb: np.ndarray) -> float:
    """Angle between two translation directions, sign-invariant (E fixes t only up to sign)."""
    c = abs(float(ta @ tb) / max(np.linalg.norm(ta) * np.linalg.norm(tb), 1e-300))
    return float(np.degrees(np.arccos(min(1.0, c))))


def _skew(v: np.ndarray) -> np.ndarray:
    return np.array([[0.0, -v[2], v[1]], [v[2], 0.0, -v[0]], [-v[1], v[0], 0.0]])


def _sampson(R: np.ndarray, t: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> np.ndarray:
    return _sampson_h(R, t, np.c_[x0, np.ones(len(x0))], np.c_[x1, np.ones(len(x1))])


def _sampson_h(R: np.ndarray, t: np.ndarray, h0: np.ndarray, h1: np.ndarray) -> np.ndarray:
    """Signed Sampson distances of homogeneous correspondences for E = [t]x R (as
    geometry.sampson_distances, without rebuilding the homogeneous arrays per call: the
    refinement's numeric Jacobian evaluates this a few hundred times per frame)."""
    E = _skew(t) @ R
    Ex0 = h0 @ E.T
    Etx1 = h1 @ E
    num = np.einsum("ij,ij->i", h1, Ex0)
    den = Ex0[:, 0] ** 2 + Ex0[:, 1] ** 2 + Etx1[:, 0] ** 2 + Etx1[:, 1] ** 2
    return num / np.sqrt(np.maximum(den, 1e-300))


def _tangent(t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.eye(3)[int(np.argmin(np.abs(t)))]
    b1 = np.cross(t, helper)
    b1 /= np.linalg.norm(b1)
    return b1, np.cross(t, b1)


def _perturb(R, t, basis, p):
    import cv2

    t2 = t + p[3] * basis[0] + p[4] * basis[1]
    return R @ cv2.Rodrigues(np.asarray(p[:3], np.float64).reshape(3, 1))[0], t2 / np.linalg.norm(t2)


def refine_pose(
    R: np.ndarray, t: np.ndarray, x0: np.ndarray, x1: np.ndarray, iters: int = 4, scale: float | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Gauss-Newton on the Sampson distances (normalised coordinates) over the 5 degrees of
    freedom of (R, t/|t|), from (R, t). ``scale`` (normalised units): Cauchy weights
    (iteratively reweighted), so wrong matches that passed the inlier threshold pull less.
    Returns the refined (R, t)."""
    t = t / np.linalg.norm(t)
    eps = 1e-6
    h0, h1 = np.c_[x0, np.ones(len(x0))], np.c_[x1, np.ones(len(x1))]

    def cost(r):
        return np.sum(np.log1p((r / scale) ** 2)) if scale else np.sum(r**2)

    for _ in range(iters):
        basis = _tangent(t)
        r0 = _sampson_h(R, t, h0, h1)
        w = np.sqrt(1.0 / (1.0 + (r0 / scale) ** 2)) if scale else np.ones_like(r0)
        J = np.empty((len(r0), 5))
        for k in range(5):
            d = np.zeros(5)
            d[k] = eps
            J[:, k] = (_sampson_h(*_perturb(R, t, basis, d), h0, h1) - _sampson_h(*_perturb(R, t, basis, -d), h0, h1)) / (2 * eps)
        Jw = J * w[:, None]
        A = Jw.T @ Jw
        step = -np.linalg.solve(A + 1e-9 * np.trace(A) * np.eye(5), Jw.T @ (w * r0))
        R2, t2 = _perturb(R, t, basis, step)
        if cost(_sampson_h(R2, t2, h0, h1)) >= cost(r0):
            break
        R, t = R2, t2
        if np.linalg.norm(step) < 1e-9:
            break
    return R, t


def _log_so3(M: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.Rodrigues(np.asarray(M, np.float64))[0].ravel()


class _Homography:
    """Homography-mode operations; points in pixels."""

    mode = "homography"

    def __init__(self, threshold: float, size: tuple[int, int]):
        self.threshold = threshold
        self.size = size

    def frame_points(self, result: Any, K0, K1):
        m = np.asarray(result.geometry.inliers, bool)
        return result.matches.kpts0[m].astype(np.float64), result.matches.kpts1[m].astype(np.float64)

    def frame_model(self, result: Any) -> RigModel | None:
        g = result.geometry
        return RigModel(self.mode, H=np.asarray(g.matrix, np.float64)) if g.matrix is not None else None

    def fit(self, p0, p1, start: RigModel | None = None) -> tuple[RigModel, np.ndarray] | None:
        # ``start`` is not needed here: the pooled homography refit is stable frame to frame
        import cv2

        if len(p0) < 8:
            return None
        try:
            H, mask = cv2.findHomography(p0, p1, cv2.USAC_MAGSAC, self.threshold, maxIters=10000, confidence=0.9999)
        except cv2.error:
            return None
        if H is None or mask is None or not np.all(np.isfinite(H)) or abs(H[2, 2]) <= 1e-12:
            return None
        return RigModel(self.mode, H=H / H[2, 2]), mask.ravel().astype(bool)

    def bootstrap(self, model: RigModel, p0, p1, samples: list[np.ndarray]) -> list[RigModel]:
        """A least-squares refit per bootstrap sample (row indices into the pool's inliers)."""
        import cv2

        out = []
        for idx in samples:
            if len(idx) < 4:
                continue
            H, _ = cv2.findHomography(p0[idx], p1[idx], 0)
            # a degenerate sample (e.g. drawn from one frame's collinear points) can give
            # H[2, 2] = 0: no finite model, skip it instead of carrying NaNs into the spread
            if H is not None and np.all(np.isfinite(H)) and abs(H[2, 2]) > 1e-12:
                out.append(RigModel(self.mode, H=H / H[2, 2]))
        return out

    def residuals(self, model: RigModel, p0, p1) -> np.ndarray:
        return np.linalg.norm(apply_homography(model.H, p0) - p1, axis=1)

    def distance(self, a: RigModel, b: RigModel) -> tuple[float, float | None]:
        return corner_distance(a.H, b.H, self.size), None

    def covariance(self, est: RigModel, samples: list[RigModel]) -> tuple[np.ndarray, float, None]:
        c = _corners(*self.size)
        ref = apply_homography(est.H, c).ravel()
        d = np.array([apply_homography(s.H, c).ravel() - ref for s in samples])
        cov = d.T @ d / max(1, len(d) - 1)
        return cov, float(np.sqrt(np.trace(cov) / 4.0)), None


class _Essential:
    """Essential-mode operations; points in normalised coordinates, thresholds in pixels via
    the mean focal length (as geometry's essential fit)."""

    mode = "essential"

    def __init__(self, threshold: float, focal: float, systematic_px: float = 0.0, systematic_deg: float = 0.0):
        self.threshold = threshold
        self.focal = focal
        self.systematic_px = systematic_px
        self.systematic_deg = systematic_deg
        # Cauchy scale of the refinement: a quarter of the inlier threshold. With the pool's
        # thousands of inliers the wrong matches that still pass the threshold (off their
        # epipolar line by 1-2 px) biased a plain least-squares refit (docs/ACCURACY.md)
        self.robust_scale = 0.25 * threshold / focal

    def frame_points(self, result: Any, K0, K1):
        import cv2

        m = np.asarray(result.geometry.inliers, bool)
        if K0 is None or K1 is None or not m.any():
            return np.empty((0, 2)), np.empty((0, 2))
        n0 = cv2.undistortPoints(result.matches.kpts0[m].astype(np.float64).reshape(-1, 1, 2), K0, None).reshape(-1, 2)
        n1 = cv2.undistortPoints(result.matches.kpts1[m].astype(np.float64).reshape(-1, 1, 2), K1, None).reshape(-1, 2)
        return n0, n1

    def frame_model(self, result: Any) -> RigModel | None:
        g = result.geometry
        if g.R is None or g.t is None:
            return None
        return RigModel(self.mode, R=np.asarray(g.R, np.float64), t=np.asarray(g.t, np.float64).reshape(3),
                        translation_observable=bool(g.translation_observable))

    def fit(self, x0, x1, start: RigModel | None = None) -> tuple[RigModel, np.ndarray] | None:
        """MAGSAC++ on the pool, then a robust refinement; with ``start`` (the previous
        estimate) also that estimate refined on the pool, and the one with the lower truncated
        cost wins. The translation direction of a short-baseline rig is weakly determined, so
        independent MAGSAC++ runs on nearly the same pool land in different minima: without
        the warm start the estimate jumped by 20-40 deg between frames (docs/ACCURACY.md)."""
        fresh = self._fit_fresh(x0, x1)
        if start is None or start.R is None or len(x0) < 8:
            return fresh
        m = self.residuals(start, x0, x1) <= self.threshold
        if m.sum() < 8:
            return fresh
        R, t = refine_pose(start.R, start.t, x0[m], x1[m], iters=8, scale=self.robust_scale)
        m = self.residuals(RigModel(self.mode, R=R, t=t), x0, x1) <= self.threshold
        warm = RigModel(self.mode, R=R, t=_facing(R, t, x0[m], x1[m])), m
        if fresh is None or self._cost(warm[0], x0, x1) <= self._cost(fresh[0], x0, x1):
            return warm
        return fresh

    def _cost(self, model: RigModel, x0, x1) -> float:
        """Truncated quadratic (MSAC) cost of the pool, px^2."""
        return float(np.sum(np.minimum(self.residuals(model, x0, x1), self.threshold) ** 2))

    def _fit_fresh(self, x0, x1) -> tuple[RigModel, np.ndarray] | None:
        import cv2

        if len(x0) < 8:
            return None
        f = self.focal
        Kf = np.diag([f, f, 1.0])
        try:
            E, mask = cv2.findEssentialMat(x0 * f, x1 * f, Kf, cv2.USAC_MAGSAC, 0.9999, self.threshold, 10000)
        except cv2.error:
            return None
        if E is None or mask is None or E.shape[0] < 3 or not np.all(np.isfinite(E)):
            return None
        m = mask.ravel().astype(bool)
        good, R, t, pose_mask, _ = cv2.recoverPose(E[:3, :3], x0, x1, np.eye(3), distanceThresh=1e6,
                                                   mask=m.astype(np.uint8).reshape(-1, 1))
        if R is None or good == 0:
            return None
        R, t = refine_pose(R, t.ravel(), x0[m], x1[m], iters=8, scale=self.robust_scale)
        return RigModel(self.mode, R=R, t=_facing(R, t, x0[m], x1[m])), m

    def bootstrap(self, model: RigModel, x0, x1, samples: list[np.ndarray]) -> list[RigModel]:
        """A robust Gauss-Newton refit per bootstrap sample, started at the estimate. (A single
        linearised step per sample is 2x faster but gave half the spread, an over-confident
        covariance, on clean synthetic data: test_rig.py's NEES check.)"""
        out = []
        for idx in samples:
            if len(idx) < 6:
                continue
            R, t = refine_pose(model.R, model.t, x0[idx], x1[idx], iters=BOOTSTRAP_ITERS, scale=self.robust_scale)
            out.append(RigModel(self.mode, R=R, t=t, translation_observable=model.translation_observable))
        return out

    def residuals(self, model: RigModel, x0, x1) -> np.ndarray:
        return np.abs(_sampson(model.R, model.t, x0, x1)) * self.focal

    def distance(self, a: RigModel, b: RigModel) -> tuple[float, float | None]:
        """Rotation angle, and the translation-direction angle when both the frame ``a`` and the
        rig estimate ``b`` claim a direction. A frame that could not observe its direction
        publishes it with the unknown-scale variance on every axis (a rotation-only claim), so
        its direction is not held against it."""
        rot = rotation_angle_deg(a.R, b.R)
        both = a.translation_observable and b.translation_observable
        return rot, (direction_angle_deg(a.t, b.t) if both else None)

    def covariance(self, est: RigModel, samples: list[RigModel]) -> tuple[np.ndarray, float, float]:
        """Bootstrap spread plus the systematic floors (RigConfig): ``systematic_px`` / focal per
        rotation axis, ``systematic_deg`` per tangent axis of the translation direction. The
        direction's observability is judged on the bootstrap alone (the floor is not evidence)."""
        R01, p01 = est.R.T, -est.R.T @ est.t
        d = []
        for s in samples:
            t = s.t if s.t @ est.t >= 0 else -s.t
            d.append(np.r_[-s.R.T @ t - p01, _log_so3(s.R.T @ R01.T)])
        d = np.asarray(d)
        cov = d.T @ d / max(1, len(d) - 1)
        u = p01 / np.linalg.norm(p01)
        shift = self.systematic_px / self.focal  # radians at the image centre
        cov[3:, 3:] += shift ** 2 * np.eye(3)
        rot_sigma = float(np.degrees(np.sqrt(np.trace(cov[3:, 3:]) / 3.0)))
        # direction sigma: spread of the unit position on its tangent plane
        tangential = cov[:3, :3] - np.outer(u, u) * float(u @ cov[:3, :3] @ u)
        spread = float(np.degrees(np.sqrt(max(np.trace(tangential), 0.0) / 2.0)))
        est.translation_observable = spread <= MAX_TRANSLATION_SIGMA_DEG
        floor = np.radians(self.systematic_deg) * np.linalg.norm(p01)  # unit-length position: radians
        trans_sigma = float(np.hypot(spread, self.systematic_deg))
        if est.translation_observable:
            cov[:3, :3] += floor**2 * (np.eye(3) - np.outer(u, u)) + UNKNOWN_SCALE_VARIANCE * np.outer(u, u)
        else:
            cov[:3, :] = 0.0
            cov[:, :3] = 0.0
            cov[:3, :3] = UNKNOWN_SCALE_VARIANCE * np.eye(3)
        return 0.5 * (cov + cov.T), rot_sigma, trans_sigma


def _facing(R, t, x0, x1) -> np.ndarray:
    """t or -t: the sign that puts most of the inliers in front of both cameras. (Whether the
    direction is observable is decided by its bootstrap spread, covariance above, not by the
    share in front: among thousands of pooled inliers some wrong ones always land behind.)"""
    return t if _in_front(R, t, x0, x1) >= 0.5 else -t


def _in_front(R, t, x0, x1) -> float:
    """Share of correspondences triangulated in front of both cameras (midpoint method)."""
    h0 = np.c_[x0, np.ones(len(x0))]
    h1 = np.c_[x1, np.ones(len(x1))]
    # depth z0 along ray0 and z1 along ray1 with z1 h1 = R z0 h0 + t (least squares per point)
    a = h0 @ R.T
    b = h1
    # solve [a, -b] [z0, z1]^T = -t
    aa = np.einsum("ij,ij->i", a, a)
    bb = np.einsum("ij,ij->i", b, b)
    ab = np.einsum("ij,ij->i", a, b)
    at = a @ t
    bt = b @ t
    det = aa * bb - ab * ab
    ok = np.abs(det) > 1e-15
    z0 = np.where(ok, (-at * bb + bt * ab) / np.where(ok, det, 1.0), 0.0)
    z1 = np.where(ok, (aa * bt - ab * at) / np.where(ok, det, 1.0), 0.0)
    return float(np.mean((z0 > 0) & (z1 > 0))) if len(x0) else 0.0


# -- the estimator ------------------------------------------------------------------------------
class RigEstimator:
    """Running estimate of a rigid visible/thermal rig, the per-frame gate and the drift alarm.

    Call :meth:`update` once per processed pair (in order); read :meth:`snapshot` from any
    thread. ``threshold`` is the inlier threshold in px (the pipeline's ``ransac_threshold``)."""

    def __init__(self, config: RigConfig, geometry: str, threshold: float = 3.0, seed: int = 0):
        config.validate()
        self.config = config
        self.geometry = geometry
        self.mode = RIG_MODES.get(geometry)
        self.threshold = float(threshold)
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._ops: Any = None
        self._window: deque[_Frame] = deque(maxlen=config.window)  # frames of the estimate
        self._recent: deque[_Frame] = deque(maxlen=config.recent)  # every frame: the alarm's
        self._estimate: RigModel | None = None
        self._estimate_support = 0
        self._cov: np.ndarray | None = None
        self._sigma = math.inf
        self._sigma_t: float | None = None
        self._image_size = (0, 0)
        self._updates = 0
        self._changes = 0
        self._version = 0
        self._dispute_run = 0
        self._hold = 0
        self._state = UNSUPPORTED if self.mode is None else CONVERGING
        self._message = (f"rig mode needs geometry homography, affine or essential, not {geometry!r}"
                         if self.mode is None else "waiting for evidence")

    # -- public ---------------------------------------------------------------------------
    def update(self, result: Any, K0: np.ndarray | None = None, K1: np.ndarray | None = None,
               source: str = "", pool: bool = True) -> RigCheck:
        """Add a frame's evidence, refit, run the drift alarm, and gate the frame. ``source``
        names the model that matched it (diagnostics count the estimate's frames per model);
        ``pool`` False: the frame is gated and watched by the alarm but not pooled into the
        estimate (the two-rate rig's ``refresh_only``)."""
        with self._lock:
            self._updates += 1
            if self.mode is None:
                return RigCheck("UNCHECKED", state=self._state, level=1)
            if self._ops is None and not self._init_ops(result, K0, K1):
                return RigCheck("UNCHECKED", state=self._state, level=0)
            frame = self._frame(result, K0, K1)
            check = self._gate(result, frame)  # against the estimate before this frame
            if frame is not None:
                frame.source = source
                self._recent.append(frame)
                if pool and not check.mismatch:
                    self._window.append(frame)
                    self._refit()
                self._watch()
            self._hold = max(0, self._hold - 1)
            check.state, check.level = self._public_state(), self._level()
            return check

    def snapshot(self) -> RigEstimate | None:
        """The current estimate (None before the first fit)."""
        with self._lock:
            if self._estimate is None:
                return None
            return RigEstimate(
                mode=self.mode or "", model=self._estimate,
                covariance=None if self._cov is None else self._cov.copy(),
                sigma=self._sigma, sigma_translation_deg=self._sigma_t, frames=len(self._window),
                points=self._estimate_support, converged=self._converged(), state=self._public_state(),
                level=self._level(), message=self._message, image_size=self._image_size,
                updates=self._updates, changes=self._changes, version=self._version, sources=self._sources(),
            )

    def status(self) -> tuple[int, str, dict[str, Any]]:
        """(level, message, values) for diagnostics."""
        with self._lock:
            values: dict[str, Any] = {
                "rig_mode": self.mode or self.geometry, "rig_state": self._public_state(),
                "rig_frames": len(self._window), "rig_points": self._estimate_support,
                "rig_updates": self._updates, "rig_changes": self._changes,
            }
            sources = self._sources()
            if len(sources) > 1 or "" not in sources:  # which models the estimate pools
                values["rig_sources"] = ", ".join(f"{k or 'frame model'}: {v}" for k, v in sorted(sources.items()))
            if self.mode == "homography":
                values["rig_corner_sigma_px"] = self._sigma
            elif self.mode == "essential":
                values["rig_rotation_sigma_deg"] = self._sigma
                if self._sigma_t is not None:
                    values["rig_translation_sigma_deg"] = self._sigma_t
            return self._level(), self._message, values

    # -- internals ------------------------------------------------------------------------
    def _sources(self) -> dict[str, int]:
        """Frames of the estimate's window per source model."""
        counts: dict[str, int] = {}
        for frame in self._window:
            counts[frame.source] = counts.get(frame.source, 0) + 1
        return counts

    def _public_state(self) -> str:
        return CHANGED if self._hold > 0 and self._state != DISPUTED else self._state

    def _level(self) -> int:
        if self._hold > 0:
            return 2
        return 1 if self._state in (DISPUTED, UNSUPPORTED) else 0

    def _init_ops(self, result, K0, K1) -> bool:
        h, w = result.visible_shape[:2]
        self._image_size = (int(w), int(h))
        if self.mode == "homography":
            self._ops = _Homography(self.threshold, self._image_size)
            return True
        if K0 is None or K1 is None:
            self._message = "essential rig needs CameraInfo (K) of both cameras"
            return False
        focal = float(np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]]))
        self._ops = _Essential(self.threshold, focal, self.config.systematic_px, self.config.systematic_deg)
        return True

    def _frame(self, result, K0, K1) -> _Frame | None:
        g = result.geometry
        inliers = np.asarray(g.inliers, bool).reshape(-1)
        if len(inliers) != len(result.matches) or inliers.sum() < 8:
            return None
        p0, p1 = self._ops.frame_points(result, K0, K1)
        ok = np.isfinite(p0).all(axis=1) & np.isfinite(p1).all(axis=1)
        p0, p1 = p0[ok], p1[ok]
        if len(p0) < 8:
            return None
        per_frame = self.per_frame_points()
        if len(p0) > per_frame:
            keep = self._rng.choice(len(p0), per_frame, replace=False)
            p0, p1 = p0[keep], p1[keep]
        return _Frame(self._updates, p0, p1)

    def per_frame_points(self) -> int:
        """Inliers kept per frame: ``rig.max_points``, and no more than :data:`POOL_POINTS` over
        the window, so the pool (memory, and the time of every frame's refit and bootstrap)
        stays bounded whatever ``rig.window`` x ``rig.max_points`` allows (issue 18, item 5:
        window 1000 x 100,000 had taken one frame from 0.6 to 4.8 s and growing)."""
        return max(8, min(self.config.max_points, POOL_POINTS // self.config.window))

    def _agreement(self, model: RigModel, frame: _Frame) -> float:
        return float(np.mean(self._ops.residuals(model, frame.p0, frame.p1) <= self.threshold))

    def _converged(self) -> bool:
        c = self.config
        if self._estimate is None or len(self._window) < c.min_frames:
            return False
        limit = c.gate_px if self.mode == "homography" else c.gate_deg
        return self._sigma <= limit / 2.0

    def _thresholds(self) -> tuple[float, float]:
        c = self.config
        if self.mode == "homography":
            return c.gate_px + 3 * self._sigma, math.inf
        return c.gate_deg + 3 * self._sigma, c.gate_translation_deg + 3 * (self._sigma_t or 0.0)

    def _gate(self, result, frame: _Frame | None) -> RigCheck:
        # gate as soon as the bootstrap gives a spread (3 frames): the threshold widens by
        # 3 sigma, so an early estimate rejects only what is far from it
        if not result.geometry.ok or self._estimate is None or not math.isfinite(self._sigma):
            return RigCheck("UNCHECKED")
        model = self._ops.frame_model(result)
        if model is None:
            return RigCheck("UNCHECKED")
        dist, dist_t = self._ops.distance(model, self._estimate)
        limit, limit_t = self._thresholds()
        agreement = None if frame is None else self._agreement(self._estimate, frame)
        bad = dist > limit or (dist_t is not None and dist_t > limit_t)
        return RigCheck(RIG_MISMATCH if bad else "OK", dist, dist_t if self.mode == "essential" else None,
                        limit, agreement, unit="px" if self.mode == "homography" else "deg")

    def _pool(self, frames) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        frames = list(frames)
        p0 = np.concatenate([f.p0 for f in frames])
        p1 = np.concatenate([f.p1 for f in frames])
        owner = np.concatenate([np.full(len(f.p0), i) for i, f in enumerate(frames)])
        return p0, p1, owner

    def _fit(self, frames, start: RigModel | None = None) -> tuple[RigModel, np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        p0, p1, owner = self._pool(frames)
        fit = self._ops.fit(p0, p1, start)
        if fit is None:
            return None
        model, mask = fit
        return model, mask, p0, p1, owner

    def _refit(self, warm: bool = True) -> None:
        frames = list(self._window)
        fit = self._fit(frames, self._estimate if warm else None)
        if fit is None:
            return
        model, mask, p0, p1, owner = fit
        self._estimate, self._estimate_support = model, int(mask.sum())
        self._version += 1
        # bootstrap over frames: draw frames with replacement, refit their inliers
        n = len(frames)
        samples = []
        if n >= 3:
            inl = np.flatnonzero(mask)
            by_frame = [np.flatnonzero(owner[inl] == i) for i in range(n)]
            draws = [np.concatenate([by_frame[i] for i in self._rng.integers(0, n, n)]) for _ in range(_BOOTSTRAP)]
            samples = self._ops.bootstrap(model, p0[inl], p1[inl], draws)
        if len(samples) >= 8:
            self._cov, self._sigma, self._sigma_t = self._ops.covariance(model, samples)
        else:
            self._cov, self._sigma, self._sigma_t = None, math.inf, None
        if self._state == CONVERGING and self._converged():
            self._state = TRACKING
        self._message = self._describe()

    def _describe(self) -> str:
        sig = (f"corner sigma {self._sigma:.2f} px" if self.mode == "homography"
               else f"rotation sigma {self._sigma:.3f} deg" + (f", translation sigma {self._sigma_t:.2f} deg"
                                                              if self._sigma_t is not None else ""))
        text = f"{len(self._window)} frame(s), {self._estimate_support} pooled inliers, {sig}"
        if not self._converged():
            text = "converging: " + text
        if self._hold > 0 and self._changes:
            text = f"rig geometry changed (change {self._changes}), estimate restarted from the frames since: " + text
        return text

    def _watch(self) -> None:
        """The drift alarm: a candidate from the recent frames against the estimate."""
        c = self.config
        if not self._converged() and self._state != DISPUTED:
            self._dispute_run = 0
            return
        recent = list(self._recent)
        if len(recent) < c.recent:
            return
        # frames that do not fit the estimate; only they can carry a different geometry
        outside = [f for f in recent if self._agreement(self._estimate, f) < _AGREE]
        needed = (c.recent + 1) // 2
        if len(outside) >= needed:
            fit = self._fit(outside)
            if fit is not None:
                candidate = fit[0]
                support = [f for f in outside if self._agreement(candidate, f) >= _AGREE]
                dist, dist_t = self._ops.distance(candidate, self._estimate)
                limit, limit_t = self._thresholds()
                differs = dist > limit or (dist_t is not None and dist_t > limit_t)
                if differs and len(support) >= needed:
                    self._dispute_run += 1
                    unit = "px" if self.mode == "homography" else "deg"
                    self._state = DISPUTED
                    self._message = (f"rig disputed: {len(support)} of the last {c.recent} frames fit a geometry "
                                     f"{dist:.2f} {unit} from the estimate ({self._dispute_run}/{c.alarm_frames})")
                    if self._dispute_run >= c.alarm_frames:
                        self._switch(support)
                    return
        self._dispute_run = 0
        if self._state == DISPUTED:
            self._state = TRACKING if self._converged() else CONVERGING
            self._message = self._describe()

    def _switch(self, frames: list[_Frame]) -> None:
        """The rig changed: restart the estimate from the frames that show the new geometry."""
        self._changes += 1
        self._hold = self.config.alarm_hold
        self._window.clear()
        self._window.extend(frames)
        self._recent.clear()
        self._dispute_run = 0
        self._state = CONVERGING
        self._refit(warm=False)  # the old estimate is what the evidence left
