"""Synthetic visible/thermal pairs: exact ground truth, determinism, realistic cross-modal look."""
import hashlib

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


def _digest(array: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()[:16]


# Fingerprints of the generator's output, recorded from the original (unoptimised) ray caster:
# speed-ups must not change a single pixel. sha256 prefixes of visible / thermal / depth0 bytes;
# K as (f0, cx0, cy0, f1, cx1, cy1), then R (row-major) and t. A numpy/OpenCV upgrade may change
# rounding: if so, check the other tests still pass before re-recording these.
STEREO_FINGERPRINTS = [
    (
        0, (640, 512), None,
        ("4daed125ba76219c", "7243fca83d5d186a", "ed14744816c59317"),
        [588.332051967, 318.416105509, 265.489126095, 623.759646821, 310.402948716, 249.50512993],
        [0.999482970973, 0.022718316873, 0.022752336453, -0.023167285054, 0.999538125245, 0.019667564295,
         -0.022295013766, -0.020184505457, 0.999547656743, -0.122839109349, 0.015744453501, 0.037008545312],
    ),
    (
        3, (320, 256), (288, 224),
        ("b77877e7dc136b86", "45a0cda9a4364065", "3e63288c58c0f42c"),
        [243.651987079, 157.240069776, 126.661794588, 336.431822007, 149.155982548, 114.116477932],
        [0.999494630666, 0.019771474702, 0.024891204415, -0.020371249934, 0.999502521139, 0.024077425398,
         -0.02440277536, -0.024572322352, 0.999400172868, -0.19967035571, 0.031919636971, 0.05363873852],
    ),
]


@pytest.mark.parametrize("seed, size, thermal_size, digests, intrinsics, pose", STEREO_FINGERPRINTS)
def test_stereo_output_is_pinned_per_seed(seed, size, thermal_size, digests, intrinsics, pose):
    pair = make_stereo_pair(seed, size, thermal_size=thermal_size)
    assert (_digest(pair.visible), _digest(pair.thermal), _digest(pair.depth0)) == digests
    K = [pair.K0[0, 0], pair.K0[0, 2], pair.K0[1, 2], pair.K1[0, 0], pair.K1[0, 2], pair.K1[1, 2]]
    assert np.allclose(K, intrinsics, rtol=0, atol=1e-9)
    assert np.allclose(np.r_[pair.R.ravel(), pair.t], pose, rtol=0, atol=1e-9)


def test_planar_output_is_pinned_per_seed():
    """The planar pair shares the latent scene renderer with the stereo pair."""
    pair = make_planar_pair(0, (320, 256), thermal_size=(288, 224))
    assert (_digest(pair.visible), _digest(pair.thermal)) == ("735c189019af5458", "a8eb78bdcbcbbc5e")
    H = [0.977431347248, -0.064310374597, 9.700747605588, 0.214342258988, 0.994127864951, -43.191554215425,
         0.000196917261, 0.000240916005, 1.0]
    assert np.allclose(pair.H.ravel(), H, rtol=0, atol=1e-9)
