"""MINIMA (CVPR 2025, LSXI7/MINIMA) matchers: SuperPoint + LightGlue and LoFTR fine-tuned on
MINIMA's generated multi-modal data, with the published weights.

* ``minima_splg``: our fixed-K SuperPoint + kornia's LightGlue
  (:mod:`matchanything_ros.models.minima.splg`), through the same engines as ELoFTR (torch,
  onnxruntime, openvino, tensorrt); the ONNX export runs all 9 LightGlue layers (no early stop/pruning).
* ``minima_loftr``: kornia's LoFTR with MINIMA's configuration (``temp_bug_fix=True``), torch only.

Both images are resized to one common network size (long side ``resolution``, sides multiples
of 32, as for ELoFTR) and keypoints are mapped back to each original image.
"""
from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np

from .base import Matcher, MatcherError, Matches

log = logging.getLogger(__name__)


def _prepare(image0, image1, resolution):
    """Grey [0, 1] network inputs of one common size (ELoFTR's ``network_size``), as MINIMA
    feeds its networks: OpenCV grey, resized in float, not quantised. (ELoFTR's own
    ``prepare_pair`` reproduces the MatchAnything Space's uint8 truncation and Pillow grey;
    quantised inputs give SuperPoint exact score ties, which its top-K then orders arbitrarily.)"""
    import cv2

    from matchanything_ros.models.eloftr.preprocess import PreparedPair, network_size

    from .base import to_gray_uint8

    try:
        gray0, gray1 = to_gray_uint8(image0), to_gray_uint8(image1)
        h, w = network_size(gray0.shape, gray1.shape, resolution)
    except ValueError as exc:
        raise MatcherError(str(exc)) from None

    def resize(gray):
        # area averaging when shrinking (no aliasing), bilinear when enlarging
        shrinking = gray.shape[0] > h or gray.shape[1] > w
        out = cv2.resize(gray, (w, h), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)
        return (out.astype(np.float32) / 255.0)[None, None]

    return PreparedPair(image0=resize(gray0), image1=resize(gray1), size=(h, w),
                        scale0=(gray0.shape[1] / w, gray0.shape[0] / h), scale1=(gray1.shape[1] / w, gray1.shape[0] / h))


def _check_resolution(resolution: int) -> None:
    from matchanything_ros.models.eloftr.preprocess import network_size

    try:
        network_size((resolution, resolution), (resolution, resolution), resolution)
    except ValueError as exc:
        raise MatcherError(str(exc)) from None


def _cap(pair, kpts0, kpts1, scores, max_matches: int, info: dict) -> Matches:
    keep = np.flatnonzero(scores > 0)
    if len(keep) > max_matches:
        keep = keep[np.argsort(-scores[keep], kind="stable")[:max_matches]]
    return Matches(pair.to_original(kpts0[keep], 0), pair.to_original(kpts1[keep], 1), scores[keep], info)


class MinimaSPLGMatcher(Matcher):
    """MINIMA SuperPoint + LightGlue.

    weights: ``minima_lightglue.pth`` (file or directory); ``superpoint_v1.pth`` is taken from
    ``superpoint_weights``, else beside it, else the cache; missing files are downloaded unless
    ``download=False``. backend: "auto", "torch", "onnxruntime", "openvino", "tensorrt". max_keypoints,
    detection_threshold, depth_confidence, width_confidence: MINIMA's settings (2048, 0.0005,
    0.95, 0.99; the last two apply to the torch backend only, exports run every layer).
    match_threshold: LightGlue's filter threshold (MINIMA: 0.1). max_matches: keep the best.
    """

    name = "minima_splg"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        superpoint_weights: str | os.PathLike | None = None,
        backend: str = "auto",
        device: str = "auto",
        precision: str = "fp32",
        resolution: int = 640,
        max_matches: int = 2048,
        match_threshold: float = 0.1,
        max_keypoints: int = 2048,
        detection_threshold: float = 0.0005,
        depth_confidence: float = 0.95,
        width_confidence: float = 0.99,
        onnx_path: str | os.PathLike | None = None,
        engine_path: str | os.PathLike | None = None,
        download: bool = True,
        cache_dir: str | os.PathLike | None = None,
    ):
        from matchanything_ros.devices import auto_device
        from matchanything_ros.models.eloftr.matcher import BACKENDS, MAX_TOP_K, PRECISIONS, default_cache_dir, resolve_backend

        if backend not in BACKENDS:
            raise MatcherError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
        if precision not in PRECISIONS:
            raise MatcherError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
        if not 1 <= int(max_keypoints) <= MAX_TOP_K:
            raise MatcherError(f"max_keypoints must be in [1, {MAX_TOP_K}], got {max_keypoints}")
        if int(max_matches) < 1 or not 0.0 <= float(match_threshold) < 1.0:
            raise MatcherError(f"need max_matches >= 1 and 0 <= match_threshold < 1, got {max_matches}, {match_threshold}")
        _check_resolution(resolution)
        from matchanything_ros.models.minima.weights import find_file, resolve_files, SUPERPOINT

        self.weights_path, sp_path = resolve_files("minima_splg", weights, allow_download=download)
        if superpoint_weights:
            sp_path = find_file(SUPERPOINT, superpoint_weights)
        self.superpoint_path = sp_path
        self.device = auto_device() if device == "auto" else device
        self.backend = resolve_backend(backend, self.device)
        self.precision = precision
        self.resolution = int(resolution)
        self.max_matches = int(max_matches)
        self.match_threshold = float(match_threshold)
        self.onnx_path = Path(onnx_path) if onnx_path else None
        self.engine_path = Path(engine_path) if engine_path else None
        self.cache_dir = Path(cache_dir) if cache_dir else default_cache_dir()
        self._engines: dict = {}
        try:
            from matchanything_ros.models.minima.splg import SPLGConfig, load_splg

            self.config = SPLGConfig(
                max_keypoints=int(max_keypoints),
                detection_threshold=float(detection_threshold),
                depth_confidence=float(depth_confidence),
                width_confidence=float(width_confidence),
                filter_threshold=self.match_threshold,
            )
            self._model = load_splg(self.weights_path, self.superpoint_path, self.config, adaptive=self.backend == "torch")
        except MatcherError:
            raise
        except ImportError as exc:
            raise MatcherError(str(exc)) from None
        except Exception as exc:  # e.g. RuntimeError from load_state_dict
            raise MatcherError(f"cannot load MINIMA SuperPoint+LightGlue weights {self.weights_path}: {exc}") from None
        if self.backend == "torch":
            self._engine_for(None)  # fail early on a bad device/precision

    def _onnx_for(self, size: tuple[int, int]) -> Path:
        if self.onnx_path is not None:
            return self.onnx_path
        from matchanything_ros.engines.export import export_onnx

        parts = []
        for p in (self.weights_path, self.superpoint_path):
            st = p.stat()
            parts.append(f"{p.resolve()}|{st.st_size}|{int(st.st_mtime)}")
        tag = hashlib.sha1(("|".join(parts) + repr(self.config)).encode()).hexdigest()[:12]
        path = self.cache_dir / "onnx" / f"minima_splg_{tag}_{size[0]}x{size[1]}_k{self._model.top_k}.onnx"
        if not path.is_file():
            log.info("exporting MINIMA SuperPoint+LightGlue to %s (one-off per size)", path)
            tmp = path.with_suffix(".tmp.onnx")
            export_onnx(self._model, tmp, size[0], size[1], top_k=self._model.top_k, fp32_scopes=())
            tmp.replace(path)
        return path

    def _engine_for(self, size):
        key = None if self.backend == "torch" else size
        if key in self._engines:
            return self._engines[key]
        from matchanything_ros.engines import EngineError, create_engine

        try:
            if self.backend == "torch":
                engine = create_engine("torch", model=self._model, device=self.device, precision=self.precision)
            else:
                from matchanything_ros.models.eloftr.matcher import engine_options

                engine = create_engine(self.backend, onnx_path=self._onnx_for(size), device=self.device,
                                       precision=self.precision, **engine_options(self.backend, self))
        except EngineError as exc:
            raise MatcherError(f"minima_splg {self.backend} backend: {exc}") from None
        self._engines[key] = engine
        return engine

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        start = time.perf_counter()
        pair = _prepare(image0, image1, self.resolution)
        kpts0, kpts1, scores, _ = self._engine_for(pair.size).run(pair.image0, pair.image1, self.match_threshold)
        info = {"network_size": pair.size, "backend": self.backend, "device": self.device,
                "seconds": time.perf_counter() - start}
        return _cap(pair, kpts0, kpts1, scores, self.max_matches, info)

    def describe(self) -> str:
        mode = "adaptive depth/width" if self.backend == "torch" and self._model.adaptive else "all layers"
        return (
            f"minima_splg (backend={self.backend}, device={self.device}, {self.precision}, long side "
            f"{self.resolution}px, {self._model.top_k} keypoints, {mode}, threshold={self.match_threshold:g})"
        )


class MinimaLoFTRMatcher(Matcher):
    """MINIMA LoFTR (kornia's LoFTR, ``temp_bug_fix=True``, dual softmax).

    weights: ``minima_loftr.ckpt`` (file or directory); cache, then download (unless
    ``download=False``). match_threshold: LoFTR's coarse threshold (LoFTR's default 0.2).
    device: "auto", "cpu", "cuda[:N]". backend: "auto" or "torch" (no export for LoFTR here).
    """

    name = "minima_loftr"

    def __init__(
        self,
        weights: str | os.PathLike | None = None,
        backend: str = "auto",
        device: str = "auto",
        precision: str = "fp32",
        resolution: int = 640,
        max_matches: int = 2048,
        match_threshold: float = 0.2,
        download: bool = True,
    ):
        if backend not in ("auto", "torch"):
            raise MatcherError(f"minima_loftr runs on the torch backend only, got backend {backend!r}")
        if precision != "fp32":
            raise MatcherError("minima_loftr runs in fp32 only")
        if int(max_matches) < 1 or not 0.0 <= float(match_threshold) < 1.0:
            raise MatcherError(f"need max_matches >= 1 and 0 <= match_threshold < 1, got {max_matches}, {match_threshold}")
        _check_resolution(resolution)
        from matchanything_ros.devices import torch_device
        from matchanything_ros.models.minima.loftr import load_loftr
        from matchanything_ros.models.minima.weights import resolve_files

        (self.weights_path,) = resolve_files("minima_loftr", weights, allow_download=download)
        self.device = torch_device(device, MatcherError)
        self.resolution = int(resolution)
        self.max_matches = int(max_matches)
        self.match_threshold = float(match_threshold)
        try:
            self._model = load_loftr(self.weights_path, self.match_threshold).to(self.device)
        except MatcherError:
            raise
        except ImportError as exc:
            raise MatcherError(str(exc)) from None
        except Exception as exc:
            raise MatcherError(f"cannot load MINIMA LoFTR weights {self.weights_path}: {exc}") from None

    def match(self, image0: np.ndarray, image1: np.ndarray) -> Matches:
        import torch

        start = time.perf_counter()
        pair = _prepare(image0, image1, self.resolution)
        with torch.inference_mode():
            out = self._model({
                "image0": torch.from_numpy(pair.image0).to(self.device),
                "image1": torch.from_numpy(pair.image1).to(self.device),
            })
        info = {"network_size": pair.size, "backend": "torch", "device": str(self.device),
                "seconds": time.perf_counter() - start}
        return _cap(pair, out["keypoints0"].cpu().numpy(), out["keypoints1"].cpu().numpy(),
                    out["confidence"].float().cpu().numpy(), self.max_matches, info)

    def describe(self) -> str:
        return (
            f"minima_loftr (kornia LoFTR, device={self.device.type}, long side {self.resolution}px, "
            f"threshold={self.match_threshold:g})"
        )
