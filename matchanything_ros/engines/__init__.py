"""Inference backends for the ELoFTR deploy network behind one interface.

``create_engine("torch" | "onnxruntime" | "openvino" | "tensorrt", ...)`` returns an :class:`Engine` whose
``run(image0, image1, threshold)`` takes float32 ``(1, 1, H, W)`` arrays and returns
``(kpts0, kpts1, scores)`` numpy arrays. Backends import their libraries only when created.
"""
from __future__ import annotations

from pathlib import Path

from .base import INPUT_NAMES, OUTPUT_NAMES, PRECISIONS, Engine, EngineError

__all__ = ["BACKENDS", "Engine", "EngineError", "INPUT_NAMES", "OUTPUT_NAMES", "PRECISIONS", "create_engine"]

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")


def create_engine(
    backend: str,
    *,
    model=None,
    onnx_path: str | Path | None = None,
    engine_path: str | Path | None = None,
    device: str = "cpu",
    precision: str = "fp32",
    **options,
) -> Engine:
    """Build an inference engine.

    - ``"torch"``: needs ``model`` (an ``ELoFTRDeploy``); options: ``cuda_graphs``.
    - ``"onnxruntime"``: needs ``onnx_path``; options: ``intra_op_threads``,
      ``inter_op_threads``, ``optimized_model_path``, ``profile_prefix``.
    - ``"openvino"``: needs ``onnx_path``; CPU, fp32; options: ``threads``, ``cache_dir``.
    - ``"tensorrt"``: needs ``onnx_path`` (built and cached) and/or ``engine_path``; CUDA only;
      options: ``cache_dir``, ``rebuild``, ``timing_cache``, ``workspace_gb``.

    Raises :class:`EngineError` when the backend or its inputs are missing or unusable.
    """
    if precision not in PRECISIONS:
        raise EngineError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if backend == "torch":
        from .torch_engine import TorchEngine

        if model is None:
            raise EngineError("backend 'torch' needs model= (e.g. load_deploy_model(weights, top_k))")
        return TorchEngine(model, device=device, precision=precision, **options)
    if backend == "onnxruntime":
        from .onnx_engine import OnnxRuntimeEngine

        if onnx_path is None:
            raise EngineError("backend 'onnxruntime' needs onnx_path= (create it with `matchanything-ros export`)")
        return OnnxRuntimeEngine(onnx_path, device=device, precision=precision, **options)
    if backend == "openvino":
        from .openvino_engine import OpenVINOEngine

        if onnx_path is None:
            raise EngineError("backend 'openvino' needs onnx_path= (create it with `matchanything-ros export`)")
        return OpenVINOEngine(onnx_path, device=device, precision=precision, **options)
    if backend == "tensorrt":
        from .tensorrt_engine import TensorRTEngine

        if device == "cpu":
            device = "cuda"  # TensorRT has no CPU mode; the caller's default is cpu
        return TensorRTEngine(onnx_path, engine_path=engine_path, device=device, precision=precision, **options)
    raise EngineError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
