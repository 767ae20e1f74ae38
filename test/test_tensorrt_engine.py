"""TensorRT backend. Needs TensorRT 10 and a CUDA GPU; otherwise only the "clear error when
TensorRT is missing" behaviour is tested and the rest is skipped with the reason."""
import importlib.util
import json
import os

import numpy as np
import pytest

from matchanything_ros.engines import EngineError, create_engine

TOP_K = 128
HEIGHT, WIDTH = 128, 160


def _tensorrt_problem() -> str | None:
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        return f"TensorRT not installed ({exc})"
    import torch

    if not torch.cuda.is_available():
        return "TensorRT needs a CUDA GPU; torch.cuda.is_available() is False"
    return None


PROBLEM = _tensorrt_problem()
needs_tensorrt = pytest.mark.skipif(PROBLEM is not None, reason=PROBLEM or "")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed")
def test_missing_tensorrt_is_a_clear_error(tmp_path):
    onnx_path = tmp_path / "model.onnx"
    onnx_path.write_bytes(b"")
    with pytest.raises(EngineError, match="TensorRT is not available.*onnxruntime or torch backend"):
        create_engine("tensorrt", onnx_path=onnx_path)


@pytest.fixture(scope="module")
def model():
    from matchanything_ros.engines.random_weights import random_deploy_model

    return random_deploy_model(top_k=TOP_K, seed=0)


@pytest.fixture(scope="module")
def onnx_path(model, tmp_path_factory):
    from matchanything_ros.engines.export import export_onnx

    return export_onnx(model, tmp_path_factory.mktemp("trt") / "eloftr.onnx", HEIGHT, WIDTH)


@pytest.fixture(scope="module")
def pair():
    from matchanything_ros.engines.benchmark import benchmark_pair

    return benchmark_pair(HEIGHT, WIDTH)


@needs_tensorrt
def test_tensorrt_fp32_matches_pytorch(model, onnx_path, pair, tmp_path):
    engine = create_engine("tensorrt", onnx_path=onnx_path, device="cuda", precision="fp32", cache_dir=tmp_path)
    ref = create_engine("torch", model=model, device="cuda").run(*pair, 0.0)
    out = engine.run(*pair, 0.0)
    assert np.abs(out[2] - ref[2]).max() <= 1e-3
    valid = ref[2] > 0
    np.testing.assert_array_equal(out[2] > 0, valid)
    assert np.abs(out[0][valid] - ref[0][valid]).max() <= 0.1


@needs_tensorrt
def test_tensorrt_fp16_keeps_coarse_matches(model, onnx_path, pair, tmp_path):
    engine = create_engine("tensorrt", onnx_path=onnx_path, device="cuda", precision="fp16", cache_dir=tmp_path)
    ref = create_engine("torch", model=model, device="cuda").run(*pair, 0.0)
    out = engine.run(*pair, 0.0)
    cells = lambda k, s: {tuple(np.round(p / 8).astype(int)) for p in k[s > 0]}  # noqa: E731
    assert len(cells(out[0], out[2]) & cells(ref[0], ref[2])) >= 0.9 * (ref[2] > 0).sum()


@needs_tensorrt
def test_engine_cache_reuse_stale_and_corrupt(onnx_path, pair, tmp_path):
    first = create_engine("tensorrt", onnx_path=onnx_path, precision="fp16", cache_dir=tmp_path)
    path = first.engine_path
    stamp = os.stat(path).st_mtime_ns
    expected = first.run(*pair, 0.0)
    # cached: no rebuild
    again = create_engine("tensorrt", onnx_path=onnx_path, precision="fp16", cache_dir=tmp_path)
    assert os.stat(path).st_mtime_ns == stamp
    np.testing.assert_array_equal(again.run(*pair, 0.0)[2], expected[2])
    # stale sidecar (e.g. another TensorRT version): rebuilt
    key = json.loads(path.with_name(path.name + ".json").read_text())
    key["tensorrt"] = "0.0.0"
    path.with_name(path.name + ".json").write_text(json.dumps(key))
    create_engine("tensorrt", onnx_path=onnx_path, precision="fp16", cache_dir=tmp_path)
    assert os.stat(path).st_mtime_ns != stamp
    # corrupt engine with its ONNX known: rebuilt; without it: clear error
    path.write_bytes(b"garbage")
    rebuilt = create_engine("tensorrt", onnx_path=onnx_path, precision="fp16", cache_dir=tmp_path)
    assert rebuilt.run(*pair, 0.0)[0].shape == (TOP_K, 2)
    path.write_bytes(b"garbage")
    with pytest.raises(EngineError, match="corrupt"):
        create_engine("tensorrt", engine_path=path)
