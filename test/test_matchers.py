"""SIFT and XFeat matchers: original-pixel coordinates, robustness, and the offline default end
to end through the pipeline on synthetic pairs with exact ground truth."""
import cv2
import numpy as np
import pytest

from matchanything_ros.matching import MatcherError, Matches, create_matcher
from matchanything_ros.matching.resize import fit_long_side, to_original
from matchanything_ros.synthetic import make_planar_pair


@pytest.fixture(scope="module")
def xfeat():
    return create_matcher("xfeat", device="cpu", resolution=480)


@pytest.fixture(scope="module")
def xfeat_sparse():
    return create_matcher("xfeat", device="cpu", resolution=480, method="sparse")


@pytest.fixture(scope="module")
def sift():
    return create_matcher("sift", resolution=480)


@pytest.fixture(scope="module")
def textured():
    """A richly textured visible image (the synthetic generator's), 640x512 BGR."""
    return make_planar_pair(0).visible


def test_fit_long_side_and_back_mapping():
    assert fit_long_side(1000, 500, 640) == (640, 320)
    assert fit_long_side(500, 333, 640, 32) == (640, 416)
    # a pixel centre maps to itself through a resize by 2 and back
    assert np.allclose(to_original([[0.0, 0.0], [9.5, 4.5]], (2.0, 2.0)), [[0.5, 0.5], [19.5, 9.5]])


# XFeat* (the default "xfeat" method) pairs image 1's coarse 8-px grid cells with refined image 0
# positions; its refinement leaves errors of 1-3 px that depend on the sub-cell phase of the shift.
@pytest.mark.parametrize("name, tol_px, max_median_px", [("sift", 2.0, 0.3), ("xfeat_sparse", 2.0, 0.3), ("xfeat", 4.0, 2.0)])
def test_shifted_copy_comes_back_in_original_pixels(name, tol_px, max_median_px, request, textured):
    """image1 is image0 shifted by (-13, -7) px: every correct match has kpts0 - kpts1 = (13, 7),
    although the matcher works at its own resolution (480 long side vs. 640 and 560 input)."""
    matcher = request.getfixturevalue(name)
    shifted = textured[7 : 7 + 448, 13 : 13 + 560]
    m = matcher.match(textured, shifted)
    assert isinstance(m, Matches) and len(m) > 50
    d = m.kpts0 - m.kpts1
    good = np.linalg.norm(d - [13, 7], axis=1) < tol_px
    assert good.mean() > 0.6
    assert np.abs(np.median(d[good], axis=0) - [13, 7]).max() < max_median_px  # no systematic offset


@pytest.mark.parametrize("name", ["sift", "xfeat_sparse", "xfeat"])
def test_scaled_copy_comes_back_in_original_pixels(name, request, textured):
    """image1 is image0 at half size (and gray): kpts1 = (kpts0 + 0.5) / 2 - 0.5."""
    matcher = request.getfixturevalue(name)
    small = cv2.resize(cv2.cvtColor(textured, cv2.COLOR_BGR2GRAY), (320, 256), interpolation=cv2.INTER_AREA)
    m = matcher.match(textured, small)
    expected = (m.kpts0 + 0.5) / 2 - 0.5
    err = np.linalg.norm(expected - m.kpts1, axis=1)
    assert (err < 2.0).mean() > 0.6
    assert np.median(err) < 1.0


@pytest.mark.parametrize("name", ["sift", "xfeat"])
def test_textureless_images_give_no_matches_not_errors(name, request):
    matcher = request.getfixturevalue(name)
    flat = np.full((120, 160), 128, np.uint8)
    m = matcher.match(flat, flat)
    assert len(m) == len(m.kpts1) == len(m.scores)


def test_max_matches_caps_and_keeps_best_scores(textured):
    capped = create_matcher("sift", resolution=480, max_matches=25)
    m = capped.match(textured, textured[7:, 13:])
    assert len(m) == 25
    assert np.all(np.diff(m.scores) <= 1e-6)  # best first


@pytest.mark.parametrize(
    "name, options, message",
    [
        ("sift", {"ratio": 1.5}, "ratio"),
        ("sift", {"resolution": 8}, "resolution"),
        ("xfeat", {"method": "dense"}, "method must be one of"),
        ("xfeat", {"device": "tpu"}, "device"),
    ],
)
def test_bad_options_are_clear_errors(name, options, message):
    with pytest.raises(MatcherError, match=message):
        create_matcher(name, **options)


def test_matchers_reject_non_uint8_images(sift):
    with pytest.raises(ValueError, match="uint8"):
        sift.match(np.zeros((64, 64), np.uint16), np.zeros((64, 64), np.uint8))


@pytest.mark.parametrize("seed", [1, 4])
def test_offline_default_pipeline_recovers_synthetic_homography(seed):
    """The offline default (what model 'auto' runs without MatchAnything weights) with the
    default pipeline settings recovers the exact ground-truth homography of a synthetic
    visible / 16-bit thermal pair to a few pixels."""
    from matchanything_ros.evaluation.metrics import corner_error
    from matchanything_ros.matching import OFFLINE_DEFAULT
    from matchanything_ros.pipeline import Pipeline, PipelineConfig

    pair = make_planar_pair(seed)
    pipe = Pipeline(PipelineConfig(model=OFFLINE_DEFAULT, device="cpu", geometry="homography"))
    res = pipe.process(pair.visible, pair.thermal)
    assert res.ok, res.geometry.message
    h, w = pair.visible.shape[:2]
    assert corner_error(res.geometry.matrix, pair.H, w, h) < 5.0
    assert res.num_inliers >= 20


def test_xfeat_both_polarities_pools_normal_and_inverted_matches(textured):
    """With both_polarities, an inverted copy still matches (through the inverted pass)."""
    matcher = create_matcher("xfeat", device="cpu", resolution=320, method="sparse", both_polarities=True)
    gray = cv2.cvtColor(textured, cv2.COLOR_BGR2GRAY)
    inverted_shifted = 255 - gray[7 : 7 + 448, 13 : 13 + 560]
    m = matcher.match(textured, inverted_shifted)
    assert m.info["both_polarities"] and 0 < m.info["num_inverted"] <= len(m)
    good = np.linalg.norm(m.kpts0 - m.kpts1 - [13, 7], axis=1) < 2.0
    assert good[len(m) - m.info["num_inverted"] :].mean() > 0.5  # the inverted pass is right
    assert "both polarities" in matcher.describe()
