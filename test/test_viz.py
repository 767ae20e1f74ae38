"""Debug drawings: side-by-side matches and registration overlays."""
import numpy as np
import pytest

from matchanything_ros.matching.base import Matches
from matchanything_ros.viz import draw_matches, draw_registration


def _images():
    rng = np.random.default_rng(0)
    visible = (rng.random((120, 160, 3)) * 60).astype(np.uint8)  # dark, so colours stand out
    thermal = (rng.random((100, 140)) * 60 * 256).astype(np.uint16)
    return visible, thermal


def _count(canvas, bgr):
    return int(np.all(canvas == np.array(bgr, np.uint8), axis=2).sum())


def test_draw_matches_size_and_colours():
    visible, thermal = _images()
    k0 = np.array([[20, 30], [40, 80], [100, 60], [150, 110]], float)
    k1 = np.array([[10, 20], [30, 70], [90, 50], [130, 90]], float)
    m = Matches(k0, k1, np.ones(4))
    inl = np.array([True, True, False, True])
    out = draw_matches(visible, thermal, m, inl, outliers=True)
    assert out.shape == (120, 300, 3) and out.dtype == np.uint8
    assert _count(out, (0, 255, 0)) > 50 and _count(out, (0, 0, 255)) > 10
    # by default only the inliers: readable when outliers are most of the raw matches
    plain = draw_matches(visible, thermal, m, inl)
    assert _count(plain, (0, 0, 255)) == 0 and _count(plain, (0, 255, 0)) == _count(out, (0, 255, 0))
    assert _count(out, (0, 255, 255)) == 0
    # the visible image is left untouched away from the lines and the title
    np.testing.assert_array_equal(out[115:, :5], visible[115:, :5])
    # the title area holds white text on black
    assert _count(out[:30], (255, 255, 255)) > 20


def test_draw_matches_without_mask_tuple_input_and_gray():
    visible, thermal = _images()
    gray = visible[:, :, 0]
    k = np.array([[10.0, 10.0], [50.0, 50.0]])
    out = draw_matches(gray, thermal[:80], (k, k), title="sift")
    assert out.shape == (120, 300, 3)
    assert _count(out, (0, 255, 255)) > 10 and _count(out, (0, 255, 0)) == 0


def test_draw_matches_limits_drawn_lines_and_handles_empty():
    visible, thermal = _images()
    rng = np.random.default_rng(1)
    k0 = rng.uniform(0, 100, (1000, 2))
    k1 = rng.uniform(0, 100, (1000, 2))
    few = draw_matches(visible, thermal, (k0, k1), np.ones(1000, bool), max_draw=5)
    many = draw_matches(visible, thermal, (k0, k1), np.ones(1000, bool), max_draw=300)
    assert _count(few, (0, 255, 0)) < _count(many, (0, 255, 0))
    empty = draw_matches(visible, thermal, Matches.empty(), np.zeros(0, bool))
    assert empty.shape == (120, 300, 3)


def test_draw_matches_rejects_bad_input():
    visible, thermal = _images()
    k = np.zeros((3, 2))
    with pytest.raises(ValueError, match="inliers has 2 entries for 3 matches"):
        draw_matches(visible, thermal, (k, k), np.ones(2, bool))
    with pytest.raises(ValueError, match="visible must be an"):
        draw_matches(np.zeros((4, 4, 2), np.uint8), thermal, (k, k))


def test_draw_registration_checkerboard_and_blend():
    visible, _ = _images()
    warped = np.full((120, 160), 40000, np.uint16)
    warped[0, 0] = 0  # give the stretch a range
    board = draw_registration(visible, warped, tile=40)
    assert board.shape == visible.shape and board.dtype == np.uint8
    np.testing.assert_array_equal(board[:40, :40][1:], visible[:40, :40][1:])  # visible tile
    assert not np.array_equal(board[:40, 40:80], visible[:40, 40:80])  # thermal tile
    blend = draw_registration(visible, warped, mode="blend", alpha=0.0)
    np.testing.assert_array_equal(blend, visible)
    with pytest.raises(ValueError, match="mode must be one of"):
        draw_registration(visible, warped, mode="diff")
    with pytest.raises(ValueError, match="warp_thermal_to_visible"):
        draw_registration(visible, warped[:50])
