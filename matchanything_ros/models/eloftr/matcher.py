"""ELoFTRMatcher: MatchAnything-ELoFTR behind the package's Matcher interface.

Preprocesses as the authors' Space does (``preprocess.py``), runs the deploy network through an
engine ("torch", "onnxruntime", "openvino" or "tensorrt" from :mod:`matchanything_ros.engines`), keeps the
slots with a non-zero score and maps keypoints back to each original image. When more cell pairs
pass the threshold than the K output slots hold, ``info["truncated"]`` says so (and how many).
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from matchanything_ros.devices import auto_device
from matchanything_ros.matching.base import Matcher, MatcherError, Matches

from .config import MATCH_RULES
from .preprocess import network_size, prepare_pair

log = logging.getLogger(__name__)

BACKENDS = ("auto", "torch", "onnxruntime", "openvino", "tensorrt")
PRECISIONS = ("fp32", "fp16")
MAX_TOP_K = 3840  # TensorRT TopK limit; the network refuses larger K
#: bump when the exported graph changes, so cached ONNX files are re-exported
GRAPH_VERSION = 4


def default_cache_dir() -> Path:
    """Where exported ONNX files are cached (``$XDG_CACHE_HOME/matchanything_ros``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "matchanything_ros"


def resolve_backend(backend: str, device: str) -> str:
    """"auto" -> TensorRT on CUDA when installed, else PyTorch."""
    if backend != "auto":
        return backend
    if device.startswith("cuda"):
        try:
            import tensorrt  # noqa: F401

            return "tensorrt"
        except ImportError:
            pass
    return "torch"


def engine_options(backend: str, matcher) -> dict:
    """The backend-specific options a matcher passes to ``create_engine`` (its engine file for
    TensorRT, its cache folder for OpenVINO's compiled models)."""
    if backend == "tensorrt":
        return {"engine_path": matcher.engine_path}
    if backend == "openvino":
        return {"cache_dir": matcher.cache_dir / "openvino"}
    return {}


class ELoFTRMatcher(Matcher):
    """MatchAnything-ELoFTR matcher.

    weights: checkpoint path (HF ``model.safetensors`` or the authors' ``.ckpt``); None = Hugging
    Face cache, then download (``download=False`` forbids that). backend: "auto", "torch",
    "onnxruntime", "openvino", "tensorrt". device: "auto", "cpu", "cuda[:N]". precision: "fp32" or
    "fp16" (GPU backends; the coarse matching head always runs in fp32). resolution: long side of the network input
    (multiple of 32). fixed_size: (h, w) network size for every pair instead (the authors' Space
    uses (480, 640) whatever the aspect). max_matches: K, at most 3840. match_threshold: coarse
    confidence threshold; None = the weights' config (0.1, MatchAnything's MATCH_COARSE.THR).
    match_rule: "mtd" (every pair above the threshold, MatchAnything) or "mnn" (mutual nearest
    neighbours, EfficientLoFTR); None = the weights' config ("mtd").
    onnx_path / engine_path: use these exported files instead of exporting/building into the cache.
    npe_resolution: MatchAnything's "NPE" option -- scale RoPE positions by npe_resolution /
    resolution (its evaluation uses 832); None (default, as transformers) means no scaling, which
    is identical to NPE when resolution == 832.
    """

    name = "matchanything_eloftr"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        backend: str = "auto",
        device: str = "auto",
        precision: str = "fp32",
        resolution: int = 640,
        max_matches: int = 2048,
        match_threshold: float | None = None,
        onnx_path: str | os.PathLike | None = None,
        engine_path: str | os.PathLike | None = None,
        download: bool = True,
        cache_dir: str | os.PathLike | None = None,
        npe_resolution: int | None = None,
        match_rule: str | None = None,
        fixed_size: tuple[int, int] | None = None,
    ):
        if backend not in BACKENDS:
            raise MatcherError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
        if precision not in PRECISIONS:
            raise MatcherError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if not 1 <= int(max_matches) <= MAX_TOP_K:
            raise MatcherError(f"max_matches must be in [1, {MAX_TOP_K}], got {max_matches}")
        threshold = None if match_threshold is None else float(match_threshold)
        if threshold is not None and not 0.0 <= threshold < 1.0:
            raise MatcherError(f"match_threshold must be in [0, 1), got {match_threshold}")
        if match_rule not in (None, *MATCH_RULES):
            raise MatcherError(f"match_rule {match_rule!r} is not one of {', '.join(MATCH_RULES)}")
        try:
            network_size((resolution, resolution), (resolution, resolution), resolution)
            if fixed_size is not None:
                prepare_pair(np.zeros((8, 8), np.uint8), np.zeros((8, 8), np.uint8), resolution, fixed_size)
        except ValueError as exc:
            raise MatcherError(str(exc)) from None
        self.match_rule = match_rule
        self.fixed_size = tuple(fixed_size) if fixed_size is not None else None
        from .weights import resolve_weights

        self.weights_path = resolve_weights(weights, allow_download=download)
        self.device = auto_device() if device == "auto" else device
        self.backend = resolve_backend(backend, self.device)
        self.precision = precision
        self.resolution = int(resolution)
        self.top_k = int(max_matches)
        self.onnx_path = Path(onnx_path) if onnx_path else None
        self.engine_path = Path(engine_path) if engine_path else None
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self.npe_resolution = int(npe_resolution) if npe_resolution else None
        self._model = None
        self._engines: dict[tuple[int, int] | None, object] = {}
        self._load_model()
        #: the weights' config (MatchAnything's MATCH_COARSE.THR) unless overridden
        self.match_threshold = self._model.config.match_threshold if threshold is None else threshold
        if self.backend == "torch":
            self._engine_for(None)  # fail early on a bad device/precision

    # ------------------------------------------------------------------ engines
    def _load_model(self):
        import dataclasses

        from .model import load_deploy_model
        from .weights import config_for

        config = config_for(self.weights_path)
        if self.match_rule:
            config = dataclasses.replace(config, match_rule=self.match_rule)
        if self.npe_resolution:
            scale = self.npe_resolution / self.resolution
            config = dataclasses.replace(config, rope_scale=(scale, scale))
        try:
            self._model = load_deploy_model(self.weights_path, self.top_k, config=config)
        except MatcherError:
            raise
        except Exception as exc:  # e.g. RuntimeError from load_state_dict
            raise MatcherError(f"cannot load ELoFTR weights {self.weights_path}: {exc}") from None

    def _onnx_for(self, size: tuple[int, int]) -> Path:
        if self.onnx_path is not None:
            return self.onnx_path
        from matchanything_ros.engines.export import export_onnx

        stat = self.weights_path.stat()
        # the whole config: every rule (selection, padding, RoPE precision...) is baked into the graph
        key = f"{self.weights_path.resolve()}|{stat.st_size}|{int(stat.st_mtime)}|{self._model.config}|{GRAPH_VERSION}"
        tag = hashlib.sha1(key.encode()).hexdigest()[:12]
        path = self.cache_dir / "onnx" / f"eloftr_{tag}_{size[0]}x{size[1]}_k{self.top_k}.onnx"
        if not path.is_file():
            log.info("exporting ELoFTR to %s (one-off per size)", path)
            tmp = path.with_suffix(".tmp.onnx")
            export_onnx(self._model, tmp, size[0], size[1], top_k=self.top_k)
            tmp.replace(path)
        return path

    def _engine_for(self, size: tuple[int, int] | None):
        key = None if self.backend == "torch" else size
        engine = self._engines.get(key)
        if engine is not None:
            return engine
        from matchanything_ros.engines import EngineError, create_engine

        try:
            if self.backend == "torch":
                engine = create_engine("torch", model=self._model, device=self.device, precision=self.precision)
            else:
                engine = create_engine(self.backend, onnx_path=self._onnx_for(size), device=self.device,
                                       precision=self.precision, **engine_options(self.backend, self))
        except EngineError as exc:
            raise MatcherError(f"ELoFTR {self.backend} backend: {exc}") from None
        self._engines[key] = engine
        return engine

    # ------------------------------------------------------------------ Matcher
    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        start = time.perf_counter()
        pair = prepare_pair(image0, image1, self.resolution, self.fixed_size)
        engine = self._engine_for(pair.size)
        kpts0, kpts1, scores, candidates = engine.run(pair.image0, pair.image1, self.match_threshold)
        keep = scores > 0
        info = {
            "network_size": pair.size,
            "backend": self.backend,
            "device": self.device,
            "precision": self.precision,
            "top_k": self.top_k,
            "match_rule": self._model.config.match_rule,
            "threshold": self.match_threshold,
            "slots_used": int(keep.sum()),
            "candidates": candidates,
            # more pairs passed than K slots: the weakest were dropped (fixed-shape output)
            "truncated": max(0, candidates - self.top_k),
            "seconds": time.perf_counter() - start,
        }
        if info["truncated"]:
            log.debug("ELoFTR: %d pairs passed the threshold, %d kept (K)", candidates, self.top_k)
        return Matches(pair.to_original(kpts0[keep], 0), pair.to_original(kpts1[keep], 1), scores[keep], info)

    def describe(self) -> str:
        size = f"{self.fixed_size[1]}x{self.fixed_size[0]}px" if self.fixed_size else f"long side {self.resolution}px"
        return (
            f"matchanything_eloftr (backend={self.backend}, device={self.device}, {self.precision}, "
            f"{size}, K={self.top_k}, {self._model.config.match_rule} threshold={self.match_threshold:g})"
        )
