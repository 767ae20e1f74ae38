"""Debug drawings: side-by-side matches and registration overlays."""
import numpy as np
import pytest

from matchanything_ros.matching.base import Matches
from matchanything_ros.viz import INLIER_BGR, OUTLIER_BGR, UNVERIFIED_BGR, draw_matches, draw_registration, match_plan


def _images():
    rng = np.random.default_rng(0)
    visible = (rng.random((120, 160, 3)) * 60).astype(np.uint8)  # dark, so colours stand out
    thermal = (rng.random((100, 140)) * 60 * 256).astype(np.uint16)
    return visible, thermal


def _marked(canvas, xy, bgr) -> bool:
    """The pixel at a drawn keypoint carries that colour's channels (our marker is there), with
    no assumption on how OpenCV antialiases the edges of circles and lines."""
    px = canvas[int(round(xy[1])), int(round(xy[0]))].astype(int)
    want = np.array(bgr) > 0
    return bool(px[want].min() > 128 and (not (~want).any() or px[~want].max() < 128))


def test_draw_matches_size_and_colours():
    visible, thermal = _images()
    k0 = np.array([[20, 30], [40, 80], [100, 60], [150, 110]], float)
    k1 = np.array([[10, 20], [30, 70], [90, 50], [130, 90]], float)
    m = Matches(k0, k1, np.ones(4))
    inl = np.array([True, True, False, True])
    out = draw_matches(visible, thermal, m, inl, outliers=True)
    assert out.shape == (120, 300, 3) and out.dtype == np.uint8
    for i, colour in enumerate([INLIER_BGR, INLIER_BGR, OUTLIER_BGR, INLIER_BGR]):
        assert _marked(out, k0[i], colour) and _marked(out, k1[i] + (160, 0), colour), i
    # by default only the inliers: readable when outliers are most of the raw matches
    plain = draw_matches(visible, thermal, m, inl)
    assert not _marked(plain, k0[2], OUTLIER_BGR) and not _marked(plain, k1[2] + (160, 0), OUTLIER_BGR)
    np.testing.assert_array_equal(plain[55:66, 95:106], visible[55:66, 95:106])  # nothing drawn at the outlier
    assert all(_marked(plain, k0[i], INLIER_BGR) for i in (0, 1, 3))
    # the visible image is left untouched away from the lines and the title
    np.testing.assert_array_equal(out[115:, :5], visible[115:, :5])
    # the title area holds light text on black, and so do the two halves' labels (bottom right)
    assert (out[:30].max(axis=2) > 200).sum() > 20
    assert (out[100:, 110:160].max(axis=2) > 200).sum() > 10 and (out[80:100, 250:300].max(axis=2) > 200).sum() > 10


def test_match_plan_order_subset_and_caption():
    valid = np.arange(6)
    inl = np.array([True, False, True, False, True, True])
    shown, lines, caption = match_plan(6, valid, inl, max_draw=300, outliers=True)
    assert shown.tolist() == [1, 3, 0, 2, 4, 5] and caption == "4/6 inliers"  # outliers under inliers
    assert lines.tolist() == shown.tolist()
    shown, lines, caption = match_plan(6, valid, inl, max_draw=300, outliers=False)
    assert shown.tolist() == lines.tolist() == [0, 2, 4, 5] and caption == "4/6 inliers, outliers not drawn"
    shown, lines, caption = match_plan(6, valid, inl, max_draw=2, outliers=False)
    assert shown.tolist() == [0, 2, 4, 5] and lines.tolist() == [0, 5]
    assert caption == "4/6 inliers (lines for 2, dots for all 4), outliers not drawn"
    shown, lines, caption = match_plan(6, valid[:4], None, max_draw=0, outliers=False)
    assert shown.tolist() == [0, 1, 2, 3] and lines.tolist() == [] and caption == "6 matches (lines for 0, dots for all 4)"


def test_draw_matches_without_mask_tuple_input_and_gray():
    visible, thermal = _images()
    gray = visible[:, :, 0]
    k = np.array([[10.0, 10.0], [50.0, 50.0]])
    out = draw_matches(gray, thermal[:80], (k, k), title="sift")
    assert out.shape == (120, 300, 3)
    assert _marked(out, k[1], UNVERIFIED_BGR) and _marked(out, k[1] + (160, 0), UNVERIFIED_BGR)


def test_draw_matches_limits_drawn_lines_and_handles_empty():
    visible, thermal = _images()
    rng = np.random.default_rng(1)
    k0 = rng.uniform(0, 100, (1000, 2))
    k1 = rng.uniform(0, 100, (1000, 2))
    few = draw_matches(visible, thermal, (k0, k1), np.ones(1000, bool), max_draw=5)
    many = draw_matches(visible, thermal, (k0, k1), np.ones(1000, bool), max_draw=300)  # more lines, same dots
    changed = [int((c != draw_matches(visible, thermal, Matches.empty(), np.zeros(0, bool))).any(2)[40:].sum())
               for c in (few, many)]
    assert 0 < changed[0] < changed[1]  # (rows below the title)
    empty = draw_matches(visible, thermal, Matches.empty(), np.zeros(0, bool))
    assert empty.shape == (120, 300, 3)


def test_draw_matches_rejects_bad_input():
    visible, thermal = _images()
    k = np.zeros((3, 2))
    with pytest.raises(ValueError, match="inliers has 2 entries for 3 matches"):
        draw_matches(visible, thermal, (k, k), np.ones(2, bool))
    with pytest.raises(ValueError, match="visible must be an"):
        draw_matches(np.zeros((4, 4, 2), np.uint8), thermal, (k, k))


def test_draw_registration_edges_by_default():
    """The default overlay: the warped thermal image's edges in magenta on the grey visible
    image, captioned."""
    from matchanything_ros.viz import EDGE_BGR

    visible, _ = _images()
    warped = np.zeros((120, 160), np.uint8)
    warped[40:80, 60:100] = 255  # a bright square: its outline is the edge
    out = draw_registration(visible, warped)
    magenta = np.all(out == EDGE_BGR, axis=2)
    assert magenta[40:80, 55:65].any() and magenta[40:80, 95:105].any()
    assert not magenta[90:, :].any() and not magenta[45:75, 66:94].any()  # no edges away from the square
    assert (out[:25].max(axis=2) > 200).sum() > 20  # the caption


def test_draw_registration_checkerboard_and_blend():
    visible, _ = _images()
    warped = np.full((120, 160), 40000, np.uint16)
    warped[0, 0] = 0  # give the stretch a range
    board = draw_registration(visible, warped, mode="checkerboard", tile=40)
    assert board.shape == visible.shape and board.dtype == np.uint8
    np.testing.assert_array_equal(board[:40, :40][1:], visible[:40, :40][1:])  # visible tile
    assert not np.array_equal(board[:40, 40:80], visible[:40, 40:80])  # thermal tile
    blend = draw_registration(visible, warped, mode="blend", alpha=0.0)
    np.testing.assert_array_equal(blend, visible)
    with pytest.raises(ValueError, match="mode must be one of"):
        draw_registration(visible, warped, mode="diff")
    with pytest.raises(ValueError, match="warp_thermal_to_visible"):
        draw_registration(visible, warped[:50])
