"""Latency / memory benchmark of the backends, side by side with the reference forward.

Every case (backend x resolution x precision) runs in this process on the same image pair and
the same weights: after ``warmup`` untimed calls, ``runs`` timed calls, taken round-robin across
the cases of a resolution, give the median and 90th percentile latency of ``Engine.run`` (host
arrays in, host arrays out, so copies are included).
Peak memory is the growth of the process's peak RSS over the case's setup, warm-up and one call
(CPU; reset through ``/proc/self/clear_refs``) or ``torch.cuda.max_memory_allocated`` above the
baseline (CUDA; for TensorRT, which allocates outside torch, the drop in free device memory is
reported instead).
The reference is transformers' ``EfficientLoFTRForKeypointMatching`` forward.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import platform
import time
from pathlib import Path

import numpy as np

from .base import EngineError

log = logging.getLogger(__name__)

_CASE_ERRORS = (EngineError, ValueError, RuntimeError, ImportError)  # a failed case becomes a note


@dataclasses.dataclass
class CaseResult:
    """One benchmark row. Times in milliseconds, memory in MiB."""

    backend: str
    device: str
    precision: str
    width: int
    height: int
    median_ms: float | None = None
    p90_ms: float | None = None
    runs: int = 0
    peak_mem_mib: float | None = None
    memory: str = ""  # how peak_mem_mib was measured
    matches: int | None = None  # matches returned for the benchmark pair
    setup_s: float | None = None  # export / build / load time
    speedup: float | None = None  # reference median / this median (same resolution, device)
    note: str = ""


# --------------------------------------------------------------------------- memory probes
def _read_status(field: str) -> int | None:
    """A kB field of /proc/self/status (VmRSS, VmHWM) in bytes, or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


class PeakRSS:
    """Peak resident memory growth over a ``with`` block (Linux: VmHWM reset via clear_refs)."""

    def __enter__(self):
        self.supported = False
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # "5" resets the peak RSS (VmHWM) to the current RSS
            self.supported = True
        except OSError:
            pass
        self.start = _read_status("VmRSS")
        return self

    def __exit__(self, *exc):
        peak = _read_status("VmHWM")
        # memory freed by earlier cases and reused here can make the growth slightly negative
        self.delta_mib = max(0.0, (peak - self.start) / 2**20) if self.supported and peak and self.start else None
        return False


# --------------------------------------------------------------------------- inputs
def benchmark_pair(height: int, width: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A textured float32 (1, 1, H, W) pair, the second shifted by (5, 7) px (overlapping views)."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.random((height // 8 + 4, width // 8 + 4)).astype(np.float32)
    big = np.clip(cv2.resize(small, None, fx=8, fy=8, interpolation=cv2.INTER_CUBIC), 0, 1)
    return big[None, None, :height, :width].copy(), big[None, None, 5 : 5 + height, 7 : 7 + width].copy()


def parse_resolution(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (width, height); both must be positive multiples of 32."""
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"resolution {text!r}: expected WIDTHxHEIGHT, e.g. 640x480") from None
    if width <= 0 or height <= 0 or width % 32 or height % 32:
        raise ValueError(f"resolution {text!r}: width and height must be positive multiples of 32")
    return width, height


def _time_round_robin(calls: dict, runs: int, sync=None) -> tuple[dict, dict]:
    """Time ``runs`` rounds of one call per entry of ``calls`` (in dict order), so that a slow
    spell of the machine lands on every case alike. Returns (seconds per name, exception per name);
    a case whose call raises one of ``_CASE_ERRORS`` is dropped from the later rounds."""
    times = {name: [] for name in calls}
    errors = {}
    for _ in range(runs):
        for name, fn in calls.items():
            if name in errors:
                continue
            try:
                if sync:
                    sync()  # CUDA: time the work itself, not queued launches
                start = time.perf_counter()
                fn()
                if sync:
                    sync()
                times[name].append(time.perf_counter() - start)
            except _CASE_ERRORS as exc:
                errors[name] = exc
    return times, errors


def _summarise(result: CaseResult, times: list[float]) -> None:
    ms = np.asarray(times) * 1000.0
    result.median_ms = float(np.median(ms))
    result.p90_ms = float(np.percentile(ms, 90))
    result.runs = len(times)


# --------------------------------------------------------------------------- runner
@dataclasses.dataclass
class BenchmarkConfig:
    backends: tuple[str, ...] = ("torch", "onnxruntime")
    resolutions: tuple[tuple[int, int], ...] = ((640, 480),)  # (width, height)
    precisions: tuple[str, ...] = ("fp32",)
    device: str = "cpu"
    weights: str | None = None
    random_weights: bool = False
    seed: int = 0
    top_k: int = 2048
    threshold: float = 0.2  # transformers' default coarse threshold, so both sides do equal work
    warmup: int = 2
    runs: int = 10
    threads: int | None = None
    reference: bool = True
    work_dir: str = "benchmark_work"
    cuda_graphs: bool = False


def _load_models(cfg: BenchmarkConfig):
    """(deploy model, reference or None, reference note)."""
    from .random_weights import random_reference_pair, reference_from_weights

    note = ""
    if cfg.random_weights:
        try:
            reference, deploy = random_reference_pair(top_k=cfg.top_k, seed=cfg.seed)
        except ImportError as exc:
            from .random_weights import random_deploy_model

            log.warning("%s; benchmarking without the reference", exc)
            return random_deploy_model(cfg.top_k, cfg.seed), None, str(exc)
        return deploy, (reference if cfg.reference else None), note
    from ..models.eloftr.model import load_deploy_model
    from ..models.eloftr.weights import resolve_weights

    path = resolve_weights(cfg.weights, allow_download=False)
    deploy = load_deploy_model(path, top_k=cfg.top_k)
    reference = None
    if cfg.reference:
        try:
            reference = reference_from_weights(path)
        except ImportError as exc:
            note = f"reference skipped: {exc}"
    return deploy, reference, note


def run_benchmark(cfg: BenchmarkConfig, progress=print) -> list[CaseResult]:
    """Run every case of ``cfg`` and return one :class:`CaseResult` per case (reference rows
    first for each resolution; failures are rows with a note, not exceptions).

    Per resolution, every case is first set up, warmed up and run once (for its match count and
    peak memory); then the timed calls go round-robin, one call per case per round, so drift of
    the machine hits all rows alike and the speed-ups compare calls made side by side. Rows are
    passed to ``progress`` once their resolution is timed."""
    import torch

    from .export import export_onnx

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    deploy, reference, ref_note = _load_models(cfg)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    on_cuda = cfg.device.startswith("cuda")
    results: list[CaseResult] = []

    for width, height in cfg.resolutions:
        image0, image1 = benchmark_pair(height, width, cfg.seed)
        rows: list[CaseResult] = []
        calls = {}  # row index -> timed call; the reference first, as in the rows
        engines = []
        if reference is not None:
            row = CaseResult("reference", cfg.device, "fp32", width, height)
            rows.append(row)
            try:
                calls[len(rows) - 1] = _setup_reference(row, reference, image0, image1, cfg)
            except _CASE_ERRORS as exc:
                row.note = f"{type(exc).__name__}: {exc}"
        elif cfg.reference:
            rows.append(CaseResult("reference", cfg.device, "fp32", width, height, note=ref_note or "not available"))
        onnx_path = None
        for backend in cfg.backends:
            for precision in cfg.precisions:
                row = CaseResult(backend, cfg.device, precision, width, height)
                rows.append(row)
                if reason := unsupported(backend, precision):
                    row.note = reason
                    continue
                try:
                    setup_start = time.perf_counter()
                    if backend in ("onnxruntime", "openvino", "tensorrt") and onnx_path is None:
                        onnx_path = work / f"eloftr_{height}x{width}_k{cfg.top_k}.onnx"
                        export_onnx(deploy, onnx_path, height, width, top_k=cfg.top_k)
                        setup_start = time.perf_counter()  # export is shared; not counted per engine
                    engine = _setup_engine(row, backend, precision, deploy, onnx_path, image0, image1, cfg, setup_start)
                except _CASE_ERRORS as exc:
                    row.note = f"{type(exc).__name__}: {exc}"
                    gc.collect()
                    continue
                engines.append(engine)
                calls[len(rows) - 1] = lambda e=engine: e.run(image0, image1, cfg.threshold)

        times, errors = _time_round_robin(calls, cfg.runs, torch.cuda.synchronize if on_cuda else None)
        ref_row = rows[0] if reference is not None else None
        for index, row in enumerate(rows):
            if index in errors:
                row.note = f"{type(errors[index]).__name__}: {errors[index]}"
            elif times.get(index):
                _summarise(row, times[index])
                if row is not ref_row and ref_row is not None and ref_row.median_ms:
                    row.speedup = ref_row.median_ms / row.median_ms
            results.append(row)
            progress(format_row(row))
        for engine in engines:
            engine.close()
        del engines, calls
        gc.collect()
    return results


def unsupported(backend: str, precision: str) -> str | None:
    """Why a backend x precision row of the grid is not run (by design, not a failure), or None."""
    if backend == "onnxruntime" and precision != "fp32":
        return "onnxruntime runs the fp32 export only"
    if backend == "openvino" and precision != "fp32":
        return "openvino runs fp32 only (its bf16: docs/BENCHMARKS.md)"
    return None


@contextlib.contextmanager
def _case_memory(row: CaseResult, on_cuda: bool, free_memory: bool = False):
    """Store in ``row`` the peak memory growth over the block: peak RSS on CPU; on CUDA torch's
    peak allocation, or with ``free_memory`` the drop in free device memory (TensorRT allocates
    outside torch)."""
    import torch

    with PeakRSS() as rss:
        if on_cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base_alloc = torch.cuda.memory_allocated()
            free_before = torch.cuda.mem_get_info()[0]
        yield
        if on_cuda:
            if free_memory:
                row.peak_mem_mib = (free_before - torch.cuda.mem_get_info()[0]) / 2**20
                row.memory = "CUDA free-memory drop"
            else:
                row.peak_mem_mib = (torch.cuda.max_memory_allocated() - base_alloc) / 2**20
                row.memory = "torch.cuda.max_memory_allocated"
    if not on_cuda:
        row.peak_mem_mib, row.memory = rss.delta_mib, "peak RSS growth"


def _setup_engine(row: CaseResult, backend: str, precision: str, deploy, onnx_path, image0, image1,
                  cfg: BenchmarkConfig, setup_start: float):
    """Create, warm up and run once the engine of ``row`` (setup time, matches, memory); return it."""
    from . import create_engine

    on_cuda = cfg.device.startswith("cuda")
    with _case_memory(row, on_cuda, free_memory=backend == "tensorrt"):
        options = {}
        if backend == "onnxruntime" and cfg.threads:
            options["intra_op_threads"] = cfg.threads
        if backend == "openvino" and cfg.threads:
            options["threads"] = cfg.threads
        if backend == "torch" and cfg.cuda_graphs and on_cuda:
            options["cuda_graphs"] = True
        if backend == "tensorrt":
            options["cache_dir"] = Path(cfg.work_dir) / "engines"
        engine = create_engine(
            backend,
            model=deploy if backend == "torch" else None,
            onnx_path=onnx_path,
            device=cfg.device,
            precision=precision,
            **options,
        )
        row.setup_s = time.perf_counter() - setup_start
        try:
            for _ in range(cfg.warmup):
                engine.run(image0, image1, cfg.threshold)
            row.matches = int((engine.run(image0, image1, cfg.threshold)[2] > 0).sum())
        except BaseException:
            engine.close()
            raise
    return engine


def _setup_reference(row: CaseResult, reference, image0, image1, cfg: BenchmarkConfig):
    """Move the reference to the device, warm it up and run it once (setup time, matches,
    memory); return its timed call."""
    import torch

    row.note = "transformers EfficientLoFTRForKeypointMatching"
    with _case_memory(row, cfg.device.startswith("cuda")):
        start = time.perf_counter()
        model = reference.to(cfg.device).eval()
        model.config.coarse_matching_threshold = cfg.threshold
        pixels = torch.from_numpy(np.stack([image0, image1], axis=1)).to(cfg.device)  # (1, 2, 1, H, W)
        row.setup_s = time.perf_counter() - start

        def forward():
            with torch.inference_mode():
                return model(pixels)

        for _ in range(cfg.warmup):
            forward()
        row.matches = int((forward().matches[0, 0] > -1).sum())
    return forward


# --------------------------------------------------------------------------- reporting
def environment() -> dict:
    """Versions and hardware the numbers were taken on."""
    import torch

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        if names:
            info["cpu"] = f"{names[0]} x{len(names)}"
    except OSError:
        pass
    try:
        import onnxruntime

        info["onnxruntime"] = onnxruntime.__version__
    except ImportError:
        pass
    try:
        import openvino

        info["openvino"] = openvino.__version__
        info["cpu_bf16"] = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except ImportError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


_HEADER = "| backend | device | precision | size (WxH) | median ms | p90 ms | x reference | peak mem MiB | matches | setup s | note |"


def format_row(row: CaseResult) -> str:
    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    return (
        f"| {row.backend} | {row.device} | {row.precision} | {row.width}x{row.height} | "
        f"{num(row.median_ms, '.1f')} | {num(row.p90_ms, '.1f')} | {num(row.speedup, '.2f')} | "
        f"{num(row.peak_mem_mib, '.0f')} | {num(row.matches, 'd')} | {num(row.setup_s, '.1f')} | {row.note} |"
    )


def format_table(results: list[CaseResult]) -> str:
    """Markdown table of all rows."""
    separator = "|" + "---|" * (_HEADER.count("|") - 1)
    return "\n".join([_HEADER, separator, *(format_row(r) for r in results)])


# --------------------------------------------------------------------------- profiling
def profile_onnxruntime(onnx_path, image0, image1, threshold: float, *, threads: int | None = None,
                        runs: int = 2, top: int = 12, trace_dir: str | Path = ".") -> dict:
    """Where ONNX Runtime spends its time: per-operator-type and per-node kernel time (ms per
    run, averaged over ``runs`` after one warm-up call), from ORT's own JSON profiler."""
    import json
    from collections import Counter

    from .onnx_engine import OnnxRuntimeEngine

    prefix = str(Path(trace_dir) / "ort_profile")
    engine = OnnxRuntimeEngine(onnx_path, intra_op_threads=threads, profile_prefix=prefix)
    engine.run(image0, image1, threshold)  # warm-up; its events are dropped below
    start = time.perf_counter()
    for _ in range(runs):
        engine.run(image0, image1, threshold)
    wall_ms = (time.perf_counter() - start) * 1000 / runs
    trace = engine.end_profiling()
    events = [e for e in json.loads(Path(trace).read_text())
              if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    calls = Counter(e["name"] for e in events)
    per_op, per_node, count = Counter(), Counter(), Counter()
    for e in events:
        # every node ran runs + 1 times (warm-up included): keep the timed calls' share
        share = runs / calls[e["name"]]
        op = e["args"].get("op_name", "?")
        per_op[op] += e["dur"] * share / 1000 / runs
        count[op] += share / runs
        shape = e["args"].get("output_type_shape", "")
        per_node[(e["name"].removesuffix("_kernel_time"), op, json.dumps(shape)[:60])] += e["dur"] * share / 1000 / runs
    total = sum(per_op.values())
    engine.close()
    return {
        "wall_ms": wall_ms,
        "kernel_ms": total,
        "ops": [(op, ms, ms / total, round(count[op])) for op, ms in per_op.most_common(top)],
        "nodes": [(name, op, shape, ms) for (name, op, shape), ms in per_node.most_common(top)],
        "trace": trace,
    }


def format_profile(profile: dict) -> str:
    """Two markdown tables: time per operator type and the most expensive nodes."""
    lines = [
        f"ONNX Runtime: {profile['wall_ms']:.0f} ms per run (wall), {profile['kernel_ms']:.0f} ms in kernels",
        "",
        "| operator | ms/run | share | nodes |",
        "|---|---|---|---|",
        *(f"| {op} | {ms:.0f} | {share:.0%} | {n} |" for op, ms, share, n in profile["ops"]),
        "",
        "| node | operator | output shape | ms/run |",
        "|---|---|---|---|",
        *(f"| {name} | {op} | {shape} | {ms:.0f} |" for name, op, shape, ms in profile["nodes"]),
    ]
    return "\n".join(lines)
