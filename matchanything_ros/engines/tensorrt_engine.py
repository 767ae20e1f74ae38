"""TensorRT backend (10.x on JetPack, 11.x on desktops): build an engine from the ONNX export,
cache it, run it with ``execute_async_v3`` on torch-allocated device buffers.

Engines are specific to the TensorRT version, the GPU (compute capability), the input size, K
and the precision, so a cached engine carries a JSON sidecar with exactly that key (plus a hash
of the ONNX file) and is rebuilt whenever any of it differs. The coarse similarity / dual-softmax
head must stay fp32 (in fp16 the exp() of the scaled similarities overflows). fp16 engines are
built **strongly typed** from a mixed-precision graph (``export.mixed_fp16``: fp16 everywhere but
that head, explicit casts), the only fp16 build TensorRT 11 has (it removed
``BuilderFlag.FP16`` and precision constraints) and the default on 10.x too. On 10.x the old
weak typing (fp32 graph, ``BuilderFlag.FP16``, the head pinned by node name with
``OBEY_PRECISION_CONSTRAINTS``) stays available with ``MATCHANYTHING_TRT_TYPING=weak``.
No GPU has been lent to this project: neither path has run on a GPU yet; the graph they build
from is checked on the CPU (test_onnx_engine.py).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np

from .base import INPUT_NAMES, OUTPUT_NAMES, Engine, EngineError
from .export import FP32_TAG, META_HEIGHT, META_TOP_K, META_WIDTH, read_metadata

log = logging.getLogger(__name__)

ENGINE_FORMAT = 1  # bump when the cache key or the build recipe changes
DEFAULT_WORKSPACE_GB = 4.0


def import_tensorrt():
    """``import tensorrt`` (TensorRT >= 10) or an EngineError saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise EngineError(
            f"TensorRT is not available (import tensorrt: {exc}); install TensorRT 10 "
            "(JetPack, or `pip install tensorrt-cu12` on an x86 CUDA machine) or use the "
            "onnxruntime or torch backend"
        ) from None
    if not hasattr(trt, "Builder"):  # e.g. the lean runtime: can run engines but not build them
        raise EngineError(
            f"this tensorrt package ({getattr(trt, '__version__', '?')}) cannot build engines; "
            "install the full TensorRT 10 (tensorrt-cu12)"
        )
    major = int(str(trt.__version__).split(".")[0])
    if major < 10:
        raise EngineError(f"TensorRT {trt.__version__} found; this backend needs TensorRT 10 or newer")
    return trt


def gpu_signature(device: str = "cuda") -> dict:
    """Name and compute capability of the CUDA device (what a TensorRT engine is tied to)."""
    from .torch_engine import resolve_torch_device
    import torch

    dev = resolve_torch_device(device)
    if dev.type != "cuda":
        raise EngineError("the tensorrt backend needs a CUDA device (device='cuda' or 'cuda:N')")
    index = dev.index if dev.index is not None else torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {"gpu": props.name, "compute_capability": f"{props.major}.{props.minor}", "index": index}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def engine_key(onnx_path: str | Path, precision: str, trt_version: str, gpu: dict) -> dict:
    """Everything a built engine depends on; a cached engine is reused only if this matches."""
    onnx_path = Path(onnx_path)
    meta = read_metadata(onnx_path)
    return {
        "format": ENGINE_FORMAT,
        "tensorrt": str(trt_version),
        "gpu": gpu["gpu"],
        "compute_capability": gpu["compute_capability"],
        "height": int(meta.get(META_HEIGHT, 0)),
        "width": int(meta.get(META_WIDTH, 0)),
        "top_k": int(meta.get(META_TOP_K, 0)),
        "precision": precision,
        "onnx_sha256": _sha256(onnx_path),
    }


def engine_file_name(key: dict) -> str:
    """A readable, unique file name for an engine key."""
    short = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    sm = key["compute_capability"].replace(".", "")
    return (
        f"eloftr_{key['height']}x{key['width']}_k{key['top_k']}_{key['precision']}"
        f"_trt{key['tensorrt']}_sm{sm}_{short}.engine"
    )


def sidecar_path(engine_path: Path) -> Path:
    return Path(str(engine_path) + ".json")


def read_sidecar(engine_path: Path) -> dict | None:
    try:
        return json.loads(sidecar_path(engine_path).read_text())
    except (OSError, ValueError):
        return None


def default_cache_dir() -> Path:
    """``$MATCHANYTHING_ROS_CACHE/engines`` or ``~/.cache/matchanything_ros/engines``."""
    root = os.environ.get("MATCHANYTHING_ROS_CACHE") or Path.home() / ".cache" / "matchanything_ros"
    return Path(root) / "engines"


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def pin_fp32_layers(network, trt, tag: str = FP32_TAG) -> int:
    """Force fp32 on every floating-point layer whose name carries ``tag`` (see export.py).

    Returns the number of layers pinned. If no layer carries the tag (an export from elsewhere),
    every SOFTMAX layer and the matrix multiply feeding it are pinned instead, which covers the
    dual softmax at the cost of also keeping attention softmaxes in fp32.
    """
    float_types = (trt.float32, trt.float16)

    def pin(layer) -> bool:
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if not outputs or any(o.dtype not in float_types for o in outputs):
            return False  # integer/bool layers (indices, shapes) keep their own types
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            layer.set_output_type(j, trt.float32)
        return True

    layers = [network.get_layer(i) for i in range(network.num_layers)]
    pinned = sum(pin(layer) for layer in layers if tag in layer.name)
    if pinned:
        return pinned
    log.warning("no layer is tagged %r; pinning all softmax layers and their inputs to fp32", tag)
    producers = {}
    for layer in layers:
        for j in range(layer.num_outputs):
            producers[layer.get_output(j).name] = layer
    for layer in layers:
        if layer.type == trt.LayerType.SOFTMAX:
            pinned += pin(layer)
            source = producers.get(layer.get_input(0).name)
            if source is not None and source.type == trt.LayerType.MATRIX_MULTIPLY:
                pinned += pin(source)
    return pinned


#: how an fp16 engine is typed: "strong" (the precision lives in the graph: export.mixed_fp16)
#: or "weak" (an fp32 graph with the FP16 builder flag and fp32-pinned layers). TensorRT 11
#: removed weak typing; on 10.x MATCHANYTHING_TRT_TYPING=weak selects the old path.
TYPING_ENV = "MATCHANYTHING_TRT_TYPING"


def network_typing(trt) -> str:
    """"strong" or "weak" for an fp16 build with this TensorRT module (see TYPING_ENV)."""
    has_weak = hasattr(trt.BuilderFlag, "FP16") and hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS")
    wanted = os.environ.get(TYPING_ENV, "strong").strip().lower()
    if wanted not in ("strong", "weak"):
        raise EngineError(f"{TYPING_ENV} must be strong or weak, got {wanted!r}")
    if wanted == "weak" and not has_weak:
        raise EngineError(f"TensorRT {trt.__version__} has no weak typing (BuilderFlag.FP16 was removed in 11); "
                          f"unset {TYPING_ENV}")
    return wanted


def build_engine(
    onnx_path: str | Path,
    engine_path: str | Path,
    *,
    precision: str = "fp16",
    device: str = "cuda",
    timing_cache: str | Path | None = None,
    workspace_gb: float = DEFAULT_WORKSPACE_GB,
) -> Path:
    """Build a TensorRT engine from the ONNX export and write it with its JSON key sidecar.

    ``timing_cache``: file that keeps layer timings between builds (default: next to the
    engine, named per TensorRT version and GPU); a build with a warm cache takes seconds instead
    of minutes. Returns the engine path.
    """
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    engine_path = Path(engine_path)
    if precision not in ("fp32", "fp16"):
        raise EngineError(f"precision {precision!r}: TensorRT engines are built as fp32 or fp16")
    if not onnx_path.is_file():
        raise EngineError(f"ONNX file not found: {onnx_path} (create it with `matchanything-ros export`)")
    gpu = gpu_signature(device)
    key = engine_key(onnx_path, precision, trt.__version__, gpu)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    if timing_cache is None:
        sm = key["compute_capability"].replace(".", "")
        timing_cache = engine_path.parent / f"timing_trt{trt.__version__}_sm{sm}.cache"
    timing_cache = Path(timing_cache)

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strong = precision == "fp16" and network_typing(trt) == "strong"
    source = onnx_path
    if strong:
        # precision in the graph: the fp16 network with the coarse head in fp32 and explicit
        # casts (export.mixed_fp16), built strongly typed: TensorRT 11's only fp16 build, and
        # TensorRT 10's too (the weak-typing flags below remain for 10.x only on request)
        from .export import META_PRECISION, mixed_fp16, read_metadata

        source = onnx_path.with_name(onnx_path.stem + ".fp16mixed.onnx")
        if not source.is_file() or source.stat().st_mtime < onnx_path.stat().st_mtime \
                or read_metadata(source).get(META_PRECISION) != "fp16-mixed":
            mixed_fp16(onnx_path, source)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    else:
        network = builder.create_network(0)  # explicit batch is the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(source)):
        errors = []
        for i in range(parser.num_errors):
            err = parser.get_error(i)
            errors.append(err.desc() if hasattr(err, "desc") else str(err))
        raise EngineError(f"TensorRT cannot parse {onnx_path}: " + "; ".join(errors or ["unknown error"]))

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    # TF32 (on by default) rounds fp32 matmuls to a 10-bit mantissa: logits ~1e2 would move by
    # ~0.1 and change the dual softmax. fp32 layers here are there for accuracy, so keep them exact.
    config.clear_flag(trt.BuilderFlag.TF32)
    if precision == "fp16" and not strong:  # weak typing: TensorRT 10.x only
        config.set_flag(trt.BuilderFlag.FP16)
        # OBEY (not PREFER): fail loudly rather than silently run the coarse head in fp16.
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        pinned = pin_fp32_layers(network, trt)
        log.info("pinned %d layers to fp32 (coarse similarity / dual softmax)", pinned)

    cache_bytes = b""
    if timing_cache.is_file():
        cache_bytes = timing_cache.read_bytes()
    cache = config.create_timing_cache(cache_bytes)
    if cache is None and cache_bytes:
        log.warning("timing cache %s is unreadable; starting an empty one", timing_cache)
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)

    log.info("building TensorRT %s %s engine for %s (this can take minutes)", trt.__version__, precision, onnx_path)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(
            f"TensorRT failed to build an engine from {onnx_path} (see the TensorRT log above); "
            "check the file with `matchanything-ros build-engine --check-only`"
        )
    _atomic_write(engine_path, bytes(serialized))
    _atomic_write(timing_cache, bytes(config.get_timing_cache().serialize()))
    sidecar_path(engine_path).write_text(json.dumps(key, indent=1))
    log.info("wrote %s", engine_path)
    return engine_path


_TORCH_DTYPES = {"float32": "float32", "float16": "float16", "int32": "int32", "int64": "int64", "bool": "bool"}


class TensorRTEngine(Engine):
    """Run a TensorRT engine; builds (and caches) it from ``onnx_path`` when needed.

    Give ``onnx_path`` (engine cached under ``cache_dir``, rebuilt when stale or corrupt), or
    ``engine_path`` alone for a prebuilt engine (checked against its sidecar when present), or
    both (build to / reuse that exact file).
    """

    name = "tensorrt"

    def __init__(
        self,
        onnx_path: str | Path | None = None,
        *,
        engine_path: str | Path | None = None,
        cache_dir: str | Path | None = None,
        device: str = "cuda",
        precision: str = "fp16",
        rebuild: bool = False,
        timing_cache: str | Path | None = None,
        workspace_gb: float = DEFAULT_WORKSPACE_GB,
    ):
        import torch

        trt = import_tensorrt()
        if onnx_path is None and engine_path is None:
            raise EngineError("the tensorrt backend needs onnx_path (to build) or engine_path (prebuilt)")
        gpu = gpu_signature(device)
        self._trt = trt
        self._torch = torch
        self._device = torch.device("cuda", gpu["index"])

        if onnx_path is not None:
            key = engine_key(onnx_path, precision, trt.__version__, gpu)
            if engine_path is None:
                engine_path = Path(cache_dir or default_cache_dir()) / engine_file_name(key)
            engine_path = Path(engine_path)
            stale = read_sidecar(engine_path) != key
            if rebuild or not engine_path.is_file() or stale:
                if engine_path.is_file() and stale:
                    log.info("cached engine %s is stale (TensorRT/GPU/ONNX/settings changed); rebuilding", engine_path)
                build_engine(onnx_path, engine_path, precision=precision, device=device,
                             timing_cache=timing_cache, workspace_gb=workspace_gb)
            try:
                engine = self._deserialize(engine_path)
            except EngineError as exc:
                log.warning("%s; rebuilding it", exc)
                build_engine(onnx_path, engine_path, precision=precision, device=device,
                             timing_cache=timing_cache, workspace_gb=workspace_gb)
                engine = self._deserialize(engine_path)
        else:
            engine_path = Path(engine_path)
            if not engine_path.is_file():
                raise EngineError(f"TensorRT engine not found: {engine_path} (build it with `matchanything-ros build-engine`)")
            built = read_sidecar(engine_path)
            if built is not None:
                mismatch = [
                    f"{k}: built {built.get(k)!r}, now {v!r}"
                    for k, v in (("tensorrt", trt.__version__), ("gpu", gpu["gpu"]),
                                 ("compute_capability", gpu["compute_capability"]))
                    if built.get(k) != v
                ]
                if mismatch:
                    raise EngineError(f"engine {engine_path} is stale ({'; '.join(mismatch)}); rebuild it with `matchanything-ros build-engine`")
                precision = built.get("precision", precision)
            engine = self._deserialize(engine_path)

        self.engine_path = engine_path
        self.engine = engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise EngineError(f"TensorRT could not create an execution context for {engine_path} (out of GPU memory?)")
        self.buffers = self._allocate()
        missing = [n for n in (*INPUT_NAMES, *OUTPUT_NAMES) if n not in self.buffers]
        if missing:
            raise EngineError(f"engine {engine_path} lacks tensors {missing}; rebuild it from a current export")
        height, width = self.buffers["image0"].shape[2:]
        super().__init__(device=str(self._device), precision=precision, input_size=(int(height), int(width)))
        self.top_k = int(self.buffers["scores"].shape[0])
        self.stream = torch.cuda.Stream(device=self._device)

    def _deserialize(self, engine_path: Path):
        trt = self._trt
        data = engine_path.read_bytes()
        # TensorRT keeps a pointer to the logger: it must live as long as the runtime and engine
        self._logger = trt.Logger(trt.Logger.ERROR)
        runtime = trt.Runtime(self._logger)
        try:
            engine = runtime.deserialize_cuda_engine(data) if data else None
        except Exception as exc:  # some versions raise instead of returning None
            raise EngineError(f"TensorRT engine {engine_path} is corrupt or incompatible: {exc}") from None
        if engine is None:
            raise EngineError(
                f"TensorRT engine {engine_path} is corrupt or was built by another TensorRT/GPU "
                "(deserialize_cuda_engine failed)"
            )
        self._runtime = runtime  # the engine must not outlive its runtime
        return engine

    def _allocate(self) -> dict:
        """One torch CUDA tensor per I/O tensor, bound with set_tensor_address once."""
        trt, torch = self._trt, self._torch
        buffers = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            shape = tuple(self.engine.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise EngineError(f"engine tensor {name} has a dynamic shape {shape}; export with static shapes")
            np_dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
            dtype = getattr(torch, _TORCH_DTYPES.get(np_dtype.name, "float32"))
            buffers[name] = torch.empty(shape, dtype=dtype, device=self._device)
            self.context.set_tensor_address(name, buffers[name].data_ptr())
        return buffers

    def run_device(self, image0, image1, threshold: float):
        """Run on CUDA tensors already on the device; returns the (device) output buffers,
        valid until the next call."""
        torch = self._torch
        with torch.cuda.stream(self.stream):
            self.buffers["image0"].copy_(image0, non_blocking=True)
            self.buffers["image1"].copy_(image1, non_blocking=True)
            self.buffers["threshold"].fill_(float(threshold))
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise EngineError("TensorRT execute_async_v3 failed (see the TensorRT log)")
        return tuple(self.buffers[n] for n in OUTPUT_NAMES)

    def _run(self, image0: np.ndarray, image1: np.ndarray, threshold: float):
        torch = self._torch
        outputs = self.run_device(torch.from_numpy(image0), torch.from_numpy(image1), threshold)
        with torch.cuda.stream(self.stream):
            host = [(o.float() if o.is_floating_point() else o).to("cpu", non_blocking=False) for o in outputs]
        self.stream.synchronize()
        return tuple(h.numpy() for h in host)

    def describe(self) -> dict:
        info = super().describe()
        info.update(engine=str(self.engine_path), top_k=self.top_k, tensorrt=self._trt.__version__)
        return info

    def close(self) -> None:
        self.context = None
        self.engine = None
        self.buffers = {}
