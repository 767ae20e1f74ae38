"""Robust geometry (OpenCV USAC MAGSAC++) on synthetic correspondences with outliers."""
import cv2
import numpy as np
import pytest

from matchanything_ros.geometry import (
    UNKNOWN_SCALE_VARIANCE,
    GeometryResult,
    GeometryStatus,
    camera1_pose_in_camera0,
    estimate_geometry,
    sampson_distances,
    warp_thermal_to_visible,
)

W, H_IMG = 640, 512
K0 = np.array([[520.0, 0, 318.0], [0, 515.0, 258.0], [0, 0, 1]])  # visible
K1 = np.array([[410.0, 0, 305.0], [0, 405.0, 245.0], [0, 0, 1]])  # thermal: different intrinsics
R_GT = cv2.Rodrigues(np.array([0.03, -0.06, 0.015]))[0]
T_GT = np.array([-1.0, 0.08, 0.04]) / np.linalg.norm([-1.0, 0.08, 0.04])
H_GT = np.array([[1.05, 0.04, 12.0], [-0.03, 0.97, -8.0], [5e-5, -3e-5, 1.0]])


def _outliers(rng, x1, fraction):
    out = rng.random(len(x1)) < fraction
    x1 = x1.copy()
    x1[out] = rng.uniform([0, 0], [W, H_IMG], (out.sum(), 2))
    return x1, out


def planar(seed, n=400, outliers=0.3, noise=0.5, H=H_GT):
    rng = np.random.default_rng(seed)
    x0 = rng.uniform([0, 0], [W, H_IMG], (n, 2))
    x1 = cv2.perspectiveTransform(x0.reshape(-1, 1, 2), H).reshape(-1, 2)
    x1 += rng.normal(0, noise, x1.shape)
    x1, out = _outliers(rng, x1, outliers)
    return x0, x1, out


def stereo(seed, n=400, outliers=0.3, noise=0.5):
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.uniform(-8, 8, n), rng.uniform(-6, 6, n), rng.uniform(4, 30, n)])

    def project(K, P):
        p = P @ K.T
        return p[:, :2] / p[:, 2:]

    x0 = project(K0, X) + rng.normal(0, noise, (n, 2))
    x1 = project(K1, X @ R_GT.T + T_GT) + rng.normal(0, noise, (n, 2))
    x1, out = _outliers(rng, x1, outliers)
    return x0, x1, out


def corner_error(H_est, H_true):
    corners = np.array([[0, 0], [W - 1, 0], [W - 1, H_IMG - 1], [0, H_IMG - 1]], float).reshape(-1, 1, 2)
    a = cv2.perspectiveTransform(corners, H_est)
    b = cv2.perspectiveTransform(corners, H_true)
    return float(np.linalg.norm(a - b, axis=2).mean())


def rotation_error_deg(Ra, Rb):
    return float(np.degrees(np.linalg.norm(cv2.Rodrigues(Ra @ Rb.T)[0])))


def assert_inliers_match(result, out, min_recall=0.95, max_false=0.03):
    recall = result.inliers[~out].mean()
    false_rate = result.inliers[out].mean()
    assert recall >= min_recall and false_rate <= max_false, (recall, false_rate)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_homography_with_30_percent_outliers(seed):
    x0, x1, out = planar(seed)
    res = estimate_geometry(x0, x1, "homography")
    assert res.status == GeometryStatus.OK and res.ok, res.message
    assert res.matrix.shape == (3, 3) and res.matrix.dtype == np.float64
    assert corner_error(res.matrix, H_GT) < 1.0
    assert_inliers_match(res, out)
    assert res.inliers.shape == (len(x0),) and res.inliers.dtype == bool
    assert res.num_inliers == int(res.inliers.sum())
    assert res.rms_residual_px < 1.5
    assert res.R is None and res.covariance is None


def test_affine_with_outliers():
    A = np.array([[0.98, 0.05, 15.0], [-0.04, 1.02, -6.0], [0, 0, 1.0]])
    x0, x1, out = planar(3, H=A)
    res = estimate_geometry(x0, x1, "affine")
    assert res.ok, res.message
    np.testing.assert_allclose(res.matrix[2], [0, 0, 1])
    assert corner_error(res.matrix, A) < 1.0
    assert_inliers_match(res, out)


def test_fundamental_epipolar_residuals_small():
    x0, x1, out = stereo(4)
    res = estimate_geometry(x0, x1, "fundamental")
    assert res.ok, res.message
    F = res.matrix
    assert np.linalg.matrix_rank(F, tol=1e-8 * np.abs(F).max()) == 2
    true_inliers = np.abs(sampson_distances(F, x0[~out], x1[~out]))
    assert np.median(true_inliers) < 0.6 and np.percentile(true_inliers, 95) < 2.0
    assert_inliers_match(res, out)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_essential_recovers_pose_with_different_intrinsics(seed):
    x0, x1, out = stereo(seed)
    res = estimate_geometry(x0, x1, "essential", K0=K0, K1=K1)
    assert res.ok, res.message
    assert rotation_error_deg(res.R, R_GT) < 0.5
    np.testing.assert_allclose(res.R @ res.R.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(res.R) == pytest.approx(1.0)
    assert np.linalg.norm(res.t) == pytest.approx(1.0)
    assert np.degrees(np.arccos(np.clip(res.t @ T_GT, -1, 1))) < 3.0  # sign fixed by cheirality
    assert_inliers_match(res, out)
    # E is expressed in normalised coordinates: x1n^T E x0n = 0
    n0 = cv2.undistortPoints(x0[~out].reshape(-1, 1, 2), K0, None).reshape(-1, 2)
    n1 = cv2.undistortPoints(x1[~out].reshape(-1, 1, 2), K1, None).reshape(-1, 2)
    assert np.median(np.abs(sampson_distances(res.matrix, n0, n1))) * 460 < 0.6


def test_camera1_pose_in_camera0_inverts_the_opencv_pose():
    R01, t01 = camera1_pose_in_camera0(R_GT, T_GT)
    X0 = np.array([0.3, -0.2, 5.0])
    X1 = R_GT @ X0 + T_GT
    np.testing.assert_allclose(R01 @ X1 + t01, X0, atol=1e-12)
    np.testing.assert_allclose(R01 @ np.zeros(3) + t01, -R_GT.T @ T_GT)  # camera-1 centre


def test_covariance_is_symmetric_psd_with_unknown_scale():
    x0, x1, _ = stereo(8)
    res = estimate_geometry(x0, x1, "essential", K0=K0, K1=K1)
    cov = res.covariance
    assert cov.shape == (6, 6)
    np.testing.assert_allclose(cov, cov.T)
    eig, vec = np.linalg.eigh(cov)
    assert eig.min() > -1e-12 * eig.max()
    # the largest variance is the unobservable baseline length, along the camera-1 position
    _, p01 = camera1_pose_in_camera0(res.R, res.t)
    assert eig[-1] == pytest.approx(UNKNOWN_SCALE_VARIANCE, rel=1e-3)
    assert abs(vec[:3, -1] @ p01) == pytest.approx(1.0, abs=1e-6)
    # the observable part is small: rotation std well below a degree
    assert np.degrees(np.sqrt(np.diag(cov)[3:])).max() < 0.2


def _observable(cov, res):
    """Covariance without the unknown-scale direction: rotation block trace + translation
    variance orthogonal to the baseline."""
    _, p = camera1_pose_in_camera0(res.R, res.t)
    P = np.eye(3) - np.outer(p, p)
    return np.trace(cov[3:, 3:]) + np.trace(P @ cov[:3, :3] @ P)


def test_covariance_shrinks_with_more_inliers_and_less_noise():
    def observable(n, noise):
        x0, x1, _ = stereo(9, n=n, outliers=0.2, noise=noise)
        res = estimate_geometry(x0, x1, "essential", K0=K0, K1=K1)
        assert res.ok, res.message
        return _observable(res.covariance, res)

    few, many = observable(80, 0.5), observable(800, 0.5)
    assert many < 0.3 * few  # ~1/10 expected
    noisy, clean = observable(400, 1.0), observable(400, 0.25)
    assert clean < 0.2 * noisy  # ~1/16 expected


def test_covariance_matches_the_observed_scatter():
    """First-order covariance vs. the scatter of rotation errors over repeated draws."""
    errors, predicted = [], []
    R01_gt, _ = camera1_pose_in_camera0(R_GT, T_GT)
    for seed in range(12):
        x0, x1, _ = stereo(100 + seed, n=300, outliers=0.2)
        res = estimate_geometry(x0, x1, "essential", K0=K0, K1=K1)
        R01, _ = camera1_pose_in_camera0(res.R, res.t)
        errors.append(cv2.Rodrigues(R01 @ R01_gt.T)[0].ravel())
        predicted.append(np.trace(res.covariance[3:, 3:]))
    ratio = np.mean(np.sum(np.square(errors), axis=1)) / np.mean(predicted)
    assert 0.2 < ratio < 5.0, ratio


@pytest.mark.parametrize("mode", ["homography", "affine", "fundamental", "essential"])
def test_too_few_matches(mode):
    x0, x1, _ = planar(10, n=6, outliers=0.0)
    res = estimate_geometry(x0, x1, mode, K0=K0, K1=K1)
    assert res.status == GeometryStatus.TOO_FEW_MATCHES
    assert "need at least 12" in res.message
    assert res.matrix is None and res.inliers.shape == (6,) and not res.inliers.any()
    empty = estimate_geometry(np.zeros((0, 2)), np.zeros((0, 2)), mode, K0=K0, K1=K1)
    assert empty.status == GeometryStatus.TOO_FEW_MATCHES and empty.inliers.shape == (0,)


def test_min_matches_counts_inliers_too():
    rng = np.random.default_rng(11)
    x0 = rng.uniform([0, 0], [W, H_IMG], (60, 2))
    x1 = rng.uniform([0, 0], [W, H_IMG], (60, 2))  # no consistent model at all
    res = estimate_geometry(x0, x1, "homography", min_matches=20)
    assert res.status != GeometryStatus.OK and res.matrix is None


def _few_inliers_many_outliers(seed=3, n_in=20, n_out=300):
    """n_in exact correspondences of H_GT first, then n_out uniformly random ones."""
    rng = np.random.default_rng(seed)
    x0 = rng.uniform([0, 0], [W, H_IMG], (n_in + n_out, 2))
    x1 = cv2.perspectiveTransform(x0.reshape(-1, 1, 2), H_GT).reshape(-1, 2)
    x1[n_in:] = rng.uniform([0, 0], [W, H_IMG], (n_out, 2))
    return x0, x1


# 20 inliers in 320 matches: a 4-point sample is all inliers with p = (1/16)^4, so the fit
# needs more than the default 10000 iterations to find them reliably (with 100000 it did for
# data seeds 0-19; ~40 ms).
ITERS_LOW_RATIO = 100_000


def test_low_inlier_ratio_rejects_a_fit_that_min_matches_accepts():
    x0, x1 = _few_inliers_many_outliers()
    ok = estimate_geometry(x0, x1, "homography", max_iters=ITERS_LOW_RATIO, min_inlier_ratio=0.0)
    assert ok.status == GeometryStatus.OK, ok.message
    assert ok.inliers[:20].all() and ok.num_inliers < 0.1 * 320
    # the fit is right: the rule is about trusting it, not about its accuracy
    assert corner_error(ok.matrix, H_GT) < 1e-3

    low = estimate_geometry(x0, x1, "homography", max_iters=ITERS_LOW_RATIO, min_inlier_ratio=0.1)
    assert low.status == GeometryStatus.LOW_INLIER_RATIO and not low.ok
    assert low.matrix is None and low.R is None and low.rms_residual_px is None
    # the inlier mask of the rejected fit is kept (debug image, diagnostics)
    np.testing.assert_array_equal(low.inliers, ok.inliers)
    k = ok.num_inliers
    assert low.message == f"{k}/320 inliers ({100 * k / 320:.1f} %) < min_inlier_ratio 10 %"


def test_inlier_ratio_at_the_minimum_is_ok_and_non_finite_matches_do_not_count():
    x0, x1 = _few_inliers_many_outliers(n_in=60, n_out=240)
    first = estimate_geometry(x0, x1, "homography", min_inlier_ratio=0.0)
    assert first.ok
    ratio = first.num_inliers / 300
    assert estimate_geometry(x0, x1, "homography", min_inlier_ratio=ratio).ok  # >= passes
    assert estimate_geometry(x0, x1, "homography", min_inlier_ratio=ratio + 0.01).status == (
        GeometryStatus.LOW_INLIER_RATIO
    )
    # NaN keypoints are skipped by the fit, so they do not dilute the ratio either
    x0n = np.vstack([x0, np.full((300, 2), np.nan)])
    x1n = np.vstack([x1, np.zeros((300, 2))])
    res = estimate_geometry(x0n, x1n, "homography", min_inlier_ratio=ratio)
    assert res.ok and res.inliers.shape == (600,) and res.num_inliers == first.num_inliers


def test_low_inlier_ratio_applies_to_every_mode():
    x0, x1, _ = stereo(5, n=300, outliers=0.5)
    for mode in ("fundamental", "essential"):
        res = estimate_geometry(x0, x1, mode, K0=K0, K1=K1, min_inlier_ratio=0.9)
        assert res.status == GeometryStatus.LOW_INLIER_RATIO, (mode, res.message)
        assert res.matrix is None and res.R is None and res.covariance is None and res.num_inliers > 100
    x0, x1, _ = planar(5, n=300, outliers=0.5)
    res = estimate_geometry(x0, x1, "affine", min_inlier_ratio=0.9)
    assert res.status == GeometryStatus.LOW_INLIER_RATIO and res.matrix is None


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_min_inlier_ratio_out_of_range_is_a_value_error(ratio):
    x0, x1, _ = planar(1)
    with pytest.raises(ValueError, match=r"min_inlier_ratio must be in \[0, 1\)"):
        estimate_geometry(x0, x1, "homography", min_inlier_ratio=ratio)


@pytest.mark.parametrize("mode", ["homography", "affine", "fundamental", "essential"])
def test_identical_points_are_degenerate(mode):
    x0 = np.tile([[100.0, 200.0]], (40, 1))
    res = estimate_geometry(x0, x0 + 5, mode, K0=K0, K1=K1)
    assert res.status == GeometryStatus.DEGENERATE and "identical" in res.message


@pytest.mark.parametrize("mode", ["homography", "affine", "fundamental"])
def test_collinear_points_are_degenerate(mode):
    s = np.linspace(0, 400, 50)
    x0 = np.column_stack([s + 10, 0.5 * s + 20])
    x1 = x0 * 1.1 + 3
    res = estimate_geometry(x0, x1, mode)
    assert res.status == GeometryStatus.DEGENERATE and "one line" in res.message, res.message


def test_noisy_collinear_inliers_are_degenerate():
    rng = np.random.default_rng(12)
    s = rng.uniform(0, 400, 80)
    x0 = np.column_stack([s, 0.3 * s + 50]) + rng.normal(0, 0.3, (80, 2))
    x1 = x0 + [10.0, -4.0]
    res = estimate_geometry(x0, x1, "homography")
    assert res.status == GeometryStatus.DEGENERATE, res.message


@pytest.mark.parametrize(
    "K0_, K1_, text",
    [
        (None, K1, "K0 (visible intrinsics) is missing"),
        (K0, None, "K1 (thermal intrinsics) is missing"),
        (None, None, "K0 (visible intrinsics) is missing; K1"),
        (np.zeros((3, 3)), K1, "not a valid camera matrix"),
        (K0, np.eye(2), "not a 3x3 camera matrix"),
    ],
)
def test_essential_without_intrinsics(K0_, K1_, text):
    x0, x1, _ = stereo(13)
    res = estimate_geometry(x0, x1, "essential", K0=K0_, K1=K1_)
    assert res.status == GeometryStatus.NO_INTRINSICS and text in res.message
    assert res.R is None and res.covariance is None and not res.inliers.any()


def test_mode_none():
    x0, x1, _ = planar(14, n=5)
    res = estimate_geometry(x0, x1, "none")
    assert res.status == GeometryStatus.OK and res.message == "geometry disabled"
    assert res.matrix is None and res.inliers.all() and res.num_inliers == 5


def test_non_finite_keypoints_are_never_inliers():
    x0, x1, out = planar(15)
    x0[:5] = np.nan
    x1[5:8, 0] = np.inf
    res = estimate_geometry(x0, x1, "homography")
    assert res.ok and not res.inliers[:8].any()
    assert corner_error(res.matrix, H_GT) < 1.0


def test_programming_errors_raise():
    x0, x1, _ = planar(16, n=20)
    with pytest.raises(ValueError, match="geometry mode must be one of"):
        estimate_geometry(x0, x1, "projective")
    with pytest.raises(ValueError, match="same length"):
        estimate_geometry(x0, x1[:10], "homography")
    with pytest.raises(ValueError, match="threshold_px must be > 0"):
        estimate_geometry(x0, x1, "homography", threshold_px=0)


def test_result_contract():
    res = GeometryResult("homography", GeometryStatus.FAILED, "x", None, np.array([True, False]))
    assert res.num_inliers == 1 and not res.ok
    assert GeometryStatus.OK == "OK" and GeometryStatus("DEGENERATE") is GeometryStatus.DEGENERATE


def test_warp_thermal_to_visible_undoes_the_homography():
    rng = np.random.default_rng(17)
    visible = cv2.GaussianBlur(rng.integers(0, 65535, (H_IMG, W), dtype=np.uint16), (0, 0), 3)
    # thermal pixel x1 = H x0 shows what visible pixel x0 shows
    thermal = cv2.warpPerspective(visible, H_GT, (W, H_IMG))
    back = warp_thermal_to_visible(thermal, H_GT, visible.shape)
    assert back.shape == visible.shape and back.dtype == np.uint16
    inner = (slice(60, H_IMG - 60), slice(60, W - 60))
    diff = np.abs(back[inner].astype(float) - visible[inner].astype(float))
    assert np.median(diff) < 0.01 * np.ptp(visible)
    colour = warp_thermal_to_visible(np.dstack([thermal] * 3), H_GT[:2], (100, 120, 3))
    assert colour.shape == (100, 120, 3)
    with pytest.raises(ValueError, match="finite 3x3"):
        warp_thermal_to_visible(thermal, np.full((3, 3), np.nan), visible.shape)


def test_essential_median_rotation_error():
    """Accuracy over repeated draws (30 % outliers, 0.5 px noise): guards the pixel-scaled
    coordinates handed to MAGSAC++ in essential mode."""
    errors = []
    for seed in range(200, 210):
        x0, x1, _ = stereo(seed)
        res = estimate_geometry(x0, x1, "essential", K0=K0, K1=K1)
        errors.append(rotation_error_deg(res.R, R_GT))
    assert np.median(errors) < 0.1 and max(errors) < 0.3, errors


def test_distant_scene_translation_not_observable():
    """Short baseline, far scene (the usual visible/thermal rig): rotation only."""
    rng = np.random.default_rng(18)
    n = 400
    rays = np.column_stack([rng.uniform(-0.6, 0.6, n), rng.uniform(-0.5, 0.5, n), np.ones(n)])
    X = rays * rng.uniform(2e3, 2e4, (n, 1))  # 2000-20000 baselines away: no parallax
    x0 = (X @ K0.T)[:, :2] / X[:, 2:] + rng.normal(0, 0.5, (n, 2))
    P1 = X @ R_GT.T + T_GT
    x1 = (P1 @ K1.T)[:, :2] / P1[:, 2:] + rng.normal(0, 0.5, (n, 2))
    res = estimate_geometry(x0, x1, "essential", K0=K0, K1=K1)
    assert res.ok and res.translation_observable is False, res.message
    assert "translation direction not observable" in res.message
    err = rotation_error_deg(res.R, R_GT)
    assert err < 0.5
    cov = res.covariance
    np.testing.assert_allclose(cov[:3, :3], UNKNOWN_SCALE_VARIANCE * np.eye(3))
    assert np.all(cov[:3, 3:] == 0)
    # the rotation uncertainty is not overconfident: the error is within 3 sigma
    assert err <= 3 * np.degrees(np.sqrt(np.linalg.eigvalsh(cov[3:, 3:]).max()))


def test_near_scene_translation_observable():
    x0, x1, _ = stereo(19)
    res = estimate_geometry(x0, x1, "essential", K0=K0, K1=K1)
    assert res.translation_observable is True and "not observable" not in res.message


def test_real_thermal_frame_known_homography(roadscene_dir):
    """Real thermal texture (RoadScene): SIFT between a frame and its warp by a known H."""
    from matchanything_ros.viz import draw_registration

    name = sorted(p.name for p in (roadscene_dir / "thermal").iterdir())[0]
    thermal = cv2.imread(str(roadscene_dir / "thermal" / name), cv2.IMREAD_GRAYSCALE)
    visible = cv2.imread(str(roadscene_dir / "visible" / name), cv2.IMREAD_COLOR)
    assert thermal is not None and visible is not None
    h, w = thermal.shape
    H = np.array([[1.04, 0.03, -12.0], [-0.02, 0.98, 9.0], [4e-5, -2e-5, 1.0]])
    # The "thermal camera" sees the registered thermal frame through H: x1 ~ H x0.
    moved = cv2.warpPerspective(thermal, H, (w, h))
    sift = cv2.SIFT_create(1500)
    ka, da = sift.detectAndCompute(thermal, None)
    kb, db = sift.detectAndCompute(moved, None)
    pairs = cv2.BFMatcher(cv2.NORM_L2, crossCheck=True).match(da, db)
    x0 = np.array([ka[m.queryIdx].pt for m in pairs])
    x1 = np.array([kb[m.trainIdx].pt for m in pairs])
    res = estimate_geometry(x0, x1, "homography")
    assert res.ok, res.message
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float).reshape(-1, 1, 2)
    err = np.linalg.norm(cv2.perspectiveTransform(corners, res.matrix) - cv2.perspectiveTransform(corners, H), axis=2)
    assert err.mean() < 1.0
    back = warp_thermal_to_visible(moved, res.matrix, visible.shape)
    inner = (slice(30, h - 30), slice(30, w - 30))
    assert np.median(np.abs(back[inner].astype(int) - thermal[inner].astype(int))) <= 3
    overlay = draw_registration(visible, back)
    assert overlay.shape == visible.shape
