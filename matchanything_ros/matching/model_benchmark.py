"""Latency of whole matchers (model x backend), timed round-robin like the engine benchmark.

Where the engine benchmark times ``Engine.run`` of the ELoFTR network, this times
``Matcher.match`` on the same textured pair as uint8 images -- resizing and keypoint mapping
included -- so that models with different inputs (XFeat, SuperPoint+LightGlue, LoFTR, ELoFTR) sit
in one table. Cases are ``model`` or ``model:backend``; every case is built, warmed up and run once
(match count, peak memory), then the timed calls go round-robin, one call per case per round.

With ``random_weights`` the weighted models get seeded random checkpoints written in their
published layouts under ``work_dir`` (ELoFTR's needs transformers); latency does not depend on the
weight values except through the number of matches, which the table reports.
"""
from __future__ import annotations

import gc
import time
from pathlib import Path

import numpy as np

from ..engines.benchmark import (
    _CASE_ERRORS,
    CaseResult,
    PeakRSS,
    _summarise,
    _time_round_robin,
    benchmark_pair,
    format_row,
)
from .base import MatcherError

WEIGHTED = ("matchanything_eloftr", "minima_splg", "minima_loftr", "matchanything_roma", "minima_roma")
#: matchers whose constructor takes the ONNX/engine ``cache_dir``
_CACHED = ("matchanything_eloftr", "minima_splg")


def parse_cases(text: str) -> list[tuple[str, str | None]]:
    """``"xfeat,minima_splg:onnxruntime"`` -> [("xfeat", None), ("minima_splg", "onnxruntime")]."""
    from . import available_models

    cases = []
    for item in (t.strip() for t in text.split(",")):
        if not item:
            continue
        model, _, backend = item.partition(":")
        if model not in available_models() or model == "auto":
            raise ValueError(f"--models: unknown model {model!r}; choose from {', '.join(available_models()[1:])}")
        cases.append((model, backend or None))
    return cases


def random_weights_paths(work_dir: Path, seed: int = 0, models=None) -> dict[str, Path]:
    """model -> weights path (file or directory) of seeded random checkpoints in published layouts,
    for ``models`` (default: every weighted model). The RoMa models' files (their checkpoints and
    the 1.2 GB DINOv2 beside them) are written only when one of them is asked for."""
    from ..matching import ROMA_MODELS
    from ..models.minima.weights import write_random_checkpoints

    wanted = set(WEIGHTED if models is None else models)
    paths: dict[str, Path] = {}
    roma = [m for m in ROMA_MODELS if m in wanted]
    if roma:
        from ..models.roma.files import write_random_checkpoints as write_roma

        folder = work_dir / "roma_random"
        try:
            write_roma(folder, roma, seed)  # each file once: present files are kept
            paths.update({m: folder for m in roma})
        except ImportError:  # the network is not installed: their rows say what is missing
            pass
    if not wanted & {"minima_splg", "minima_loftr", "matchanything_eloftr"}:
        return paths
    minima = work_dir / "minima_random"
    if not (minima / "minima_loftr.ckpt").is_file():
        write_random_checkpoints(minima, seed)
    paths.update({"minima_splg": minima, "minima_loftr": minima})
    eloftr = work_dir / "eloftr_random" / "model.safetensors"
    if not eloftr.is_file():
        try:
            from safetensors.torch import save_file

            from ..engines.random_weights import random_reference_pair

            reference, _ = random_reference_pair(seed=seed)
            eloftr.parent.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(eloftr))
        except ImportError:
            return paths  # ELoFTR's row then says its weights are missing
    paths["matchanything_eloftr"] = eloftr
    return paths


def run_model_benchmark(cases, resolutions, *, device="cpu", weights=None, random_weights=False, seed=0,
                        warmup=2, runs=10, work_dir="benchmark_work", progress=print) -> list[CaseResult]:
    """One :class:`CaseResult` per (case, resolution); ``backend`` reads ``model:backend``."""
    from . import ROMA_MODELS, create_matcher

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    paths = random_weights_paths(work, seed, [model for model, _ in cases]) if random_weights else {}
    results = []
    for width, height in resolutions:
        f0, f1 = benchmark_pair(height, width, seed)
        image0, image1 = (np.round(f[0, 0] * 255).astype(np.uint8) for f in (f0, f1))
        rows, calls = [], {}
        for model, backend in cases:
            label = f"{model}:{backend}" if backend else model
            row = CaseResult(label, device, "fp32", width, height)
            rows.append(row)
            # RoMa resizes to the authors' fixed sizes (docs/MODELS.md): no `resolution`
            options = {} if model in ROMA_MODELS else {"resolution": max(width, height)}
            if model != "sift":  # OpenCV's SIFT runs on the CPU and takes no device
                options["device"] = device
            if backend:
                options["backend"] = backend
            if model in WEIGHTED:
                options.update(weights=paths.get(model, weights), download=False)
                if model in _CACHED:
                    options["cache_dir"] = work
            try:
                with PeakRSS() as rss:
                    start = time.perf_counter()
                    matcher = create_matcher(model, **options)
                    found = matcher.match(image0, image1)  # exports / builds on first use
                    row.setup_s = time.perf_counter() - start
                    for _ in range(max(0, warmup - 1)):
                        found = matcher.match(image0, image1)
                    row.matches = len(found)
                row.peak_mem_mib, row.memory = rss.delta_mib, "peak RSS growth"
                row.note = matcher.describe()
            except (MatcherError, TypeError, *_CASE_ERRORS) as exc:
                row.note = f"{type(exc).__name__}: {exc}"
                continue
            calls[len(rows) - 1] = lambda m=matcher: m.match(image0, image1)
        times, errors = _time_round_robin(calls, runs)
        for index, row in enumerate(rows):
            if index in errors:
                row.note = f"{type(errors[index]).__name__}: {errors[index]}"
            elif times.get(index):
                _summarise(row, times[index])
            results.append(row)
            progress(format_row(row))
        del calls
        gc.collect()
    return results
