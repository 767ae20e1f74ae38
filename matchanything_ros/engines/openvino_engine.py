"""OpenVINO backend: runs the same static-shape ONNX export as ONNX Runtime, on the CPU.

OpenVINO reads the ONNX file directly (no conversion step to keep in sync) and compiles it for
the CPU it runs on. Precision is pinned to fp32 (``INFERENCE_PRECISION_HINT`` f32): OpenVINO's
CPU plugin otherwise runs bf16 wherever the CPU has native bf16 (AMX / AVX512-BF16), which
would make the same configuration give other matches on other machines. bf16 is 2.7-2.9x faster
than fp32 on such a CPU but reproduced a fifth of the authors' matches within 1 px on the
reference pack (docs/BENCHMARKS.md, ``scripts/openvino_bf16.py``), so it is not offered.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .base import INPUT_NAMES, OUTPUT_NAMES, Engine, EngineError
from .onnx_engine import default_threads


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise EngineError("openvino is not installed; `pip install -e '.[openvino]'`") from None
    return openvino


class OpenVINOEngine(Engine):
    """Run an ONNX export from :func:`matchanything_ros.engines.export.export_onnx` with OpenVINO.

    ``threads``: inference threads (default: all cores this process may use). ``cache_dir``:
    OpenVINO's compiled-model cache (start-up after the first compile reads it instead of
    compiling again); None: no cache.
    """

    name = "openvino"

    def __init__(
        self,
        onnx_path: str | Path,
        *,
        device: str = "cpu",
        precision: str = "fp32",
        threads: int | None = None,
        cache_dir: str | Path | None = None,
    ):
        ov = import_openvino()
        if device != "cpu":
            raise EngineError(f"device {device!r}: the openvino backend runs on the CPU only (device 'cpu')")
        if precision != "fp32":
            raise EngineError(f"the openvino backend runs fp32 only, not {precision!r} (docs/BENCHMARKS.md)")
        path = Path(onnx_path)
        if not path.is_file():
            raise EngineError(f"ONNX file not found: {path} (create it with `matchanything-ros export`)")
        core = ov.Core()
        self.threads = int(threads or default_threads())
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": self.threads,
            "PERFORMANCE_HINT": "LATENCY",  # one request at a time: all threads on it
        }
        if cache_dir:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        try:
            model = core.read_model(str(path))
        except Exception as exc:  # OpenVINO raises RuntimeError with its own text
            raise EngineError(f"OpenVINO cannot read {path}: {' '.join(str(exc).split())[:300]}") from None
        inputs = {port.get_any_name(): port for port in model.inputs}
        missing = [n for n in INPUT_NAMES if n not in inputs]
        if missing:
            raise EngineError(f"{path} lacks inputs {missing}; re-export it with `matchanything-ros export`")
        shape = inputs["image0"].get_partial_shape()
        if shape.is_dynamic or len(shape) != 4:
            raise EngineError(f"{path}: image0 shape {shape} is not static (1, 1, H, W)")
        outputs = {port.get_any_name() for port in model.outputs}
        if any(n not in outputs for n in OUTPUT_NAMES):
            raise EngineError(f"{path} outputs {sorted(outputs)} are not {list(OUTPUT_NAMES)}; re-export it")
        try:
            self.compiled = core.compile_model(model, "CPU", config)
        except Exception as exc:
            raise EngineError(f"OpenVINO cannot compile {path}: {' '.join(str(exc).split())[:300]}") from None
        dims = [d.get_length() for d in shape]
        super().__init__(device=device, precision=precision, input_size=(int(dims[2]), int(dims[3])))
        self.onnx_path = path
        self.request = self.compiled.create_infer_request()
        self._outputs = [self.compiled.output(n) for n in OUTPUT_NAMES]
        self.top_k = int(self.compiled.output("scores").get_partial_shape()[0].get_length())
        self.version = ov.__version__

    def _run(self, image0: np.ndarray, image1: np.ndarray, threshold: float):
        feeds = {"image0": image0, "image1": image1, "threshold": np.asarray(threshold, dtype=np.float32)}
        try:
            result = self.request.infer(feeds)
        except Exception as exc:
            raise EngineError(f"OpenVINO inference failed: {' '.join(str(exc).split())[:300]}") from None
        # copies: the request reuses its output buffers on the next call
        return tuple(np.array(result[port]) for port in self._outputs)

    def describe(self) -> dict:
        info = super().describe()
        info.update(onnx=str(self.onnx_path), top_k=self.top_k, threads=self.threads, openvino=self.version,
                    inference_precision=self.inference_precision())
        return info

    def inference_precision(self) -> str:
        """The precision OpenVINO compiled for (f32 unless OpenVINO ignored the hint)."""
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)

    def close(self) -> None:
        self.request = None
        self.compiled = None
