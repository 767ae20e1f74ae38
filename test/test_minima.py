"""MINIMA models (minima_splg, minima_loftr): published checkpoint layouts, parity with the
reference implementations, ONNX Runtime vs PyTorch, registry / CLI / node-config use.

Random weights (re-initialised so that the shifted test pair gets matches) prove plumbing and
parity only, never accuracy."""
from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("kornia")

from matchanything_ros.matching import MatcherError, available_models, create_matcher  # noqa: E402
from matchanything_ros.models.eloftr.weights import WeightsError  # noqa: E402
from matchanything_ros.models.minima import weights as mw  # noqa: E402
from matchanything_ros.models.minima.loftr import load_loftr, random_loftr  # noqa: E402
from matchanything_ros.models.minima.splg import SPLGConfig, load_splg, random_splg  # noqa: E402

SHIFT = np.array([8.0, -8.0])  # image 1 = image 0 moved by (8, -8) px (multiples of 8: SuperPoint's grid)
SMALL = SPLGConfig(max_keypoints=512)  # MINIMA's settings with fewer slots, for speed


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur((rng.random((260, 340)) * 255).astype(np.uint8), (0, 0), 2)
    return img[10:250, 10:330].copy(), img[18:258, 2:322].copy()  # 320x240 each


@pytest.fixture(scope="module")
def ckpt_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("minima_weights")
    mw.write_random_checkpoints(directory, seed=0)
    return directory


def _tensor(gray):
    return torch.from_numpy(gray).float().div(255)[None, None]


def _net_inputs(pair):
    from matchanything_ros.matching.minima import _prepare

    return _prepare(pair[0], pair[1], 320)  # 320x256 network input


# --------------------------------------------------------------------------- layouts
def test_published_layouts_round_trip(tmp_path):
    model = random_splg(1, SMALL)
    paths = mw.write_published_layouts(tmp_path, model.lightglue.state_dict(), model.superpoint.state_dict(),
                                       random_loftr(1).state_dict())
    stored = torch.load(paths["minima_lightglue.pth"], weights_only=True)
    # the file carries LightGlue's old attention names, as MINIMA publishes it
    assert "self_attn.0.Wqkv.weight" in stored and "cross_attn.8.to_qk.weight" in stored
    assert not any(k.startswith("transformers.") for k in stored)
    assert set(torch.load(paths["minima_loftr.ckpt"], weights_only=True)) == {"state_dict"}
    loaded = load_splg(paths["minima_lightglue.pth"], paths["superpoint_v1.pth"], SMALL)
    for name, value in {**model.state_dict()}.items():
        assert torch.equal(loaded.state_dict()[name], value), name
    loftr = load_loftr(paths["minima_loftr.ckpt"])
    reference = random_loftr(1)
    assert all(torch.equal(loftr.state_dict()[k], v) for k, v in reference.state_dict().items())


def test_matcher_prefix_accepted(tmp_path):
    state = {f"matcher.{k}": v for k, v in random_loftr(2).state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "minima_loftr.ckpt")
    load_loftr(tmp_path / "minima_loftr.ckpt")


def test_wrong_files_name_the_expected_layout(tmp_path, ckpt_dir):
    # a LoFTR checkpoint where LightGlue is expected, and the reverse
    with pytest.raises(WeightsError, match="minima_lightglue.pth: a LightGlue state_dict"):
        load_splg(ckpt_dir / "minima_loftr.ckpt", ckpt_dir / "superpoint_v1.pth", SMALL)
    with pytest.raises(WeightsError, match=r"minima_loftr.ckpt: \{'state_dict'"):
        load_loftr(ckpt_dir / "minima_lightglue.pth")
    with pytest.raises(WeightsError, match="superpoint_v1.pth"):
        load_splg(ckpt_dir / "minima_lightglue.pth", ckpt_dir / "minima_lightglue.pth", SMALL)
    # right names, wrong shapes
    state = torch.load(ckpt_dir / "superpoint_v1.pth", weights_only=True)
    state["convDb.weight"] = state["convDb.weight"][:128]
    torch.save(state, tmp_path / "superpoint_v1.pth")
    with pytest.raises(WeightsError, match="tensor shapes"):
        load_splg(ckpt_dir / "minima_lightglue.pth", tmp_path / "superpoint_v1.pth", SMALL)
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(WeightsError, match="empty"):
        load_loftr(tmp_path / "empty.pth")


class _Boom:
    def __reduce__(self):
        return (os.system, ("touch PWNED_MINIMA",))


def test_pickled_code_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with open("minima_loftr.ckpt", "wb") as f:
        pickle.dump({"state_dict": {"x": _Boom()}}, f)
    with pytest.raises(WeightsError):
        load_loftr(tmp_path / "minima_loftr.ckpt")
    assert not (tmp_path / "PWNED_MINIMA").exists()


# --------------------------------------------------------------------------- locate / download
def test_download_logic_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert mw.MINIMA_LIGHTGLUE.urls == ("https://github.com/LSXI7/storage/releases/download/MINIMA/minima_lightglue.pth",)
    assert mw.MINIMA_LOFTR.urls[0].endswith("/MINIMA/minima_loftr.ckpt")
    assert [p.filename for p in mw.MODEL_FILES["minima_splg"]] == ["minima_lightglue.pth", "superpoint_v1.pth"]
    with pytest.raises(WeightsError, match="weights download --model minima_splg"):
        mw.resolve_files("minima_splg", None, allow_download=False)

    def offline(url, dest):
        dest.write_bytes(b"partial")
        raise OSError("no route to host")

    with pytest.raises(WeightsError, match="looks offline: run `matchanything-ros weights download --model minima_loftr`"):
        mw.download(mw.MINIMA_LOFTR, fetch=offline)
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.is_file()]  # no half file left
    fetched = []

    def fake(url, dest):
        fetched.append(url)
        dest.write_bytes(b"x")

    path = mw.download(mw.MINIMA_LOFTR, fetch=fake)
    assert path == mw.cache_dir() / "minima_loftr.ckpt" and fetched == list(mw.MINIMA_LOFTR.urls)
    assert mw.resolve_files("minima_loftr", None, allow_download=False) == [path]
    mw.download(mw.MINIMA_LOFTR, fetch=fake)  # present: not fetched again
    assert len(fetched) == 1


def test_superpoint_found_beside_lightglue(ckpt_dir, tmp_path):
    found = mw.resolve_files("minima_splg", ckpt_dir / "minima_lightglue.pth", allow_download=False)
    assert found == [ckpt_dir / "minima_lightglue.pth", ckpt_dir / "superpoint_v1.pth"]
    with pytest.raises(WeightsError, match="not found"):
        mw.resolve_files("minima_splg", tmp_path / "nope.pth", allow_download=False)


# --------------------------------------------------------------------------- parity
def _hf_reference(model, config):
    """transformers' SuperPoint + LightGlue (a port of cvg/LightGlue, which is not on PyPI) with our
    weights; kornia's fused Wqkv is split into q/k/v and its shared cross to_qk into q and k."""
    transformers = pytest.importorskip("transformers")
    sp, lg = model.superpoint.state_dict(), model.lightglue.state_dict()
    out = {}
    for leaf in ("weight", "bias"):
        for i, n in enumerate("1234"):
            for ab in "ab":
                out[f"keypoint_detector.encoder.conv_blocks.{i}.conv_{ab}.{leaf}"] = sp[f"conv{n}{ab}.{leaf}"]
        for ab in "ab":
            out[f"keypoint_detector.keypoint_decoder.conv_score_{ab}.{leaf}"] = sp[f"convP{ab}.{leaf}"]
            out[f"keypoint_detector.descriptor_decoder.conv_descriptor_{ab}.{leaf}"] = sp[f"convD{ab}.{leaf}"]
        for i in range(config.n_layers):
            s, c, o = f"transformers.{i}.self_attn", f"transformers.{i}.cross_attn", f"transformer_layers.{i}"
            qkv = lg[f"{s}.Wqkv.{leaf}"].reshape(config.num_heads, -1, 3, *lg[f"{s}.Wqkv.{leaf}"].shape[1:])
            for j, name in enumerate("qkv"):
                out[f"{o}.self_attention.{name}_proj.{leaf}"] = qkv[:, :, j].reshape(-1, *qkv.shape[3:])
            out[f"{o}.self_attention.o_proj.{leaf}"] = lg[f"{s}.out_proj.{leaf}"]
            out[f"{o}.cross_attention.q_proj.{leaf}"] = lg[f"{c}.to_qk.{leaf}"]
            out[f"{o}.cross_attention.k_proj.{leaf}"] = lg[f"{c}.to_qk.{leaf}"]
            out[f"{o}.cross_attention.v_proj.{leaf}"] = lg[f"{c}.to_v.{leaf}"]
            out[f"{o}.cross_attention.o_proj.{leaf}"] = lg[f"{c}.to_out.{leaf}"]
            for block, mlp in ((s, "self_mlp"), (c, "cross_mlp")):
                for src, dst in (("0", "fc1"), ("1", "layer_norm"), ("3", "fc2")):
                    out[f"{o}.{mlp}.{dst}.{leaf}"] = lg[f"{block}.ffn.{src}.{leaf}"]
            out[f"match_assignment_layers.{i}.final_projection.{leaf}"] = lg[f"log_assignment.{i}.final_proj.{leaf}"]
            out[f"match_assignment_layers.{i}.matchability.{leaf}"] = lg[f"log_assignment.{i}.matchability.{leaf}"]
            if i < config.n_layers - 1:
                out[f"token_confidence.{i}.token.{leaf}"] = lg[f"token_confidence.{i}.token.0.{leaf}"]
    out["positional_encoder.projector.weight"] = lg["posenc.Wr.weight"]
    hf_config = transformers.LightGlueConfig(
        keypoint_detector_config=transformers.SuperPointConfig(
            keypoint_threshold=config.detection_threshold, max_keypoints=config.max_keypoints,
            nms_radius=config.nms_radius, border_removal_distance=config.remove_borders),
        num_hidden_layers=config.n_layers, filter_threshold=config.filter_threshold,
        depth_confidence=float(config.depth_confidence), width_confidence=float(config.width_confidence))
    reference = transformers.LightGlueForKeypointMatching(hf_config).eval()
    result = reference.load_state_dict(out, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    return reference


def _pairs(k0, k1, scores, candidates=None):
    return {(tuple(np.round(a).astype(int)), tuple(np.round(b).astype(int))): float(s)
            for a, b, s in zip(k0, k1, scores) if s > 0}


def test_splg_matches_reference(pair):
    """Identical matches and keypoints vs transformers' SuperPoint+LightGlue, same random weights,
    MINIMA's settings (threshold 0.0005, 9 layers, filter 0.1, depth/width confidence 0.95/0.99)
    with 1024 keypoints instead of 2048 for speed.

    transformers 5.x removes SuperPoint's border keypoints on the top/left only (it bounds a
    full-resolution map by height*8 and width*8), cvg/LightGlue and we on all four sides: the
    comparison runs with border removal off; our border removal is checked on its own below."""
    config = SPLGConfig(max_keypoints=1024, remove_borders=0)
    prepared = _net_inputs(pair)
    image0, image1 = torch.from_numpy(prepared.image0), torch.from_numpy(prepared.image1)
    height, width = prepared.size
    outputs = {}
    for adaptive in (True, False):  # kornia's own (adaptive) forward, our fixed-shape graph
        model = random_splg(0, config, adaptive=adaptive)
        with torch.inference_mode():
            outputs[adaptive] = [t.numpy() for t in model(image0, image1, torch.tensor(0.1))]
    reference = _hf_reference(model, config)
    with torch.inference_mode():
        pixels = torch.cat([image0, image1], 1)[:, :, None].expand(-1, -1, 3, -1, -1)
        ref = reference(pixels)
    wh = np.array([width, height], np.float32)
    ref_k0, ref_k1 = ref.keypoints[0, 0].numpy() * wh, ref.keypoints[0, 1].numpy() * wh
    k0 = outputs[True][0]
    # the same keypoints (integer pixels; tolerance for the reference's normalise/denormalise round trip)
    assert np.abs(np.sort(ref_k0.view(np.complex64).ravel()) - np.sort(k0.astype(np.float32).view(np.complex64).ravel())).max() < 1e-3
    rows = ref.matches.shape[-1]
    m0, s0 = ref.matches.reshape(-1, rows)[0].numpy(), ref.matching_scores.reshape(-1, rows)[0].numpy()
    ref_pairs = {(tuple(np.round(ref_k0[i]).astype(int)), tuple(np.round(ref_k1[j]).astype(int))): float(s0[i])
                 for i, j in enumerate(m0) if j > -1}
    ours = _pairs(*outputs[True])
    assert len(ours) >= 20
    assert set(ours) == set(ref_pairs)
    assert max(abs(ours[k] - ref_pairs[k]) for k in ours) < 1e-4
    # on this pair no point stops early or is pruned (the reference ran all 9 layers for every
    # point), so the fixed-shape graph, which always runs them, must agree exactly too
    assert int(ref.prune.min()) == config.n_layers
    assert set(_pairs(*outputs[False])) == set(ours)


def test_superpoint_border_and_threshold(pair):
    model = random_splg(0, SMALL).superpoint
    with torch.inference_mode():
        k, s, d, valid = model(_tensor(pair[0][:240, :320]))
    k = k[0][valid[0]].numpy()
    assert len(k) and k.min() >= 4 and k[:, 0].max() < 320 - 4 and k[:, 1].max() < 240 - 4
    assert (s[0][valid[0]] > SMALL.detection_threshold).all() and torch.allclose(d.norm(dim=-1), torch.ones(1))


def test_loftr_matcher_equals_kornia(pair, ckpt_dir):
    """minima_loftr adds only pre/post-processing around kornia's LoFTR (the reference here:
    zju3dv/LoFTR is not on PyPI)."""
    matcher = create_matcher("minima_loftr", weights=ckpt_dir, device="cpu", resolution=320, download=False)
    got = matcher.match(*pair)
    prepared = _net_inputs(pair)
    with torch.inference_mode():
        out = random_loftr(0)({"image0": torch.from_numpy(prepared.image0), "image1": torch.from_numpy(prepared.image1)})
    assert len(got) == len(out["confidence"]) >= 20
    np.testing.assert_allclose(got.kpts0, prepared.to_original(out["keypoints0"].numpy(), 0), atol=1e-4)
    np.testing.assert_allclose(got.kpts1, prepared.to_original(out["keypoints1"].numpy(), 1), atol=1e-4)
    assert np.median(got.kpts1 - got.kpts0, 0) == pytest.approx(SHIFT, abs=1.0)


@pytest.mark.slow
def test_onnxruntime_matches_torch(pair, tmp_path):
    pytest.importorskip("onnxruntime")
    from matchanything_ros.engines import create_engine
    from matchanything_ros.engines.export import check_tensorrt_compatible, export_onnx, read_metadata

    model = random_splg(0, SMALL, adaptive=False)
    prepared = _net_inputs(pair)
    h, w = prepared.size
    path = export_onnx(model, tmp_path / "splg.onnx", h, w, top_k=SMALL.max_keypoints, fp32_scopes=())
    assert check_tensorrt_compatible(path) == []
    assert read_metadata(path)["matchanything_ros.top_k"] == str(SMALL.max_keypoints)
    ort = create_engine("onnxruntime", onnx_path=path).run(prepared.image0, prepared.image1, 0.1)
    pt = create_engine("torch", model=model).run(prepared.image0, prepared.image1, 0.1)
    assert ((ort[2] > 0) == (pt[2] > 0)).all() and (pt[2] > 0).sum() >= 20  # identical matches
    keep = pt[2] > 0
    np.testing.assert_array_equal(ort[0], pt[0])
    np.testing.assert_allclose(ort[1][keep], pt[1][keep], atol=1e-3)
    np.testing.assert_allclose(ort[2], pt[2], atol=1e-4)
    assert ort[3] == pt[3] == int(keep.sum())  # candidates: every match has its slot


# --------------------------------------------------------------------------- registry / CLI / node
def test_runtime_change_needs_the_files_local(ckpt_dir, tmp_path):
    """The node refuses a runtime switch to a MINIMA model whose files are not local (it never
    downloads at run time) and accepts one whose folder holds them."""
    from matchanything_ros.node.config import runtime_problem
    from matchanything_ros.pipeline import PipelineConfig

    for model in ("minima_splg", "minima_loftr"):
        assert runtime_problem(PipelineConfig(model=model, weights=str(ckpt_dir))) is None
        empty = tmp_path / model
        empty.mkdir()
        assert "not found" in runtime_problem(PipelineConfig(model=model, weights=str(empty)))


def test_registry_and_matcher_options(pair, ckpt_dir):
    from matchanything_ros.node.config import parameter_specs
    from matchanything_ros.pipeline import PipelineConfig

    assert {"minima_splg", "minima_loftr"} <= set(available_models())
    config = PipelineConfig(model="minima_splg", weights=str(ckpt_dir), resolution=320)
    options = config.matcher_options()
    assert options["weights"] == str(ckpt_dir) and options["backend"] == "auto"
    matcher = create_matcher("minima_splg", **options, max_keypoints=512, download=False)
    result = matcher.match(*pair)
    assert len(result) >= 10 and "minima_splg" in matcher.describe()
    with pytest.raises(MatcherError, match="torch backend only"):
        create_matcher("minima_loftr", weights=ckpt_dir, backend="onnxruntime", download=False)
    spec = next(s for s in parameter_specs() if s.name == "model")  # the node's `model` choices
    assert {"minima_splg", "minima_loftr"} <= set(spec.choices) and "minima_splg" in spec.description
    from matchanything_ros.node.config import split_parameters

    _, pipe = split_parameters({"model": "minima_loftr", "weights": str(ckpt_dir)})  # node / replay -p
    assert pipe.model == "minima_loftr" and pipe.matcher_options()["weights"] == str(ckpt_dir)


def _cli(*args, env_extra=None):
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "OMP_WAIT_POLICY": "PASSIVE", **(env_extra or {})}
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    return subprocess.run([sys.executable, "-m", "matchanything_ros.cli", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


def test_cli_match_and_weights(pair, ckpt_dir, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), pair[0])
    cv2.imwrite(str(tmp_path / "b.png"), pair[1])
    out = tmp_path / "m.json"
    run = _cli("match", tmp_path / "a.png", tmp_path / "b.png", "--model", "minima_loftr", "--weights", ckpt_dir,
               "--resolution", "320", "--json", out)
    assert run.returncode == 0, run.stderr
    assert "minima_loftr" in json.loads(out.read_text())["model"]
    run = _cli("weights", "path", "--model", "minima_splg", "--weights", ckpt_dir)
    assert run.returncode == 0 and "superpoint_v1.pth" in run.stdout, run.stderr
    run = _cli("weights", "path", "--model", "minima_loftr", env_extra={"XDG_CACHE_HOME": str(tmp_path)})
    assert run.returncode == 2 and "weights download --model minima_loftr" in run.stderr
    assert len(run.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_accuracy_protocol_runs_minima_models(tmp_path):
    """The accuracy protocol builds the MINIMA models like any other (random weights: plumbing only)."""
    data = os.path.join(os.getcwd(), "..", "shared", "data", "roadscene_dev")
    if not os.path.isdir(data):
        pytest.skip("shared roadscene_dev data absent")
    out = tmp_path / "acc.json"
    run = _cli("accuracy", "--data", data, "--models", "minima_loftr,minima_splg", "--limit", "1", "--resolution", "320",
               "--polarity", "normal", "--random-weights", tmp_path / "w", "--quiet", "--json", out,
               "--matcher-option", "download=false")
    assert run.returncode == 0, run.stderr
    text = out.read_text()
    assert "minima_loftr (kornia LoFTR" in text and "minima_splg (backend=" in text


@pytest.mark.slow
def test_benchmark_models_rows(tmp_path):
    """`benchmark --models` times whole matchers round-robin: one row per model[:backend]."""
    from matchanything_ros.matching.model_benchmark import parse_cases, run_model_benchmark

    assert parse_cases("xfeat, minima_splg:onnxruntime") == [("xfeat", None), ("minima_splg", "onnxruntime")]
    with pytest.raises(ValueError, match="unknown model"):
        parse_cases("minima_xoftr")  # published by MINIMA, not run here
    rows = run_model_benchmark([("minima_loftr", None), ("minima_splg", "torch")], [(160, 128)],
                               random_weights=True, warmup=1, runs=1, work_dir=tmp_path, progress=lambda _: None)
    assert [r.backend for r in rows] == ["minima_loftr", "minima_splg:torch"]
    assert all(r.median_ms and r.matches for r in rows), [r.note for r in rows]
