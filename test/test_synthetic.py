"""Synthetic visible/thermal pairs: exact ground truth, determinism, realistic cross-modal look."""

import cv2
import numpy as np
import pytest

from matchanything_ros.synthetic import make_planar_pair, make_stereo_pair, reproject

SMALL = (320, 256)


def _gradient(image: np.ndarray) -> np.ndarray:
    image = image.astype(np.float32)
    gx = cv2.Sobel(image, cv2.CV_32F, 1, 0)
    gy = cv2.Sobel(image, cv2.CV_32F, 0, 1)
    return np.sqrt(gx * gx + gy * gy)


def _thermal_valid_in_visible(pair) -> np.ndarray:
    ones = np.ones(pair.thermal.shape, np.uint8)
    h, w = pair.visible.shape[:2]
    valid = cv2.warpPerspective(ones, pair.H, (w, h), flags=cv2.WARP_INVERSE_MAP | cv2.INTER_NEAREST)
    return cv2.erode(valid, np.ones((9, 9), np.uint8)) > 0


@pytest.mark.parametrize("make", [make_planar_pair, make_stereo_pair])
def test_deterministic_per_seed_and_seeds_differ(make):
    a, b, c = make(11, SMALL), make(11, SMALL), make(12, SMALL)
    assert np.array_equal(a.visible, b.visible) and np.array_equal(a.thermal, b.thermal)
    assert not np.array_equal(a.visible, c.visible)
    for name in ("H", "K0", "K1", "R", "t", "depth0"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None and y is None) or np.array_equal(x, y)


@pytest.mark.parametrize("make", [make_planar_pair, make_stereo_pair])
def test_formats_sixteen_bit_thermal_with_realistic_offset(make):
    pair = make(3, SMALL, thermal_size=(288, 224))
    assert pair.visible.shape == (256, 320, 3) and pair.visible.dtype == np.uint8
    assert pair.thermal.shape == (224, 288) and pair.thermal.dtype == np.uint16
    median = float(np.median(pair.thermal))
    assert 15000 < median < 35000  # raw counts on a camera offset, not a display image
    assert 200 < np.percentile(pair.thermal, 99) - np.percentile(pair.thermal, 1) < 10000


def test_planar_ground_truth_is_exact():
    pair = make_planar_pair(5)
    H_v, H_t = pair.info["H_scene_to_visible"], pair.info["H_scene_to_thermal"]
    rng = np.random.default_rng(0)
    pts = rng.uniform([0, 0], [639, 511], (200, 2))
    scene_from_visible = cv2.perspectiveTransform(pts[None], np.linalg.inv(H_v))[0]
    scene_from_thermal = cv2.perspectiveTransform(pair.visible_to_thermal(pts)[None], np.linalg.inv(H_t))[0]
    assert np.abs(scene_from_visible - scene_from_thermal).max() < 1e-6


@pytest.mark.parametrize("seed", [0, 1])
def test_planar_rendering_agrees_with_ground_truth(seed):
    """Shared region edges of the visible image and the GT-registered thermal image line up to
    well under a pixel (phase correlation of gradient magnitudes, which ignore polarity)."""
    pair = make_planar_pair(seed, noise=0)
    valid = _thermal_valid_in_visible(pair)
    gray = cv2.cvtColor(pair.visible, cv2.COLOR_BGR2GRAY)
    g0 = _gradient(gray) * valid
    g1 = _gradient(pair.warp_thermal_to_visible()) * valid
    window = cv2.createHanningWindow(g0.shape[::-1], cv2.CV_32F)
    (dx, dy), response = cv2.phaseCorrelate(g0, g1, window)
    assert np.hypot(dx, dy) < 0.25, (dx, dy)
    assert response > 0.2


def test_images_differ_cross_modally():
    """Registered with the ground truth, thermal is neither the visible image nor its inverse:
    weak global correlation, and local contrast that is kept in some places, inverted in others."""
    pair = make_planar_pair(0, noise=0)
    valid = _thermal_valid_in_visible(pair)
    gray = cv2.cvtColor(pair.visible, cv2.COLOR_BGR2GRAY).astype(np.float64)
    warped = pair.warp_thermal_to_visible().astype(np.float64)
    assert abs(np.corrcoef(gray[valid], warped[valid])[0, 1]) < 0.5
    block_corr = []
    for y in range(0, 512 - 64, 64):
        for x in range(0, 640 - 64, 64):
            m = valid[y : y + 64, x : x + 64]
            a, b = gray[y : y + 64, x : x + 64][m], warped[y : y + 64, x : x + 64][m]
            if m.mean() > 0.9 and a.std() > 1 and b.std() > 1:
                block_corr.append(np.corrcoef(a, b)[0, 1])
    block_corr = np.array(block_corr)
    assert (block_corr > 0.3).mean() > 0.15 and (block_corr < -0.3).mean() > 0.15
    # fine visible texture is absent in thermal: thermal is much smoother at high frequency
    hf = lambda im: np.abs(im - cv2.GaussianBlur(im, (0, 0), 1.5))[valid].mean() / (im[valid].std() + 1e-9)
    assert hf(warped) < 0.7 * hf(gray)


def test_stereo_ground_truth_is_exact():
    """Pixels reprojected with depth0, K0, K1, R, t land on the thermal pixel whose ray (cast
    through the generator's scene) hits the same 3-D point (< 1e-3 px back in the visible image)."""
    pair = make_stereo_pair(2, SMALL)
    scene = pair.info["scene"]
    assert np.allclose(pair.R @ pair.R.T, np.eye(3)) and np.isclose(np.linalg.det(pair.R), 1.0)
    assert 0.09 < np.linalg.norm(pair.t) < 0.35  # metres
    h, w = pair.depth0.shape
    rng = np.random.default_rng(1)
    u, v = rng.integers(0, w, 400), rng.integers(0, h, 400)
    pts0 = np.stack([u, v], 1).astype(np.float64)
    depth = pair.depth0[v, u].astype(np.float64)
    pts1 = pair.visible_to_thermal(pts0)
    assert np.allclose(pts1, reproject(pts0, depth, pair.K0, pair.K1, pair.R, pair.t))
    X0 = (np.linalg.solve(pair.K0, np.c_[pts0, np.ones(len(pts0))].T) * depth).T
    th, tw = pair.thermal.shape
    inside = (pts1[:, 0] >= 0) & (pts1[:, 0] <= tw - 1) & (pts1[:, 1] >= 0) & (pts1[:, 1] <= th - 1)
    centre1 = -pair.R.T @ pair.t
    rays = (pair.R.T @ np.linalg.solve(pair.K1, np.c_[pts1, np.ones(len(pts1))].T)).T
    s, _, _, _ = scene.intersect(centre1, rays)
    X_seen = centre1 + s[:, None] * rays
    visible_to_both = inside & (np.linalg.norm(X_seen - X0, axis=1) < 1e-3)  # not occluded
    assert visible_to_both.mean() > 0.5
    back = pair.K0 @ X_seen[visible_to_both].T
    back = (back[:2] / back[2]).T
    assert np.abs(back - pts0[visible_to_both]).max() < 1e-3
    # the occluded ones really are occluded: something nearer to the thermal camera
    occluded = inside & ~visible_to_both
    d_seen = np.linalg.norm(X_seen[occluded] - centre1, axis=1)
    d_true = np.linalg.norm(X0[occluded] - centre1, axis=1)
    assert np.all(d_seen < d_true)


def test_stereo_warp_registers_thermal_onto_visible():
    pair = make_stereo_pair(4, noise=0)
    warped = pair.warp_thermal_to_visible()
    assert warped.shape == pair.visible.shape[:2] and warped.dtype == np.uint16
    assert (warped > 0).mean() > 0.4  # the thermal camera sees most of the visible view


@pytest.mark.parametrize(
    "kwargs, message",
    [({"size": (10, 10)}, "at least 32x32"), ({"size": "big"}, "width, height"), ({"noise": -1}, "noise")],
)
def test_bad_options_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_planar_pair(0, **kwargs)


def _thumb(array: np.ndarray) -> np.ndarray:
    """4x4 area-averaged thumbnail (colour averaged): a fingerprint that survives 1-ulp rounding
    changes of a numpy/OpenCV upgrade but not a change to what is rendered."""
    a = np.nan_to_num(np.asarray(array, np.float64), posinf=0.0)
    if a.ndim == 3:
        a = a.mean(axis=2)
    return cv2.resize(a, (4, 4), interpolation=cv2.INTER_AREA).ravel()


# Fingerprints of the generator's output, recorded from the original (unoptimised) ray caster
# (whose output the optimised one reproduced bit for bit): speed-ups must not change what is
# rendered. 4x4 thumbnails of visible / thermal / depth0, to 0.1 %; K as (f0, cx0, cy0, f1, cx1,
# cy1), then R (row-major) and t, to 1e-9.
STEREO_FINGERPRINTS = [
    (
        0, (640, 512), None,
        (
            [154.529, 153.206, 139.926, 166.443, 147.33, 138.795, 145.463, 160.838, 136.48, 134.469, 135.013, 140.421, 116.93, 130.36, 152.541, 137.57],
            [23834.424, 23746.586, 23947.969, 24002.115, 23858.225, 23588.597, 23940.962, 24191.187, 23934.316, 24365.51, 23911.171, 23974.005, 24070.323, 24173.739, 24169.079, 23582.61],
            [21.793, 21.599, 21.408, 21.221, 21.793, 21.509, 18.569, 16.595, 10.809, 11.678, 7.841, 3.951, 5.45, 5.46, 5.161, 3.949],
        ),
        [588.332051967, 318.416105509, 265.489126095, 623.759646821, 310.402948716, 249.50512993],
        [0.999482970973, 0.022718316873, 0.022752336453, -0.023167285054, 0.999538125245, 0.019667564295,
         -0.022295013766, -0.020184505457, 0.999547656743, -0.122839109349, 0.015744453501, 0.037008545312],
    ),
    (
        3, (320, 256), (288, 224),
        (
            [122.734, 99.611, 89.495, 102.748, 144.51, 122.711, 135.26, 135.706, 155.339, 139.746, 153.38, 146.622, 128.772, 150.562, 184.368, 173.968],
            [22115.846, 22701.522, 21796.31, 22530.148, 22465.605, 22457.768, 21806.614, 23164.83, 22169.815, 22066.201, 22356.403, 22695.649, 22815.144, 22296.088, 22129.941, 22378.442],
            [21.811, 19.194, 17.138, 15.48, 13.627, 13.036, 13.728, 10.549, 4.665, 6.004, 8.746, 6.762, 3.494, 3.577, 3.638, 3.638],
        ),
        [243.651987079, 157.240069776, 126.661794588, 336.431822007, 149.155982548, 114.116477932],
        [0.999494630666, 0.019771474702, 0.024891204415, -0.020371249934, 0.999502521139, 0.024077425398,
         -0.02440277536, -0.024572322352, 0.999400172868, -0.19967035571, 0.031919636971, 0.05363873852],
    ),
]


@pytest.mark.parametrize("seed, size, thermal_size, thumbs, intrinsics, pose", STEREO_FINGERPRINTS)
def test_stereo_output_is_pinned_per_seed(seed, size, thermal_size, thumbs, intrinsics, pose):
    pair = make_stereo_pair(seed, size, thermal_size=thermal_size)
    for array, expected in zip((pair.visible, pair.thermal, pair.depth0), thumbs):
        np.testing.assert_allclose(_thumb(array), expected, rtol=1e-3, atol=1e-3)
    K = [pair.K0[0, 0], pair.K0[0, 2], pair.K0[1, 2], pair.K1[0, 0], pair.K1[0, 2], pair.K1[1, 2]]
    assert np.allclose(K, intrinsics, rtol=0, atol=1e-9)
    assert np.allclose(np.r_[pair.R.ravel(), pair.t], pose, rtol=0, atol=1e-9)


def test_planar_output_is_pinned_per_seed():
    """The planar pair shares the latent scene renderer with the stereo pair."""
    pair = make_planar_pair(0, (320, 256), thermal_size=(288, 224))
    np.testing.assert_allclose(_thumb(pair.visible), [
        202.972, 189.24, 195.67, 184.08, 192.375, 184.7, 201.816, 187.649,
        169.094, 191.734, 202.453, 184.689, 163.67, 192.801, 208.896, 181.493], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(_thumb(pair.thermal), [
        20313.927, 20246.697, 20566.522, 20381.202, 20351.168, 20339.448, 20556.393, 20252.186,
        20279.968, 20356.307, 20499.008, 20245.324, 20217.484, 20213.546, 20419.607, 20203.149], rtol=1e-3, atol=1e-3)
    H = [0.977431347248, -0.064310374597, 9.700747605588, 0.214342258988, 0.994127864951, -43.191554215425,
         0.000196917261, 0.000240916005, 1.0]
    assert np.allclose(pair.H.ravel(), H, rtol=0, atol=1e-9)
