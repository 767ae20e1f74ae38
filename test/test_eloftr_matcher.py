"""ELoFTR preprocessing (sizes, inverse keypoint mapping) and the ELoFTRMatcher end to end with
real (random, reference-derived) weights at small resolution."""
from __future__ import annotations

import numpy as np
import pytest

from test_eloftr_common import build_reference, textured_image

from matchanything_ros.matching.base import MatcherError, Matches
from matchanything_ros.models.eloftr.preprocess import network_size, prepare_pair


@pytest.mark.parametrize(
    "shape0, shape1, resolution, expected",
    [
        ((480, 640), (480, 640), 640, (480, 640)),
        ((640, 480, 3), (640, 480), 640, (640, 480)),  # portrait
        ((512, 640), (480, 640), 640, (480, 640)),  # geometric-mean aspect 1.29 -> 495 -> 480
        ((256, 256), (512, 512), 832, (832, 832)),
        ((100, 1000), (100, 1000), 320, (64, 320)),  # short side clamped to 64
    ],
)
def test_network_size(shape0, shape1, resolution, expected):
    size = network_size(shape0, shape1, resolution)
    assert size == expected
    assert size[0] % 32 == 0 and size[1] % 32 == 0


@pytest.mark.parametrize("resolution", [0, 100, 48])
def test_network_size_rejects_bad_resolution(resolution):
    with pytest.raises(ValueError, match="multiple of 32"):
        network_size((480, 640), (480, 640), resolution)


@pytest.mark.parametrize("shape", [(300, 400), (173, 611)])
def test_keypoints_map_back_to_original_pixels(shape):
    """A blob centred at a known original pixel is found, after resizing and mapping back,
    within a fraction of a pixel (separate x/y scales per image)."""
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    cx, cy = 0.37 * w, 0.61 * h
    blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * 12.0**2))
    image = (255 * blob).astype(np.uint8)
    other = np.zeros((240, 320), np.uint8)
    pair = prepare_pair(image, other, 256)
    net = pair.image0[0, 0]
    ny, nx = np.mgrid[0 : net.shape[0], 0 : net.shape[1]]
    centroid = np.array([[(nx * net).sum() / net.sum(), (ny * net).sum() / net.sum()]], np.float32)
    back = pair.to_original(centroid, 0)[0]
    assert abs(back[0] - cx) < 0.3 and abs(back[1] - cy) < 0.3
    assert pair.scale1 == (320 / pair.size[1], 240 / pair.size[0])


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    from safetensors.torch import save_file

    ref = build_reference(seed=0)
    path = tmp_path_factory.mktemp("w") / "model.safetensors"
    save_file({k: v.contiguous() for k, v in ref.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def images():
    visible = textured_image(150, 200, seed=21)
    thermal = 255 - visible  # inverted polarity, as thermal often is
    bgr = np.dstack([visible, visible, visible])
    import cv2

    return bgr, cv2.resize(thermal, (240, 180))  # different size and aspect per image


def test_matcher_torch(weights_file, images):
    from matchanything_ros.models.eloftr.matcher import ELoFTRMatcher

    matcher = ELoFTRMatcher(weights=weights_file, backend="torch", device="cpu", resolution=128, max_matches=100, match_threshold=0.0)
    result = matcher.match(*images)
    assert isinstance(result, Matches)
    assert 0 < len(result) <= 100
    assert result.info["network_size"] == network_size(images[0].shape, images[1].shape, 128)
    assert np.all(result.scores > 0)
    assert np.all(np.diff(result.scores) <= 0)  # best first
    for kpts, image in ((result.kpts0, images[0]), (result.kpts1, images[1])):
        assert kpts.min() >= -8 and np.all(kpts.max(axis=0) <= np.array(image.shape[1::-1]) + 8)
    assert "backend=torch" in matcher.describe()
    # the same pair again gives the same answer (no state kept between calls)
    again = matcher.match(*images)
    np.testing.assert_array_equal(again.kpts0, result.kpts0)


@pytest.mark.slow
def test_matcher_onnxruntime_agrees_with_torch(weights_file, images, tmp_path):
    from matchanything_ros.models.eloftr.matcher import ELoFTRMatcher

    opts = dict(weights=weights_file, device="cpu", resolution=128, max_matches=100, match_threshold=0.0)
    torch_result = ELoFTRMatcher(backend="torch", **opts).match(*images)
    ort = ELoFTRMatcher(backend="onnxruntime", cache_dir=tmp_path, **opts)
    ort_result = ort.match(*images)
    assert list((tmp_path / "onnx").glob("*.onnx")), "the export is cached per size"
    assert len(ort_result) == len(torch_result)
    np.testing.assert_allclose(ort_result.scores, torch_result.scores, atol=1e-4)
    np.testing.assert_allclose(ort_result.kpts0, torch_result.kpts0, atol=0.05)
    np.testing.assert_allclose(ort_result.kpts1, torch_result.kpts1, atol=0.05)


@pytest.mark.parametrize(
    "options, message",
    [
        (dict(backend="cuda"), "backend"),
        (dict(max_matches=5000), "max_matches"),
        (dict(resolution=100), "multiple of 32"),
        (dict(precision="int8"), "precision"),
        (dict(match_threshold=1.5), "match_threshold"),
    ],
)
def test_matcher_rejects_bad_options(weights_file, options, message):
    from matchanything_ros.models.eloftr.matcher import ELoFTRMatcher

    with pytest.raises(MatcherError, match=message):
        ELoFTRMatcher(weights=weights_file, **options)


def test_matcher_missing_weights(tmp_path):
    from matchanything_ros.models.eloftr.matcher import ELoFTRMatcher

    with pytest.raises(MatcherError, match="not found"):
        ELoFTRMatcher(weights=tmp_path / "missing.safetensors")


def test_registry_builds_eloftr(weights_file, images):
    from matchanything_ros.matching import create_matcher

    matcher = create_matcher("auto", weights=str(weights_file), backend="torch", device="cpu", resolution=128, max_matches=50)
    assert matcher.name == "matchanything_eloftr"
    assert len(matcher.match(*images)) <= 50


def test_half_precision_keeps_coarse_head_fp32():
    """A half-precision model (or autocast) still computes the coarse similarity and dual softmax
    in fp32: in fp16 the L x L dual softmax loses almost every match."""
    import torch

    from matchanything_ros.models.eloftr.coarse import coarse_confidence
    from matchanything_ros.models.eloftr.model import ELoFTRDeploy

    gen = torch.Generator().manual_seed(0)
    f0, f1 = torch.randn(1, 256, 8, 10, generator=gen) * 4, torch.randn(1, 256, 8, 10, generator=gen) * 4
    full = coarse_confidence(f0, f1, 0.1)
    half = coarse_confidence(f0.half(), f1.half(), 0.1)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, atol=1e-2, rtol=0)  # only input rounding differs
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert coarse_confidence(f0, f1, 0.1).dtype == torch.float32
    model = ELoFTRDeploy(top_k=16).eval().half()
    image = torch.rand(1, 1, 64, 96, generator=gen).half()
    with torch.no_grad():
        kpts0, kpts1, scores, _ = model(image, image, torch.tensor(0.0))
    assert kpts0.dtype == kpts1.dtype == scores.dtype == torch.float32
    assert kpts0.shape == (16, 2) and scores.shape == (16,)


def test_npe_scales_rope_positions(weights_file):
    """MatchAnything's NPE: RoPE positions scaled by npe_resolution / resolution."""
    import torch

    from matchanything_ros.models.eloftr.matcher import ELoFTRMatcher
    from matchanything_ros.models.eloftr.transformer import rope_tables

    cos2, sin2 = rope_tables(3, 4, 256, 10000.0, (2.0, 2.0), "cpu")
    cos1, sin1 = rope_tables(6, 8, 256, 10000.0, (1.0, 1.0), "cpu")
    # scaled position (r, c) of the 3x4 grid = unscaled position (2r+1, 2c+1) of the 6x8 grid
    rows, cols = torch.meshgrid(torch.arange(3), torch.arange(4), indexing="ij")
    idx = ((2 * rows + 1) * 8 + (2 * cols + 1)).reshape(-1)
    torch.testing.assert_close(cos2, cos1[idx])
    torch.testing.assert_close(sin2, sin1[idx])
    opts = dict(weights=weights_file, backend="torch", device="cpu", resolution=128, match_threshold=0.0)
    plain = ELoFTRMatcher(**opts)
    npe = ELoFTRMatcher(npe_resolution=256, **opts)
    assert npe._model.config.rope_scale == (2.0, 2.0)
    assert ELoFTRMatcher(npe_resolution=128, **opts)._model.config.rope_scale == (1.0, 1.0)
    assert plain._model.config.rope_scale == (1.0, 1.0)


def test_pipeline_network_size_stretches_every_pair_to_it(weights_file, images):
    """network_size WxH: the pipeline's ELoFTR matcher runs every pair at W x H (the Space's
    stretch), whatever the images' aspect ratios; keypoints still land in each image."""
    from matchanything_ros.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline(PipelineConfig(model="matchanything_eloftr", weights=str(weights_file), backend="torch",
                                   device="cpu", network_size="160x96", max_matches=100, match_threshold=0.0,
                                   polarity="normal", geometry="none"))
    result = pipe.process(*images)
    assert result.matches.info["network_size"] == (96, 160)
    assert "160x96px" in pipe.matcher.describe()
    for kpts, image in ((result.matches.kpts0, images[0]), (result.matches.kpts1, images[1])):
        assert np.all(kpts.max(axis=0) <= np.array(image.shape[1::-1]) + 8)
