"""What can run on this machine, asked before any work: by ``benchmark`` before its minutes-long
exports, and by the node before it accepts a run-time change of ``backend`` / ``device``."""
from __future__ import annotations


def backend_problems(backends: tuple[str, ...], device: str) -> list[str]:
    """Why each requested backend cannot run on this machine (empty: all can). Cheap: imports
    and device queries only, no export and no model."""
    import importlib.util

    import torch

    problems = []
    cuda = device.startswith("cuda")
    if cuda and not torch.cuda.is_available():
        problems.append(f"device {device}: torch sees no CUDA GPU")
    missing_export = [m for m in ("onnx", "onnxscript") if importlib.util.find_spec(m) is None]
    for backend in backends:
        if backend in ("onnxruntime", "openvino", "tensorrt") and missing_export:
            problems.append(f"{backend}: the ONNX export needs {', '.join(missing_export)} (pip install -e '.[onnx]')")
        if backend == "onnxruntime":
            try:
                import onnxruntime
            except ImportError:
                problems.append("onnxruntime: not installed (pip install -e '.[onnx]')")
                continue
            if cuda and "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
                problems.append("onnxruntime: no CUDAExecutionProvider (pip install onnxruntime-gpu)")
        elif backend == "openvino":
            from .base import EngineError
            from .openvino_engine import import_openvino

            try:
                import_openvino()
            except EngineError as exc:
                problems.append(f"openvino: {exc}")
                continue
            if cuda:
                problems.append("openvino: runs on the CPU only (device cpu)")
        elif backend == "tensorrt":
            from .base import EngineError
            from .tensorrt_engine import import_tensorrt

            try:
                import_tensorrt()
            except EngineError as exc:
                problems.append(f"tensorrt: {exc}")
                continue
            if not torch.cuda.is_available():
                problems.append("tensorrt: needs a CUDA GPU, torch sees none")
    return problems
