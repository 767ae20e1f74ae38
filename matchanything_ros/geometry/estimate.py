"""Robust two-view geometry with OpenCV's USAC MAGSAC++ (no hand-written RANSAC).

One entry point, :func:`estimate_geometry`, for the four models the package supports between a
visible (0) and a thermal (1) image: homography, affine, fundamental and essential (relative
pose). Failures that depend on the data (too few matches, degenerate point sets, missing
intrinsics, OpenCV errors) come back as a status with a message, never as an exception, so the
ROS node can publish diagnostics and carry on.
"""
from __future__ import annotations

import numpy as np

from .pose import pose_covariance, rotation_parallax, sampson_distances
from .result import GeometryResult, GeometryStatus

GEOMETRY_MODES = ("homography", "affine", "fundamental", "essential", "none")
#: smallest sample each model's minimal solver needs
MINIMAL_SAMPLE = {"homography": 4, "affine": 3, "fundamental": 8, "essential": 5}
#: essential mode: below this fraction of inliers in front of both cameras (cheirality) the
#: translation direction is reported as not observable. With enough parallax ~all inliers pass;
#: without, about half do (test_geometry.py::test_distant_scene_translation_not_observable).
MIN_IN_FRONT_FRACTION = 0.9
#: essential mode: below this median parallax (px at the mean focal length) left after the
#: rotation the translation direction is reported as not observable either. On the synthetic
#: stereo pairs of scripts/verdict_study.py (0.1-0.3 m baselines), fits that pass the cheirality
#: test with less parallax are off by 11-40 deg in translation direction (docs/ACCURACY.md).
MIN_PARALLAX_PX = 20.0


def _fail(mode, status, message, n, inliers=None) -> GeometryResult:
    mask = np.zeros(n, dtype=bool) if inliers is None else inliers
    return GeometryResult(mode=mode, status=status, message=message, matrix=None, inliers=mask)


def _spread(points: np.ndarray) -> tuple[float, float]:
    """Standard deviations along the two principal axes of a 2D point set."""
    centred = points - points.mean(axis=0)
    s = np.linalg.svd(centred, compute_uv=False) / np.sqrt(max(len(points), 1))
    return float(s[0]), float(s[1]) if len(s) > 1 else 0.0


def _degenerate_reason(p0: np.ndarray, p1: np.ndarray, tol: float) -> str | None:
    """Why these correspondences cannot constrain a 2D model (None if they can): all points
    (nearly) identical, or all on one line within ``tol`` pixels, in either image."""
    for name, pts in (("visible", p0), ("thermal", p1)):
        major, minor = _spread(pts)
        if major <= tol:
            return f"all {name} points are (nearly) identical"
        if minor <= tol:
            return f"all {name} points lie on one line"
    return None


def _check_K(K, name: str) -> tuple[np.ndarray | None, str | None]:
    if K is None:
        return None, f"{name} is missing"
    try:
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
    except (TypeError, ValueError):
        return None, f"{name} is not a 3x3 camera matrix (got {np.shape(K)})"
    if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0 or abs(K[2, 2] - 1.0) > 1e-9:
        return None, f"{name} is not a valid camera matrix (need fx, fy > 0 and K[2,2] = 1)"
    return K, None


def estimate_geometry(
    kpts0: np.ndarray,
    kpts1: np.ndarray,
    mode: str,
    *,
    K0: np.ndarray | None = None,
    K1: np.ndarray | None = None,
    threshold_px: float = 3.0,
    confidence: float = 0.9999,
    min_matches: int = 12,
    max_iters: int = 10000,
    min_inlier_ratio: float = 0.0,
    covariance_inflation: float = 1.0,
    rotation_floor_px: float = 0.0,
) -> GeometryResult:
    """Fit ``mode`` to the correspondences kpts0 (visible px) <-> kpts1 (thermal px).

    Uses cv2.USAC_MAGSAC (MAGSAC++) with ``threshold_px`` as the inlier threshold. In essential
    mode the points are normalised with K0 / K1 (which may differ) and rescaled by the mean
    focal length, so the threshold keeps its meaning in pixels; the fit also returns R, t
    (cheirality-checked with cv2.recoverPose on the E inliers), ``translation_observable`` and
    a pose covariance. Status is OK only when at least ``max(min_matches, minimal sample)``
    inliers support a non-degenerate model and they are at least ``min_inlier_ratio`` of the
    (finite) matches; below that ratio the status is LOW_INLIER_RATIO (MAGSAC++ can find a
    couple of dozen "inliers" among mostly wrong matches; 0 disables the rule). Failed fits
    have no matrix; their inlier mask is kept when a fit was made. Non-finite keypoints are
    skipped (never inliers). Raises ValueError only for programming errors (unknown mode,
    mismatched arrays, bad threshold / confidence / ratio); everything data-dependent is a status.
    ``covariance_inflation`` multiplies the first-order pose covariance (see
    :func:`~matchanything_ros.geometry.pose.pose_covariance`; the pipeline passes the factor
    calibrated for real matches, :data:`~matchanything_ros.geometry.pose.POSE_COVARIANCE_INFLATION`)
    and ``rotation_floor_px`` (px at the mean focal length) is added to its rotation standard
    deviation (:data:`~matchanything_ros.geometry.pose.POSE_ROTATION_FLOOR_PX`).
    """
    if mode not in GEOMETRY_MODES:
        raise ValueError(f"geometry mode must be one of {GEOMETRY_MODES}, got {mode!r}")
    p0 = np.asarray(kpts0, dtype=np.float64).reshape(-1, 2)
    p1 = np.asarray(kpts1, dtype=np.float64).reshape(-1, 2)
    if len(p0) != len(p1):
        raise ValueError(f"kpts0 ({len(p0)}) and kpts1 ({len(p1)}) must have the same length")
    if not threshold_px > 0:
        raise ValueError(f"threshold_px must be > 0, got {threshold_px}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not 0.0 <= min_inlier_ratio < 1.0:
        raise ValueError(f"min_inlier_ratio must be in [0, 1), got {min_inlier_ratio}")
    n = len(p0)
    if mode == "none":
        return GeometryResult(mode, GeometryStatus.OK, "geometry disabled", None, np.ones(n, dtype=bool))

    if mode == "essential":
        K0, err0 = _check_K(K0, "K0 (visible intrinsics)")
        K1, err1 = _check_K(K1, "K1 (thermal intrinsics)")
        if err0 or err1:
            msg = "; ".join(e for e in (err0, err1) if e)
            return _fail(mode, GeometryStatus.NO_INTRINSICS, f"essential mode needs K0 and K1: {msg}", n)

    finite = np.isfinite(p0).all(axis=1) & np.isfinite(p1).all(axis=1)
    idx = np.flatnonzero(finite)
    need = max(int(min_matches), MINIMAL_SAMPLE[mode])
    if len(idx) < need:
        return _fail(mode, GeometryStatus.TOO_FEW_MATCHES, f"{len(idx)} matches, need at least {need}", n)
    q0, q1 = p0[idx], p1[idx]
    reason = _degenerate_reason(q0, q1, tol=1e-6 * max(1.0, float(np.abs(np.vstack([q0, q1])).max())))
    if reason:
        return _fail(mode, GeometryStatus.DEGENERATE, reason, n)

    import cv2

    try:
        fit = _FITTERS[mode](q0, q1, K0, K1, threshold_px, confidence, int(max_iters), (float(covariance_inflation), float(rotation_floor_px)))
    except cv2.error as exc:
        return _fail(mode, GeometryStatus.FAILED, f"OpenCV error: {str(exc).strip().splitlines()[-1]}", n)
    if fit is None:
        return _fail(mode, GeometryStatus.DEGENERATE, "OpenCV found no model for these points", n)
    matrix, sub_mask, extra = fit
    inliers = np.zeros(n, dtype=bool)
    inliers[idx[sub_mask]] = True
    count = int(sub_mask.sum())
    if count < need:
        return _fail(
            mode, GeometryStatus.TOO_FEW_MATCHES, f"only {count} inliers of {len(idx)} matches, need {need}", n, inliers
        )
    ratio = count / len(idx)
    if ratio < min_inlier_ratio:
        return _fail(
            mode,
            GeometryStatus.LOW_INLIER_RATIO,
            f"{count}/{len(idx)} inliers ({100 * ratio:.1f} %) < min_inlier_ratio {100 * min_inlier_ratio:g} %",
            n,
            inliers,
        )
    # A model carried by inliers along one line (within the threshold) is not determined.
    reason = _degenerate_reason(q0[sub_mask], q1[sub_mask], tol=threshold_px)
    if reason:
        return _fail(mode, GeometryStatus.DEGENERATE, f"inliers are degenerate: {reason}", n, inliers)
    rms = extra.pop("rms_residual_px", None)
    message = f"{count}/{len(idx)} inliers" + (f", RMS {rms:.2f} px" if rms is not None else "")
    if "note" in extra:
        message += f"; {extra.pop('note')}"
    return GeometryResult(
        mode=mode,
        status=GeometryStatus.OK,
        message=message,
        matrix=matrix,
        inliers=inliers,
        rms_residual_px=rms,
        **extra,
    )


def _rms(values: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(values)))) if len(values) else 0.0


def _fit_homography(q0, q1, K0, K1, thr, conf, iters, calibration=(1.0, 0.0)):
    import cv2

    H, mask = cv2.findHomography(q0, q1, cv2.USAC_MAGSAC, thr, maxIters=iters, confidence=conf)
    if H is None or mask is None or not np.all(np.isfinite(H)) or abs(np.linalg.det(H)) < 1e-12:
        return None
    H = H / H[2, 2] if abs(H[2, 2]) > 1e-12 else H
    m = mask.ravel().astype(bool)
    proj = cv2.perspectiveTransform(q0[m].reshape(-1, 1, 2), H).reshape(-1, 2)
    return H, m, {"rms_residual_px": _rms(np.linalg.norm(proj - q1[m], axis=1))}


def _fit_affine(q0, q1, K0, K1, thr, conf, iters, calibration=(1.0, 0.0)):
    import cv2

    A, mask = cv2.estimateAffine2D(
        q0, q1, method=cv2.USAC_MAGSAC, ransacReprojThreshold=thr, maxIters=iters, confidence=conf
    )
    if A is None or mask is None or not np.all(np.isfinite(A)) or abs(np.linalg.det(A[:, :2])) < 1e-12:
        return None
    m = mask.ravel().astype(bool)
    M = np.vstack([A, [0.0, 0.0, 1.0]])
    proj = q0[m] @ A[:, :2].T + A[:, 2]
    return M, m, {"rms_residual_px": _rms(np.linalg.norm(proj - q1[m], axis=1))}


def _fit_fundamental(q0, q1, K0, K1, thr, conf, iters, calibration=(1.0, 0.0)):
    import cv2

    F, mask = cv2.findFundamentalMat(q0, q1, cv2.USAC_MAGSAC, thr, conf, iters)
    if F is None or mask is None or F.shape[0] < 3 or not np.all(np.isfinite(F)):
        return None
    F = F[:3, :3]
    F = F / np.linalg.norm(F)
    m = mask.ravel().astype(bool)
    return F, m, {"rms_residual_px": _rms(sampson_distances(F, q0[m], q1[m]))}


def _normalise(points: np.ndarray, K: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.undistortPoints(points.reshape(-1, 1, 2), K, None).reshape(-1, 2)


def _fit_essential(q0, q1, K0, K1, thr, conf, iters, calibration=(1.0, 0.0)):
    import cv2

    n0, n1 = _normalise(q0, K0), _normalise(q1, K1)
    focal = float(np.mean([K0[0, 0], K0[1, 1], K1[0, 0], K1[1, 1]]))
    eye = np.eye(3)
    # MAGSAC++ runs on normalised coordinates scaled back to pixel size (K = diag(f, f, 1)) so
    # its threshold stays in pixels: fed unit-focal coordinates with a ~1e-3 threshold, OpenCV
    # 5's MAGSAC++ essential fit is much less accurate (test_essential_median_rotation_error
    # in test/test_geometry.py fails that way).
    Kf = np.diag([focal, focal, 1.0])
    E, mask = cv2.findEssentialMat(n0 * focal, n1 * focal, Kf, cv2.USAC_MAGSAC, conf, thr, iters)
    if E is None or mask is None or E.shape[0] < 3 or not np.all(np.isfinite(E)):
        return None
    E = E[:3, :3]
    m = mask.ravel().astype(bool)
    # Cheirality: of the four (R, t) in E, keep the one that puts the E inliers in front of both
    # cameras. A large distance threshold (in baselines) keeps far points as votes: a
    # visible/thermal rig has a short baseline, so most scene points are far.
    pose_mask = m.astype(np.uint8).reshape(-1, 1)
    good, R, t, pose_mask, _ = cv2.recoverPose(E, n0, n1, eye, distanceThresh=1e6, mask=pose_mask)
    if R is None or t is None or good == 0:
        return None
    t = t.ravel() / np.linalg.norm(t)
    E = E / np.linalg.norm(E)
    # With too little parallax (distant scene, short visible/thermal baseline) E is fitted by
    # almost any translation direction and about half the inliers end up behind a camera; the
    # rotation is still usable, the translation direction is not.
    in_front = int(good) / max(1, int(m.sum()))
    parallax_px = float(np.median(rotation_parallax(R, n0[m], n1[m]))) * focal
    observable = in_front >= MIN_IN_FRONT_FRACTION and parallax_px >= MIN_PARALLAX_PX
    inflation, floor_px = calibration
    cov = pose_covariance(
        R, t, n0[m], n1[m], translation_observable=observable, inflation=inflation, rotation_floor=floor_px / focal
    )
    rms = _rms(sampson_distances(E, n0[m], n1[m])) * focal
    note = f"{int(good)} in front of both cameras, parallax {parallax_px:.1f} px"
    if not observable:
        note += "; translation direction not observable (too little parallax), rotation only"
    return E, m, {
        "R": R,
        "t": t,
        "covariance": cov,
        "rms_residual_px": rms,
        "translation_observable": observable,
        "note": note,
    }


_FITTERS = {
    "homography": _fit_homography,
    "affine": _fit_affine,
    "fundamental": _fit_fundamental,
    "essential": _fit_essential,
}
