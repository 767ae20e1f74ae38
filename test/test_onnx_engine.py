"""ONNX export + ONNX Runtime parity with PyTorch on the real deploy network (random weights,
small sizes), and the TensorRT-compatibility check of that export (always runs, no GPU needed)."""
import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

pytestmark = pytest.mark.slow  # exports / runs the reference network: tens of seconds on 2 cores

from matchanything_ros.engines import EngineError, create_engine  # noqa: E402
from matchanything_ros.engines.export import (  # noqa: E402
    FP32_TAG,
    META_HEIGHT,
    META_TOP_K,
    META_WIDTH,
    TENSORRT_MAX_TOPK,
    check_tensorrt_compatible,
    export_onnx,
    read_metadata,
)
from matchanything_ros.engines.benchmark import benchmark_pair  # noqa: E402
from matchanything_ros.engines.random_weights import random_deploy_model  # noqa: E402

TOP_K = 256


@pytest.fixture(scope="module")
def model():
    return random_deploy_model(top_k=TOP_K, seed=0)


@pytest.fixture(scope="module", params=[(128, 160), (160, 224)], ids=lambda s: f"{s[0]}x{s[1]}")
def exported(request, model, tmp_path_factory):
    height, width = request.param
    path = export_onnx(model, tmp_path_factory.mktemp("onnx") / f"eloftr_{height}x{width}.onnx", height, width)
    return path, height, width


def test_onnxruntime_matches_pytorch(model, exported):
    path, height, width = exported
    ort_engine = create_engine("onnxruntime", onnx_path=path)
    torch_engine = create_engine("torch", model=model)
    image0, image1 = benchmark_pair(height, width)  # textured, second view shifted by (5, 7) px
    for threshold in (0.0, 1e-3):
        k0_o, k1_o, s_o, c_o = ort_engine.run(image0, image1, threshold)
        k0_t, k1_t, s_t, c_t = torch_engine.run(image0, image1, threshold)
        assert s_o.shape == s_t.shape == (TOP_K,) and k0_o.shape == k1_o.shape == (TOP_K, 2)
        assert np.abs(s_o - s_t).max() <= 1e-4
        valid = s_t > 0
        # the same number of matches (slots filled in score order)
        np.testing.assert_array_equal(s_o > 0, valid)
        if threshold == 0.0:
            assert valid.sum() >= 10, "random weights should give tens of matches"
        assert c_o == c_t
        # keypoints: every match within 0.05 px but for fine-stage-1 near-ties, which these random
        # weights (flat window softmax, hundreds of weak pairs kept at threshold 0) make common;
        # at most 1 % of the matches may pick a neighbouring window pixel
        err = _slot_errors(k0_o, k1_o, s_o, k0_t, k1_t, s_t)[valid]
        assert (err > 0.05).mean() <= 0.01 and err.max() <= 8.0, (err > 0.05).sum()


def _slot_errors(k0_o, k1_o, s_o, k0_t, k1_t, s_t, score_tol=1e-4) -> np.ndarray:
    """Per ONNX Runtime slot, the keypoint distance (px) to its PyTorch twin.

    The engines guarantee the same matches with scores within ``score_tol``, sorted by score;
    the order of matches whose scores differ by float rounding (1e-8 apart here: these random
    weights give hundreds of near-equal scores) is not defined, so a slot's twin is the nearest
    unused PyTorch match among those with a score within ``score_tol``, not the same slot."""
    used = np.zeros(len(s_t), bool)
    err = np.full(len(s_o), np.inf)
    for i in range(len(s_o)):
        cand = np.flatnonzero(~used & (np.abs(s_t - s_o[i]) <= score_tol))
        if len(cand):
            d = np.maximum(np.abs(k0_t[cand] - k0_o[i]).max(-1), np.abs(k1_t[cand] - k1_o[i]).max(-1))
            j = cand[np.argmin(d)]
            used[j], err[i] = True, d.min()
    return err


def test_export_metadata_and_fp32_tags(exported):
    import onnx

    path, height, width = exported
    meta = read_metadata(path)
    assert (meta[META_HEIGHT], meta[META_WIDTH], meta[META_TOP_K]) == (str(height), str(width), str(TOP_K))
    graph = onnx.load_model(str(path), load_external_data=False).graph
    tagged = [n for n in graph.node if n.name.startswith(FP32_TAG)]
    # the coarse dual softmax at least: the similarity MatMul, the row Softmax, the written-out
    # column softmax (ReduceMax, Sub, Exp, ReduceSum, Div) and the Mul joining them
    ops = {n.op_type for n in tagged}
    assert {"Softmax", "ReduceMax", "Sub", "Exp", "ReduceSum", "Div", "Mul"} <= ops
    assert ops & {"MatMul", "Einsum"}
    # ... and nothing of the backbone, transformer or fine stage's convolutions
    assert not any(n.op_type == "Conv" for n in tagged)


def test_export_is_tensorrt_compatible(exported):
    """Only TensorRT 10 ONNX-parser operators, no NonZero, TopK K <= 3840, static shapes."""
    import onnx

    path, _, _ = exported
    assert check_tensorrt_compatible(path) == []
    graph = onnx.load_model(str(path), load_external_data=False).graph
    ops = {n.op_type for n in graph.node}
    assert "NonZero" not in ops
    for value in list(graph.input) + list(graph.output):
        assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim)
    topk = [n for n in graph.node if n.op_type == "TopK"]
    assert topk and TOP_K <= TENSORRT_MAX_TOPK


def test_onnxruntime_rejects_wrong_size_and_fp16(exported, tmp_path):
    path, height, width = exported
    engine = create_engine("onnxruntime", onnx_path=path, intra_op_threads=1)
    assert engine.input_size == (height, width) and engine.top_k == TOP_K
    image = np.zeros((1, 1, height + 32, width), np.float32)
    with pytest.raises(ValueError, match="built for"):
        engine.run(image, image, 0.1)
    with pytest.raises(EngineError, match="fp32"):
        create_engine("onnxruntime", onnx_path=path, precision="fp16")
    with pytest.raises(EngineError, match="not found"):
        create_engine("onnxruntime", onnx_path=tmp_path / "missing.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not an onnx file")
    with pytest.raises(EngineError, match="cannot load"):
        create_engine("onnxruntime", onnx_path=broken)


def test_fp32_tags_follow_the_dual_softmax_structure():
    """Without any scope: the similarity chain and both softmaxes (one written out) are tagged,
    a lone softmax elsewhere (attention) is not."""
    from onnx import TensorProto, helper

    from matchanything_ros.engines.export import tag_fp32_nodes

    axis0 = helper.make_tensor("axis0", TensorProto.INT64, [1], [0])
    nodes = [
        helper.make_node("MatMul", ["f0", "f1t"], ["prod"], name="sim"),
        helper.make_node("Div", ["prod", "temp"], ["s"], name="scale"),
        helper.make_node("Softmax", ["s"], ["rows"], axis=1, name="row_softmax"),
        helper.make_node("Constant", [], ["ax"], value=axis0, name="axis"),
        helper.make_node("ReduceMax", ["s", "ax"], ["cmax"], name="col_max"),
        helper.make_node("Sub", ["s", "cmax"], ["shifted"], name="shift"),
        helper.make_node("Exp", ["shifted"], ["e"], name="exp"),
        helper.make_node("ReduceSum", ["e", "ax"], ["esum"], name="col_sum"),
        helper.make_node("Div", ["e", "esum"], ["cols"], name="normalise"),
        helper.make_node("Mul", ["cols", "rows"], ["conf"], name="join"),
        helper.make_node("Softmax", ["q"], ["attn"], axis=-1, name="attention"),
    ]
    graph = helper.make_graph(nodes, "g", [], [])
    proto = helper.make_model(graph)
    assert tag_fp32_nodes(proto, scopes=()) == 9
    tagged = {n.name.removeprefix(FP32_TAG) for n in proto.graph.node if n.name.startswith(FP32_TAG)}
    assert tagged == {"sim", "scale", "row_softmax", "col_max", "shift", "exp", "col_sum", "normalise", "join"}


def test_tensorrt_check_flags_an_integer_clip(tmp_path):
    """torch.clamp on indices exports as an int64 Clip, which TensorRT cannot import."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Clip", ["idx", "lo", "hi"], ["out"], name="clamp_indices")],
        "g",
        [helper.make_tensor_value_info("idx", TensorProto.INT64, [4])],
        [helper.make_tensor_value_info("out", TensorProto.INT64, [4])],
        [helper.make_tensor("lo", TensorProto.INT64, [], [0]), helper.make_tensor("hi", TensorProto.INT64, [], [9])],
    )
    path = tmp_path / "clip.onnx"
    onnx.save_model(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    problems = check_tensorrt_compatible(path)
    assert any("clamp_indices" in p and "float tensors only" in p for p in problems), problems


def test_onnxruntime_idle_threads_sleep_unless_asked(exported, monkeypatch):
    """The session's pool threads do not spin by default (a shared robot computer), the option
    and $MATCHANYTHING_ORT_SPINNING turn spinning on, and the results do not depend on it."""
    path, height, width = exported
    image0, image1 = benchmark_pair(height, width)
    keys = ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning")
    monkeypatch.delenv("MATCHANYTHING_ORT_SPINNING", raising=False)
    runs = {}
    for label, kwargs, env in (("default", {}, None), ("option", {"allow_spinning": True}, None),
                               ("env", {}, "1")):
        if env is not None:
            monkeypatch.setenv("MATCHANYTHING_ORT_SPINNING", env)
        engine = create_engine("onnxruntime", onnx_path=path, **kwargs)
        options = engine.session.get_session_options()
        expect = "0" if label == "default" else "1"
        assert [options.get_session_config_entry(k) for k in keys] == [expect, expect], label
        assert engine.describe()["allow_spinning"] is (label != "default")
        runs[label] = engine.run(image0, image1, 1e-3)
    for label in ("option", "env"):
        for a, b in zip(runs["default"], runs[label]):
            np.testing.assert_array_equal(a, b)


def test_mixed_fp16_graph_for_strongly_typed_tensorrt(exported, tmp_path):
    """The graph TensorRT 10/11 build fp16 engines from, checked on the CPU: every compute
    operator in fp16 except the fp32-tagged coarse head, inputs / outputs in their fp32 types,
    only TensorRT-supported operators, and ONNX Runtime runs it with the fp32 graph's scores
    within fp16 rounding."""
    import onnxruntime as ort

    from matchanything_ros.engines.export import META_PRECISION, check_mixed_precision, mixed_fp16

    path, height, width = exported
    mixed = mixed_fp16(path, tmp_path / "mixed.onnx")
    assert read_metadata(mixed)[META_PRECISION] == "fp16-mixed"
    assert check_mixed_precision(mixed) == []
    assert check_mixed_precision(path) != []  # the fp32 export is not mixed: the check sees it
    assert check_tensorrt_compatible(mixed) == []
    image0, image1 = benchmark_pair(height, width, 0)
    feeds = {"image0": image0.astype(np.float32), "image1": image1.astype(np.float32),
             "threshold": np.array(0.0, np.float32)}
    got = ort.InferenceSession(str(mixed), providers=["CPUExecutionProvider"]).run(None, feeds)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, feeds)
    assert [g.dtype for g in got] == [w.dtype for w in want]
    top = 50
    np.testing.assert_allclose(np.sort(got[2])[::-1][:top], np.sort(want[2])[::-1][:top], atol=5e-3)


def test_tensorrt_typing_strong_by_default_weak_only_where_it_exists(monkeypatch):
    """fp16 engines are strongly typed; weak typing only on request and only where the
    TensorRT module still has its flags (10.x); 11.x without them refuses the request."""
    from types import SimpleNamespace as NS

    from matchanything_ros.engines.tensorrt_engine import TYPING_ENV, network_typing

    trt10 = NS(__version__="10.7.0", BuilderFlag=NS(FP16=1, OBEY_PRECISION_CONSTRAINTS=2))
    trt11 = NS(__version__="11.4.0", BuilderFlag=NS(TF32=3))
    monkeypatch.delenv(TYPING_ENV, raising=False)
    assert network_typing(trt10) == network_typing(trt11) == "strong"
    monkeypatch.setenv(TYPING_ENV, "weak")
    assert network_typing(trt10) == "weak"
    with pytest.raises(EngineError, match="no weak typing"):
        network_typing(trt11)
    monkeypatch.setenv(TYPING_ENV, "fast")
    with pytest.raises(EngineError, match="strong or weak"):
        network_typing(trt10)
