"""Engine interface, the PyTorch backend, the TensorRT compatibility checker on hand-built ONNX
graphs, and the TensorRT engine-cache naming (all CPU, no TensorRT needed)."""
import numpy as np
import pytest

from matchanything_ros.engines import BACKENDS, EngineError, create_engine
from matchanything_ros.engines.random_weights import random_deploy_model

TOP_K = 128


@pytest.fixture(scope="module")
def model():
    return random_deploy_model(top_k=TOP_K, seed=1)


@pytest.fixture(scope="module")
def pair():
    """Textured float32 (1, 1, 128, 160) pair, the second view shifted by (5, 7) px."""
    from matchanything_ros.engines.benchmark import benchmark_pair

    return benchmark_pair(128, 160, seed=3)


def test_torch_engine_runs_fixed_k(model, pair):
    engine = create_engine("torch", model=model)
    assert engine.name == "torch" and engine.describe()["precision"] == "fp32"
    kpts0, kpts1, scores, candidates = engine.run(*pair, 0.0)
    assert kpts0.shape == kpts1.shape == (TOP_K, 2) and scores.shape == (TOP_K,)
    assert kpts0.dtype == kpts1.dtype == scores.dtype == np.float32
    valid = scores > 0
    assert valid.sum() >= 5
    assert np.all(np.diff(scores) <= 0), "best first"
    assert kpts0[valid].min() >= 0 and kpts0[valid, 0].max() < 160 and kpts0[valid, 1].max() < 128
    # a higher threshold keeps a subset
    _, _, strict, _ = engine.run(*pair, float(np.median(scores[valid])))
    assert 0 < (strict > 0).sum() < valid.sum()


def test_torch_fp16_keeps_the_coarse_matches(model, pair):
    """fp16 (half weights) with the coarse head in fp32 selects the same coarse pairs."""
    fp32 = create_engine("torch", model=model).run(*pair, 0.0)
    for mode in ("half", "autocast"):
        fp16 = create_engine("torch", model=model, precision="fp16", fp16_mode=mode).run(*pair, 0.0)
        v32, v16 = fp32[2] > 0, fp16[2] > 0
        assert abs(int(v32.sum()) - int(v16.sum())) <= 1
        # compare as sets of coarse cells (fp16 may swap the order of near-equal scores)
        cells32 = {tuple(np.round(k / 8).astype(int)) for k in fp32[0][v32]}
        cells16 = {tuple(np.round(k / 8).astype(int)) for k in fp16[0][v16]}
        assert len(cells32 & cells16) >= 0.9 * len(cells32)
    # the fixture's model was not cast: fp32 results are unchanged
    again = create_engine("torch", model=model).run(*pair, 0.0)
    np.testing.assert_array_equal(again[2], fp32[2])


def test_engine_input_validation(model, pair):
    engine = create_engine("torch", model=model)
    image0, image1 = pair
    with pytest.raises(ValueError, match=r"\(1, 1, H, W\)"):
        engine.run(image0[0], image1, 0.1)
    with pytest.raises(ValueError, match="multiple of 32"):
        engine.run(image0[..., :100], image1[..., :100], 0.1)
    with pytest.raises(ValueError, match="differ"):
        engine.run(image0, image1[..., :128], 0.1)
    with pytest.raises(ValueError, match="finite"):
        engine.run(image0, image1, float("nan"))


def test_create_engine_errors(model, tmp_path):
    assert BACKENDS == ("torch", "onnxruntime", "openvino", "tensorrt")
    with pytest.raises(EngineError, match="unknown backend"):
        create_engine("tvm", model=model)
    with pytest.raises(EngineError, match="precision"):
        create_engine("torch", model=model, precision="bf16")
    with pytest.raises(EngineError, match="needs model"):
        create_engine("torch")
    with pytest.raises(EngineError, match="needs onnx_path"):
        create_engine("onnxruntime")
    with pytest.raises(EngineError, match="precision"):
        create_engine("torch", model=model, precision="int8")
    with pytest.raises(EngineError, match="device"):
        create_engine("torch", model=model, device="tpu")
    with pytest.raises(EngineError, match="fp16_mode"):
        create_engine("torch", model=model, precision="fp16", fp16_mode="bf16")
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(EngineError, match="CUDA"):
            create_engine("torch", model=model, device="cuda")
        with pytest.raises(EngineError, match="CUDA device"):
            create_engine("torch", model=model, cuda_graphs=True)


# ---- TensorRT compatibility checker on hand-built graphs -------------------------------------


def _save(tmp_path, nodes, inputs, outputs, initializers=(), opset=18, name="g.onnx"):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path = tmp_path / name
    onnx.save_model(model, str(path))
    return path


def _topk_graph(tmp_path, k, n=8192, dims=None, **kw):
    from onnx import TensorProto, helper, numpy_helper

    dims = dims or [n]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)
    v = helper.make_tensor_value_info("v", TensorProto.FLOAT, [k])
    i = helper.make_tensor_value_info("i", TensorProto.INT64, [k])
    kk = numpy_helper.from_array(np.array([k], np.int64), "k")
    node = helper.make_node("TopK", ["x", "k"], ["v", "i"], name="topk")
    return _save(tmp_path, [node], [x], [v, i], [kk], **kw)


def test_checker_accepts_a_supported_graph(tmp_path):
    from matchanything_ros.engines.export import check_tensorrt_compatible

    assert check_tensorrt_compatible(_topk_graph(tmp_path, 3840)) == []


def test_checker_reports_each_problem(tmp_path):
    from onnx import TensorProto, helper

    from matchanything_ros.engines.export import check_tensorrt_compatible

    problems = check_tensorrt_compatible(_topk_graph(tmp_path, 3841, name="k.onnx"))
    assert len(problems) == 1 and "3840" in problems[0]

    problems = check_tensorrt_compatible(_topk_graph(tmp_path, 10, dims=["n"], name="dyn.onnx"))
    assert any("dynamic shape" in p for p in problems)

    problems = check_tensorrt_compatible(_topk_graph(tmp_path, 10, opset=21, name="op.onnx"))
    assert any("opset 21" in p for p in problems)

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    idx = helper.make_tensor_value_info("idx", TensorProto.INT64, [1, 4])
    u = helper.make_tensor_value_info("u", TensorProto.FLOAT, [4])
    nodes = [
        helper.make_node("NonZero", ["x"], ["idx"], name="nz"),
        helper.make_node("Unique", ["x"], ["u"], name="uniq"),
    ]
    problems = check_tensorrt_compatible(_save(tmp_path, nodes, [x], [idx, u], name="bad.onnx"))
    assert any("NonZero" in p and "data-dependent" in p for p in problems)
    assert any("Unique" in p and "not supported" in p for p in problems)

    custom = [helper.make_node("Fancy", ["x"], ["u"], domain="com.example", name="f")]
    problems = check_tensorrt_compatible(_save(tmp_path, custom, [x], [u], name="custom.onnx"))
    assert any("custom domain" in p for p in problems)


def test_checker_errors_on_unreadable_files(tmp_path):
    from matchanything_ros.engines.export import check_tensorrt_compatible

    with pytest.raises(EngineError, match="not found"):
        check_tensorrt_compatible(tmp_path / "nope.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(EngineError, match="not a readable ONNX"):
        check_tensorrt_compatible(bad)


def test_engine_cache_key_changes_with_every_input(tmp_path):
    """The engine file name/sidecar key covers TensorRT version, GPU, size, K, precision."""
    from matchanything_ros.engines.export import META_HEIGHT, META_TOP_K, META_WIDTH
    from matchanything_ros.engines.tensorrt_engine import engine_file_name, engine_key

    import onnx

    path = _topk_graph(tmp_path, 64)
    model = onnx.load(str(path))
    for key, value in ((META_HEIGHT, "480"), (META_WIDTH, "640"), (META_TOP_K, "64")):
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    gpu = {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
    base = engine_key(path, "fp16", "10.3.0", gpu)
    assert (base["height"], base["width"], base["top_k"]) == (480, 640, 64)
    name = engine_file_name(base)
    assert name.startswith("eloftr_480x640_k64_fp16_trt10.3.0_sm90_") and name.endswith(".engine")
    variants = [
        engine_key(path, "fp32", "10.3.0", gpu),
        engine_key(path, "fp16", "10.4.0", gpu),
        engine_key(path, "fp16", "10.3.0", {"gpu": "Orin", "compute_capability": "8.7"}),
    ]
    assert len({engine_file_name(k) for k in [base, *variants]}) == 4
