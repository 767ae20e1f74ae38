"""The ROS-free matching pipeline: preprocess -> match -> geometry -> one result object.

This is the single code path behind the CLI, the ROS node and bag replay. Image 0 is the
visible image, image 1 the thermal image.
"""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .geometry import GeometryResult, GeometryStatus, estimate_geometry
from .imaging.thermal import ThermalConfig, normalize_thermal
from .matching import Matcher, Matches, create_matcher, resolve_model

POLARITIES = ("normal", "inverted", "auto", "both")
_VISIBLE_STRETCH = ThermalConfig(mode="percentile")
GEOMETRY_MODES = ("homography", "affine", "fundamental", "essential", "none")


@dataclass
class PipelineConfig:
    """Everything that decides what the pipeline computes. Field names are the ROS parameter
    names (nested dataclasses become dotted names, e.g. ``thermal.mode``)."""

    model: str = "auto"  # "auto", "xfeat", "sift", "matchanything_eloftr"
    backend: str = "auto"  # for ELoFTR: "auto", "torch", "onnxruntime", "tensorrt"
    device: str = "auto"  # "auto", "cpu", "cuda"
    precision: str = "fp32"  # "fp32" or "fp16" (GPU backends)
    weights: str = ""  # explicit weights path; empty = cache, then the offline default
    resolution: int = 640  # long side the matcher resizes to (ELoFTR: multiple of 32)
    max_matches: int = 2048  # top-K kept by the matcher
    match_threshold: float = 0.1  # matcher confidence threshold (ELoFTR coarse threshold)
    # ELoFTR coarse selection: "auto" (the weights' config: MatchAnything keeps every pair above
    # the threshold), "mtd" (that), "mnn" (mutual nearest neighbours, EfficientLoFTR's rule)
    match_rule: str = "auto"
    geometry: str = "homography"  # one of GEOMETRY_MODES
    ransac_threshold: float = 3.0  # px, MAGSAC++ inlier threshold
    ransac_confidence: float = 0.9999
    min_matches: int = 12  # below this the geometry status is TOO_FEW_MATCHES
    # inliers / matches below this: LOW_INLIER_RATIO. 0 = off: on the data measured no value
    # rejected the wrong fits without losing correct ones (docs/ACCURACY.md, "Inlier ratio").
    min_inlier_ratio: float = 0.0
    # thermal polarity: "normal", "inverted", "auto" (fit each, keep the better fit) or "both"
    # (pool the matches of both into one fit: thermal contrast flips per object, not per image;
    # roadscene_dev SR@10 0.73 vs 0.66 for auto, docs/ACCURACY.md)
    polarity: str = "both"
    thermal: ThermalConfig = field(default_factory=ThermalConfig)

    def __post_init__(self) -> None:
        if isinstance(self.thermal, dict):
            self.thermal = ThermalConfig(**self.thermal)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError with a clear message for any out-of-range value."""
        if self.geometry not in GEOMETRY_MODES:
            raise ValueError(f"geometry must be one of {GEOMETRY_MODES}, got {self.geometry!r}")
        if self.polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {POLARITIES}, got {self.polarity!r}")
        if self.resolution < 64:
            raise ValueError(f"resolution must be >= 64, got {self.resolution}")
        if self.max_matches < 1:
            raise ValueError(f"max_matches must be >= 1, got {self.max_matches}")
        if not 0.0 <= self.match_threshold <= 1.0:
            raise ValueError(f"match_threshold must be in [0, 1], got {self.match_threshold}")
        if self.ransac_threshold <= 0:
            raise ValueError(f"ransac_threshold must be > 0, got {self.ransac_threshold}")
        if not 0.0 <= self.min_inlier_ratio < 1.0:
            raise ValueError(f"min_inlier_ratio must be in [0, 1), got {self.min_inlier_ratio}")
        if self.match_rule not in ("auto", "mtd", "mnn"):
            raise ValueError(f"match_rule must be auto, mtd or mnn, got {self.match_rule!r}")
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {self.precision!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "PipelineConfig":
        """Build from a nested or dotted dict (YAML / ROS parameters); unknown keys raise."""
        values = _undot(values)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise ValueError(f"unknown pipeline option(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def resolved_model(self) -> str:
        """The concrete model "auto" stands for now (local weights lookup, no download)."""
        return resolve_model(self.model, {"weights": self.weights or None})

    def matcher_options(self, model: str | None = None) -> dict[str, Any]:
        """The options handed to the matcher factory, for the model ``model`` resolves to
        (each implementation takes only its own options). Pass an already resolved ``model``
        to skip the weights lookup."""
        model = model or self.resolved_model()
        opts: dict[str, Any] = {"max_matches": self.max_matches, "resolution": self.resolution}
        if model == "matchanything_eloftr":
            opts.update(
                backend=self.backend,
                device=self.device,
                precision=self.precision,
                weights=self.weights or None,
                match_threshold=self.match_threshold,
                match_rule=None if self.match_rule == "auto" else self.match_rule,
            )
        elif model == "xfeat":
            opts.update(device=self.device)
        return opts

    def matcher_key(self, model: str | None = None) -> tuple:
        """Options that require rebuilding the matcher when they change."""
        model = model or self.resolved_model()
        return (model, *sorted(self.matcher_options(model).items()))


def _undot(values: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if "." in key:
            head, rest = key.split(".", 1)
            out.setdefault(head, {})[rest] = value
        else:
            out[key] = value
    return {k: _undot(v) if isinstance(v, dict) and k == "thermal" else v for k, v in out.items()}


@dataclass
class PipelineResult:
    """Everything one pipeline run produced, for publishing, replay and evaluation."""

    matches: Matches  # all putative matches, original pixel coordinates
    geometry: GeometryResult  # robust fit; geometry.inliers indexes `matches`
    polarity: str  # thermal polarity actually used ("normal", "inverted" or "both")
    model: str  # matcher.describe()
    timings: dict[str, float]  # seconds per stage: preprocess, match, geometry, total
    visible_shape: tuple[int, int]
    thermal_shape: tuple[int, int]

    @property
    def ok(self) -> bool:
        return self.geometry.status == GeometryStatus.OK

    @property
    def num_matches(self) -> int:
        return len(self.matches)

    @property
    def num_inliers(self) -> int:
        return self.geometry.num_inliers

    @property
    def inlier_ratio(self) -> float:
        return self.num_inliers / max(1, self.num_matches)

    def summary(self) -> str:
        """One human-readable line (CLI, logs)."""
        g = self.geometry
        return (
            f"{g.mode}: {g.status.value}, {self.num_inliers}/{self.num_matches} inliers, "
            f"polarity {self.polarity}, {1000 * self.timings['total']:.0f} ms ({self.model})"
        )

    def to_dict(self, include_matches: bool = True) -> dict[str, Any]:
        """JSON-ready dict: geometry, counts, timings and (optionally) every match."""
        g = self.geometry

        def arr(x):
            return None if x is None else np.asarray(x, dtype=float).tolist()

        out: dict[str, Any] = {
            "model": self.model,
            "polarity": self.polarity,
            "visible_shape": list(self.visible_shape),
            "thermal_shape": list(self.thermal_shape),
            "num_matches": self.num_matches,
            "num_inliers": self.num_inliers,
            "inlier_ratio": self.inlier_ratio,
            "timings_s": dict(self.timings),
            "geometry": {
                "mode": g.mode,
                "status": g.status.value,
                "message": g.message,
                "matrix": arr(g.matrix),
                "R": arr(g.R),
                "t": arr(g.t),
                "covariance": arr(g.covariance),
            },
        }
        if include_matches:
            out["matches"] = {
                "kpts_visible": arr(self.matches.kpts0),
                "kpts_thermal": arr(self.matches.kpts1),
                "scores": arr(self.matches.scores),
                "inlier": np.asarray(g.inliers, dtype=bool).tolist(),
            }
        return out


class Pipeline:
    """Preprocess -> match -> geometry. Build once, call :meth:`process` per image pair."""

    def __init__(self, config: PipelineConfig | None = None, matcher: Matcher | None = None):
        self.config = config or PipelineConfig()
        model = self.config.resolved_model()  # one weights lookup per build
        self.matcher = matcher or create_matcher(self.config.model, **self.config.matcher_options(model))
        self._matcher_key = self.config.matcher_key(model)

    def reconfigure(self, config: PipelineConfig) -> None:
        """Apply a new config; the matcher is rebuilt only when a matcher option changed."""
        config.validate()
        model = config.resolved_model()
        key = config.matcher_key(model)
        if key != self._matcher_key:
            self.matcher = create_matcher(config.model, **config.matcher_options(model))
            self._matcher_key = key
        self.config = config

    def preprocess(self, visible: np.ndarray, thermal: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Visible -> uint8 BGR or gray (unchanged if already uint8); thermal -> uint8 gray."""
        visible = np.asarray(visible)
        if visible.dtype != np.uint8:
            # 16-bit / float visible cameras: a robust percentile stretch of their own range.
            # Never the thermal camera's fixed range, CLAHE or inversion: those describe the
            # thermal sensor, not this one.
            visible = normalize_thermal(visible, _VISIBLE_STRETCH)
        return visible, normalize_thermal(np.asarray(thermal), self.config.thermal)

    def process(
        self,
        visible: np.ndarray,
        thermal: np.ndarray,
        K0: np.ndarray | None = None,
        K1: np.ndarray | None = None,
    ) -> PipelineResult:
        """Match one visible/thermal pair. K0/K1 are the 3x3 intrinsics (needed for
        ``geometry='essential'``; a missing one yields status NO_INTRINSICS, not an exception)."""
        cfg = self.config
        t0 = time.perf_counter()
        vis, th = self.preprocess(visible, thermal)
        t1 = time.perf_counter()
        polarities = ("normal", "inverted") if cfg.polarity in ("auto", "both") else (cfg.polarity,)
        best: tuple[Matches, GeometryResult, str] | None = None
        t_match = t_geom = 0.0
        found: list[Matches] = []
        for polarity in polarities:
            img1 = 255 - th if polarity == "inverted" else th
            ta = time.perf_counter()
            found.append(self.matcher.match(vis, img1))
            t_match += time.perf_counter() - ta
        # "both" pools the matches of both polarities into one fit; otherwise each is fitted
        candidates = [(_pool(found), "both")] if cfg.polarity == "both" else list(zip(found, polarities))
        for matches, polarity in candidates:
            tb = time.perf_counter()
            geom = estimate_geometry(
                matches.kpts0,
                matches.kpts1,
                cfg.geometry,
                K0=K0,
                K1=K1,
                threshold_px=cfg.ransac_threshold,
                confidence=cfg.ransac_confidence,
                min_matches=cfg.min_matches,
                min_inlier_ratio=cfg.min_inlier_ratio,
            )
            t_geom += time.perf_counter() - tb
            if best is None or _better(geom, best[1], len(matches), len(best[0])):
                best = (matches, geom, polarity)
        assert best is not None
        matches, geom, polarity = best
        total = time.perf_counter() - t0
        return PipelineResult(
            matches=matches,
            geometry=geom,
            polarity=polarity,
            model=self.matcher.describe(),
            timings={"preprocess": t1 - t0, "match": t_match, "geometry": t_geom, "total": total},
            visible_shape=tuple(np.asarray(visible).shape[:2]),
            thermal_shape=tuple(np.asarray(thermal).shape[:2]),
        )


def _pool(found: list[Matches]) -> Matches:
    """The matches of several polarities as one set (polarity 'both')."""
    return Matches(
        np.concatenate([m.kpts0 for m in found]),
        np.concatenate([m.kpts1 for m in found]),
        np.concatenate([m.scores for m in found]),
        {"truncated": sum(int(m.info.get("truncated", 0)) for m in found)},  # ELoFTR: pairs K dropped
    )


def _better(a: GeometryResult, b: GeometryResult, na: int, nb: int) -> bool:
    """Polarity 'auto': prefer a successful fit, then more inliers, then more matches."""
    return (a.status == GeometryStatus.OK, a.num_inliers, na) > (
        b.status == GeometryStatus.OK,
        b.num_inliers,
        nb,
    )
