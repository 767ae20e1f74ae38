"""RoMa network, weights and sampling (MatchAnything-RoMa and MINIMA-RoMa), on seeded random
weights at a small test-time size. Parity with the authors' code: test_roma_authors_parity.py."""
from __future__ import annotations

import pickle

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from matchanything_ros.models.eloftr.weights import WeightsError  # noqa: E402
from matchanything_ros.models.roma import RomaSettings, load_roma  # noqa: E402
from matchanything_ros.models.roma.model import kde  # noqa: E402
from matchanything_ros.models.roma.random_weights import (  # noqa: E402
    seeded_state_dict, seeded_tensor, write_published_files,
)
from matchanything_ros.synthetic import make_planar_pair  # noqa: E402

SMALL = {"coarse_res": 112, "upsample_res": 224}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """Both variants' checkpoints in their published layouts, beside one DINOv2 file."""
    folder = tmp_path_factory.mktemp("roma")
    ma = write_published_files(folder, "matchanything_roma", seed=3)
    minima = write_published_files(folder, "minima_roma", seed=3)
    return {"matchanything_roma": ma, "minima_roma": minima}


@pytest.fixture(scope="module")
def pair():
    p = make_planar_pair(5, size=(200, 160))
    thermal = (p.thermal.astype(np.float32) - p.thermal.min()) / max(1, np.ptp(p.thermal)) * 255
    return p.visible, thermal.astype(np.uint8)


@pytest.mark.parametrize("variant", ["matchanything_roma", "minima_roma"])
def test_published_layouts_load_and_match(published, pair, variant):
    runner = load_roma(variant, published[variant]["checkpoint"], published[variant]["dinov2"], **SMALL)
    visible, thermal = pair
    k0, k1, conf = runner.match_images(visible, thermal, num=800, seed=7)  # the KDE is quadratic in num
    assert k0.dtype == np.float32 and k0.shape == k1.shape and k0.shape[1] == 2 and len(conf) == len(k0)
    assert len(k0) == 800  # random certainties all pass the sampler's threshold here
    for k, image in ((k0, visible), (k1, thermal)):
        assert np.isfinite(k).all()
        assert (k > -1).all() and (k[:, 0] < image.shape[1]).all() and (k[:, 1] < image.shape[0]).all()
    # the draw is seeded: the same seed repeats it, another one does not
    warp, certainty = runner.model.dense(*[torch.from_numpy(np.ascontiguousarray(np.zeros((3, 32, 40), np.float32) + i))
                                           for i in (0.2, 0.6)]) if variant == "matchanything_roma" else \
        runner.model.dense(np.full((32, 40, 3), 50, np.uint8), np.full((32, 40, 3), 200, np.uint8))
    draws = [runner.model.sample(warp, certainty, 500, torch.Generator().manual_seed(seed))[0] for seed in (7, 7, 8)]
    assert torch.equal(draws[0], draws[1]) and not torch.equal(draws[0], draws[2])
    # grey input is the three-channel image with equal channels
    if variant == "minima_roma":
        grey = runner.match_images(visible[..., 1], thermal, num=100, seed=7)
        assert grey[0].shape[1] == 2


def test_variants_differ_where_the_authors_do(published, pair):
    ma = load_roma("matchanything_roma", published["matchanything_roma"]["checkpoint"],
                   published["matchanything_roma"]["dinov2"], **SMALL)
    assert ma.settings.num == 5000 and not ma.settings.normalize and ma.settings.preprocess == "space"
    minima = load_roma("minima_roma", published["minima_roma"]["checkpoint"], published["minima_roma"]["dinov2"], **SMALL)
    assert minima.settings.num == 10000 and minima.settings.normalize and minima.settings.kde_half


def test_checkpoint_layouts_are_checked(published, tmp_path):
    dinov2 = published["matchanything_roma"]["dinov2"]
    # the checkpoint of another network: refused, naming the layout and a missing key
    other = tmp_path / "other.ckpt"
    torch.save({"state_dict": {"backbone.conv1.weight": torch.zeros(3, 3)}}, other)
    with pytest.raises(WeightsError, match="does not fit a RoMa checkpoint.*missing encoder.cnn.layers.0.weight"):
        load_roma("matchanything_roma", other, dinov2, **SMALL)
    # the files swapped: the DINOv2 file is no RoMa checkpoint, and vice versa
    with pytest.raises(WeightsError, match="does not fit"):
        load_roma("matchanything_roma", dinov2, published["matchanything_roma"]["checkpoint"], **SMALL)
    # a missing DINOv2 file is named as such
    with pytest.raises(WeightsError, match="DINOv2 ViT-L/14 weights not found"):
        load_roma("matchanything_roma", published["matchanything_roma"]["checkpoint"], tmp_path / "none.pth", **SMALL)


class _Boom:
    def __reduce__(self):
        return (exec, ("open('/tmp/roma_pwned', 'w').write('x')",))


def test_a_checkpoint_that_would_run_code_is_refused(published, tmp_path):
    import os

    evil = tmp_path / "minima_roma.pth"
    with open(evil, "wb") as fh:
        pickle.dump({"encoder.cnn.layers.0.weight": _Boom()}, fh, protocol=2)
    if os.path.exists("/tmp/roma_pwned"):
        os.remove("/tmp/roma_pwned")
    with pytest.raises(WeightsError, match="pickled objects other than tensors are refused"):
        load_roma("minima_roma", evil, published["minima_roma"]["dinov2"], **SMALL)
    assert not os.path.exists("/tmp/roma_pwned")


def test_settings_are_validated():
    with pytest.raises(ValueError, match="multiple of 14 and of 8"):
        RomaSettings(coarse_res=100).check()
    with pytest.raises(ValueError, match="upsample_res"):
        RomaSettings(coarse_res=224, upsample_res=112).check()
    with pytest.raises(ValueError, match="preprocess"):
        RomaSettings(preprocess="other").check()


def test_kde_in_blocks_equals_one_block():
    x = torch.rand(3000, 4, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = (-torch.cdist(x, x) ** 2 / (2 * 0.1 ** 2)).exp().sum(dim=-1)
    torch.testing.assert_close(kde(x, chunk=512), whole, rtol=1e-5, atol=1e-4)


def test_seeded_weights_are_a_function_of_name_and_shape():
    a = seeded_tensor("decoder.proj.16.0.weight", (512, 1024, 1, 1), seed=1)
    torch.testing.assert_close(a, seeded_tensor("decoder.proj.16.0.weight", (512, 1024, 1, 1), seed=1), rtol=0, atol=0)
    assert not torch.equal(a, seeded_tensor("decoder.proj.8.0.weight", (512, 1024, 1, 1), seed=1))
    state = seeded_state_dict({"x.running_var": torch.zeros(4), "x.num_batches_tracked": torch.zeros((), dtype=torch.long)})
    assert (state["x.running_var"] > 0).all() and state["x.num_batches_tracked"].dtype == torch.long


def test_dense_network_exports_to_onnx_and_runs_at_parity(tmp_path):
    """The fixed-shape export of both passes: standard ONNX operators except the GP's inverse
    (ONNX Runtime's com.microsoft::Inverse), and ONNX Runtime gives torch's warp and certainty."""
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    from dataclasses import replace

    from matchanything_ros.models.roma.export import INVERSE, export_dense_onnx
    from matchanything_ros.models.roma.model import MATCHANYTHING_ROMA, RoMa

    model = RoMa(replace(MATCHANYTHING_ROMA, coarse_res=112, upsample_res=224))
    model.load_state_dict(seeded_state_dict(model.state_dict(), 3))
    ops = export_dense_onnx(model.eval(), tmp_path / "roma.onnx")
    assert not model.training
    assert {op for op in ops if not op.startswith("ai.onnx::")} == {INVERSE} and ops[INVERSE] == 1
    assert ops["ai.onnx::GridSample"] > 0  # warping, local correlation
    g = torch.Generator().manual_seed(0)
    inputs = [torch.rand(1, 3, s, s, generator=g) for s in (112, 112, 224, 224)]
    session = ort.InferenceSession(str(tmp_path / "roma.onnx"), providers=["CPUExecutionProvider"])
    warp, certainty = session.run(None, {f"{n}": x.numpy() for n, x in zip(("a_coarse", "b_coarse", "a_fine", "b_fine"), inputs)})
    with torch.no_grad():
        ref_warp, ref_certainty = model.dense_network(*inputs)
    np.testing.assert_allclose(warp, ref_warp.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(certainty, ref_certainty.numpy(), atol=1e-5, rtol=0)
