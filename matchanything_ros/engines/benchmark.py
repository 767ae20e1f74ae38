"""Latency / memory benchmark of the backends, side by side with the reference forward.

Every case (backend x resolution x precision) runs in this process on the same image pair and
the same weights: after ``warmup`` untimed calls, ``runs`` timed calls give the median and 90th
percentile latency of ``Engine.run`` (host arrays in, host arrays out, so copies are included).
Peak memory is the growth of the process's peak RSS over the case (CPU; reset through
``/proc/self/clear_refs``) or ``torch.cuda.max_memory_allocated`` above the baseline (CUDA; for
TensorRT, which allocates outside torch, the drop in free device memory is reported instead).
The reference is transformers' ``EfficientLoFTRForKeypointMatching`` forward.
"""
from __future__ import annotations

import dataclasses
import gc
import logging
import platform
import time
from pathlib import Path

import numpy as np

from .base import EngineError

log = logging.getLogger(__name__)


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


def _time_calls(fn, warmup: int, runs: int, sync=None) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        if sync:
            sync()
        start = time.perf_counter()
        fn()
        if sync:
            sync()
        times.append(time.perf_counter() - start)
    return times


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
    first for each resolution; failures are rows with a note, not exceptions)."""
    import torch

    from . import create_engine
    from .export import export_onnx

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    deploy, reference, ref_note = _load_models(cfg)
    work = Path(cfg.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    on_cuda = cfg.device.startswith("cuda")
    sync = torch.cuda.synchronize if on_cuda else None
    results: list[CaseResult] = []

    for width, height in cfg.resolutions:
        image0, image1 = benchmark_pair(height, width, cfg.seed)
        ref_row = None
        if reference is not None:
            ref_row = _bench_reference(reference, image0, image1, cfg, sync)
            results.append(ref_row)
            progress(format_row(ref_row))
        elif cfg.reference:
            results.append(CaseResult("reference", cfg.device, "fp32", width, height, note=ref_note or "not available"))
        onnx_path = None
        for backend in cfg.backends:
            for precision in cfg.precisions:
                row = CaseResult(backend, cfg.device, precision, width, height)
                results.append(row)
                if backend == "onnxruntime" and precision != "fp32":
                    row.note = "onnxruntime runs the fp32 export only"
                    progress(format_row(row))
                    continue
                try:
                    setup_start = time.perf_counter()
                    if backend in ("onnxruntime", "tensorrt") and onnx_path is None:
                        onnx_path = work / f"eloftr_{height}x{width}_k{cfg.top_k}.onnx"
                        export_onnx(deploy, onnx_path, height, width, top_k=cfg.top_k)
                        setup_start = time.perf_counter()  # export is shared; not counted per engine
                    with PeakRSS() as rss:
                        if on_cuda:
                            torch.cuda.synchronize()
                            torch.cuda.reset_peak_memory_stats()
                            base_alloc = torch.cuda.memory_allocated()
                            free_before = torch.cuda.mem_get_info()[0]
                        options = {}
                        if backend == "onnxruntime" and cfg.threads:
                            options["intra_op_threads"] = cfg.threads
                        if backend == "torch" and cfg.cuda_graphs and on_cuda:
                            options["cuda_graphs"] = True
                        if backend == "tensorrt":
                            options["cache_dir"] = work / "engines"
                        engine = create_engine(
                            backend,
                            model=deploy if backend == "torch" else None,
                            onnx_path=onnx_path,
                            device=cfg.device,
                            precision=precision,
                            **options,
                        )
                        row.setup_s = time.perf_counter() - setup_start
                        times = _time_calls(lambda e=engine: e.run(image0, image1, cfg.threshold), cfg.warmup, cfg.runs, sync)
                        row.matches = int((engine.run(image0, image1, cfg.threshold)[2] > 0).sum())
                        if on_cuda:
                            if backend == "tensorrt":
                                row.peak_mem_mib = (free_before - torch.cuda.mem_get_info()[0]) / 2**20
                                row.memory = "CUDA free-memory drop"
                            else:
                                row.peak_mem_mib = (torch.cuda.max_memory_allocated() - base_alloc) / 2**20
                                row.memory = "torch.cuda.max_memory_allocated"
                    _summarise(row, times)
                    if not on_cuda:
                        row.peak_mem_mib, row.memory = rss.delta_mib, "peak RSS growth"
                    if ref_row is not None and ref_row.median_ms:
                        row.speedup = ref_row.median_ms / row.median_ms
                    engine.close()
                    del engine
                except (EngineError, ValueError, RuntimeError, ImportError) as exc:
                    row.note = f"{type(exc).__name__}: {exc}"
                gc.collect()
                progress(format_row(row))
    return results


def _bench_reference(reference, image0, image1, cfg: BenchmarkConfig, sync) -> CaseResult:
    import torch

    height, width = image0.shape[2:]
    row = CaseResult("reference", cfg.device, "fp32", width, height)
    row.note = "transformers EfficientLoFTRForKeypointMatching"
    with PeakRSS() as rss:
        if cfg.device.startswith("cuda"):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base_alloc = torch.cuda.memory_allocated()
        start = time.perf_counter()
        model = reference.to(cfg.device).eval()
        model.config.coarse_matching_threshold = cfg.threshold
        pixels = torch.from_numpy(np.stack([image0, image1], axis=1)).to(cfg.device)  # (1, 2, 1, H, W)
        row.setup_s = time.perf_counter() - start

        def forward():
            with torch.inference_mode():
                return model(pixels)

        times = _time_calls(forward, cfg.warmup, cfg.runs, sync)
        row.matches = int((forward().matches[0, 0] > -1).sum())
        if cfg.device.startswith("cuda"):
            row.peak_mem_mib = (torch.cuda.max_memory_allocated() - base_alloc) / 2**20
            row.memory = "torch.cuda.max_memory_allocated"
    _summarise(row, times)
    if not cfg.device.startswith("cuda"):
        row.peak_mem_mib, row.memory = rss.delta_mib, "peak RSS growth"
    return row


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
