"""ONNX Runtime backend: runs the static-shape export on CPU (or CUDA when that provider is
installed)."""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from .base import INPUT_NAMES, OUTPUT_NAMES, Engine, EngineError

log = logging.getLogger(__name__)


def default_threads() -> int:
    """Threads for intra-op parallelism: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OnnxRuntimeEngine(Engine):
    """Run an ONNX export from :func:`matchanything_ros.engines.export.export_onnx`.

    ``intra_op_threads``: threads per operator (default: all cores this process may use).
    ``allow_spinning``: let ONNX Runtime's idle pool threads spin instead of sleeping (ORT's own
    default). Off by default, like OpenMP's PASSIVE wait for torch: on a shared robot computer
    spinning threads burn the cores other nodes need (measured: docs/BENCHMARKS.md, "ONNX
    Runtime thread spinning"); ``MATCHANYTHING_ORT_SPINNING=1`` turns it on.
    ``optimized_model_path``: where ONNX Runtime saves the graph after its optimisations
    (useful to inspect what it fused). ``profile_prefix``: turn on ORT's JSON profiler.
    """

    name = "onnxruntime"

    def __init__(
        self,
        onnx_path: str | Path,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        intra_op_threads: int | None = None,
        inter_op_threads: int = 1,
        allow_spinning: bool | None = None,
        optimized_model_path: str | Path | None = None,
        profile_prefix: str | None = None,
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise EngineError(
                "onnxruntime is not installed; `pip install onnxruntime` (or onnxruntime-gpu)"
            ) from None
        if precision != "fp32":
            raise EngineError(
                "the onnxruntime backend runs the fp32 export only; use the torch or tensorrt "
                "backend for fp16"
            )
        path = Path(onnx_path)
        if not path.is_file():
            raise EngineError(f"ONNX file not found: {path} (create it with `matchanything-ros export`)")

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.intra_op_threads = int(intra_op_threads or default_threads())
        options.intra_op_num_threads = self.intra_op_threads
        options.inter_op_num_threads = int(inter_op_threads)
        if allow_spinning is None:
            allow_spinning = os.environ.get("MATCHANYTHING_ORT_SPINNING", "0").strip() == "1"
        self.allow_spinning = bool(allow_spinning)
        for key in ("session.intra_op.allow_spinning", "session.inter_op.allow_spinning"):
            options.add_session_config_entry(key, "1" if self.allow_spinning else "0")
        if optimized_model_path:
            options.optimized_model_filepath = str(optimized_model_path)
        if profile_prefix:
            options.enable_profiling = True
            options.profile_file_prefix = str(profile_prefix)

        available = ort.get_available_providers()
        if device == "cpu":
            providers = ["CPUExecutionProvider"]
        elif device.startswith("cuda"):
            if "CUDAExecutionProvider" not in available:
                raise EngineError(
                    f"device {device!r}: this onnxruntime has no CUDAExecutionProvider "
                    f"(available: {', '.join(available)}); install onnxruntime-gpu or use device='cpu'"
                )
            index = int(device.split(":")[1]) if ":" in device else 0
            providers = [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
        else:
            raise EngineError(f"device {device!r} is not supported by onnxruntime (use cpu or cuda)")
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        except Exception as exc:  # ORT raises its own exception types (Fail, InvalidGraph, ...)
            raise EngineError(f"ONNX Runtime cannot load {path}: {exc}") from None

        inputs = {i.name: i for i in self.session.get_inputs()}
        missing = [n for n in INPUT_NAMES if n not in inputs]
        if missing:
            raise EngineError(f"{path} lacks inputs {missing}; re-export it with `matchanything-ros export`")
        shape = inputs["image0"].shape
        if len(shape) != 4 or not all(isinstance(d, int) for d in shape[2:]):
            raise EngineError(f"{path}: image0 shape {shape} is not static (1, 1, H, W)")
        super().__init__(device=device, precision=precision, input_size=(int(shape[2]), int(shape[3])))
        self.onnx_path = path
        outputs = {o.name: o for o in self.session.get_outputs()}
        if any(n not in outputs for n in OUTPUT_NAMES):
            raise EngineError(
                f"{path} outputs {sorted(outputs)} are not {list(OUTPUT_NAMES)}; re-export it"
            )
        self.output_names = list(OUTPUT_NAMES)
        self.top_k = outputs["scores"].shape[0]

    def _run(self, image0: np.ndarray, image1: np.ndarray, threshold: float):
        feeds = {
            "image0": image0,
            "image1": image1,
            "threshold": np.asarray(threshold, dtype=np.float32),
        }
        try:
            return tuple(self.session.run(self.output_names, feeds))
        except Exception as exc:
            raise EngineError(f"ONNX Runtime inference failed: {exc}") from None

    def end_profiling(self) -> str | None:
        """Stop the profiler (if on) and return the JSON trace file it wrote."""
        return self.session.end_profiling() or None

    def describe(self) -> dict:
        info = super().describe()
        info.update(
            onnx=str(self.onnx_path),
            top_k=self.top_k,
            intra_op_threads=self.intra_op_threads,
            allow_spinning=self.allow_spinning,
            providers=self.session.get_providers(),
        )
        return info

    def close(self) -> None:
        self.session = None
