"""The ROS-free matching pipeline: preprocess -> match -> geometry -> one result object.

This is the single code path behind the CLI, the ROS node and bag replay. Image 0 is the
visible image, image 1 the thermal image.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .geometry import GeometryResult, GeometryStatus, apply_homography, estimate_geometry, warp_thermal_to_visible
from .geometry.pose import POSE_COVARIANCE_INFLATION, POSE_ROTATION_FLOOR_PX, with_rotation_sigma
from .geometry.quality import Quality, assess, polarity_disagreement_deg, rotation_sigma_deg
from .imaging.thermal import ThermalConfig, normalize_thermal
from .matching import ROMA_MODELS, Matcher, Matches, create_matcher, resolve_model
from .rig import RigCheck, RigConfig, RigEstimator

POLARITIES = ("normal", "inverted", "auto", "both")
_VISIBLE_STRETCH = ThermalConfig(mode="percentile")
GEOMETRY_MODES = ("homography", "affine", "fundamental", "essential", "none")


@dataclass
class PipelineConfig:
    """Everything that decides what the pipeline computes. Field names are the ROS parameter
    names (nested dataclasses become dotted names, e.g. ``thermal.mode``)."""

    # "auto", "xfeat", "sift", "matchanything_eloftr", "minima_splg", "minima_loftr", "matchanything_roma", "minima_roma"
    model: str = "auto"
    backend: str = "auto"  # ELoFTR, MINIMA SP+LG: "auto", "torch", "onnxruntime", "openvino", "tensorrt"
    device: str = "auto"  # "auto", "cpu", "cuda"
    precision: str = "fp32"  # "fp32" or "fp16" (GPU backends)
    weights: str = ""  # explicit weights path; empty = cache, then the offline default
    resolution: int = 640  # long side the matcher resizes to (ELoFTR: multiple of 32)
    # MatchAnything-ELoFTR's network input: "auto" (keep the aspect ratio, long side
    # `resolution`) or "WxH" (every pair stretched to W x H, multiples of 32: "640x480" is the
    # authors' Space, whatever the camera's aspect; docs/ELOFTR.md)
    network_size: str = "auto"
    max_matches: int = 2048  # top-K kept by the matcher (RoMa models: matches sampled from the dense warp)
    # RoMa models: the square sides of the coarse and the upsampled pass; 0 = the authors' 560 / 864
    # (smaller: faster, less accurate; docs/MODELS.md)
    roma_coarse_res: int = 0
    roma_upsample_res: int = 0
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
    # OK needs the verdict's quality score (calibrated p(right), geometry/quality.py) >= this,
    # else LOW_QUALITY; chosen for OK precision >= 0.97 on held-out data (docs/ACCURACY.md,
    # "Per-frame verdict"). 0 = off. Modes without a calibrated score (fundamental) are not gated.
    min_quality: float = 0.9
    # thermal polarity: "normal", "inverted", "auto" (fit each, keep the better fit) or "both"
    # (pool the matches of both into one fit: thermal contrast flips per object, not per image;
    # roadscene_dev SR@10 0.73 vs 0.66 for auto, docs/ACCURACY.md)
    polarity: str = "both"
    # homography / affine: match again with the thermal image warped by the first fit (near
    # identity: the matcher sees aligned views, so matches spread over the image), refit, and
    # keep the refit when its quality score is higher. Doubles the matching time.
    refine: bool = False
    thermal: ThermalConfig = field(default_factory=ThermalConfig)
    # rig mode: the rig's geometry estimated over frames, per-frame results gated by it (rig.py)
    rig: RigConfig = field(default_factory=RigConfig)

    def __post_init__(self) -> None:
        if isinstance(self.thermal, dict):
            self.thermal = ThermalConfig(**self.thermal)
        if isinstance(self.rig, dict):
            self.rig = RigConfig(**self.rig)
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
        if not 0.0 <= self.match_threshold < 1.0:  # 1.0 keeps nothing (the matchers refuse it)
            raise ValueError(f"match_threshold must be in [0, 1), got {self.match_threshold}")
        if self.ransac_threshold <= 0:
            raise ValueError(f"ransac_threshold must be > 0, got {self.ransac_threshold}")
        if not 0.0 <= self.min_inlier_ratio < 1.0:
            raise ValueError(f"min_inlier_ratio must be in [0, 1), got {self.min_inlier_ratio}")
        if not 0.0 <= self.min_quality <= 1.0:
            raise ValueError(f"min_quality must be in [0, 1], got {self.min_quality}")
        if self.match_rule not in ("auto", "mtd", "mnn"):
            raise ValueError(f"match_rule must be auto, mtd or mnn, got {self.match_rule!r}")
        if self.precision not in ("fp32", "fp16"):
            raise ValueError(f"precision must be fp32 or fp16, got {self.precision!r}")
        if self.roma_coarse_res or self.roma_upsample_res:
            from .models.roma.model import RomaSettings

            coarse = self.roma_coarse_res or RomaSettings.coarse_res
            up = self.roma_upsample_res or RomaSettings.upsample_res
            try:
                RomaSettings(coarse_res=coarse, upsample_res=up).check()
            except ValueError as exc:
                raise ValueError(f"roma_coarse_res / roma_upsample_res: {exc}") from None
        self.fixed_network_size()  # raises for a malformed value
        if self.network_size != "auto" and self.model not in ("auto", "matchanything_eloftr"):
            raise ValueError(f"network_size {self.network_size!r} applies to MatchAnything-ELoFTR only, "
                             f"not model {self.model!r}; use 'auto'")
        self.rig.validate()

    def fixed_network_size(self) -> tuple[int, int] | None:
        """``network_size`` as (h, w), or None for "auto"."""
        if self.network_size == "auto":
            return None
        parts = self.network_size.lower().split("x")
        try:
            w, h = (int(p) for p in parts)
        except ValueError:
            raise ValueError(f"network_size must be 'auto' or WxH (e.g. 640x480), got {self.network_size!r}") from None
        if not (64 <= w <= 4096 and 64 <= h <= 4096 and w % 32 == 0 and h % 32 == 0):
            raise ValueError(f"network_size {self.network_size!r}: width and height must be multiples of 32 in [64, 4096]")
        return h, w

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
        if model in ROMA_MODELS:
            # RoMa resizes to the authors' fixed sizes (no `resolution`), keeps no threshold
            # (`match_threshold`) and samples `max_matches` matches from its dense warp (the
            # authors: 5000 MatchAnything, 10000 MINIMA; docs/MODELS.md)
            return {"backend": self.backend, "device": self.device, "precision": self.precision,
                    "weights": self.weights or None, "num_matches": self.max_matches,
                    "coarse_res": self.roma_coarse_res or None, "upsample_res": self.roma_upsample_res or None}
        opts: dict[str, Any] = {"max_matches": self.max_matches, "resolution": self.resolution}
        if model == "matchanything_eloftr":
            opts.update(
                backend=self.backend,
                device=self.device,
                precision=self.precision,
                weights=self.weights or None,
                match_threshold=self.match_threshold,
                match_rule=None if self.match_rule == "auto" else self.match_rule,
                fixed_size=self.fixed_network_size(),
            )
        elif model in ("minima_splg", "minima_loftr"):
            opts.update(backend=self.backend, device=self.device, precision=self.precision,
                        weights=self.weights or None, match_threshold=self.match_threshold)
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
    return {k: _undot(v) if isinstance(v, dict) and k in ("thermal", "rig") else v for k, v in out.items()}


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
    # the verdict: calibrated score + its features (geometry/quality.py); score None when the
    # mode has no calibrated model or no fit was made
    quality: Quality = field(default_factory=lambda: Quality(None))
    rig: RigCheck | None = None  # rig mode: the gate's verdict on this frame

    @property
    def ok(self) -> bool:
        return self.geometry.status == GeometryStatus.OK and not (self.rig is not None and self.rig.mismatch)

    @property
    def status(self) -> str:
        """The geometry status, or RIG_MISMATCH for an OK fit the rig estimate rejects."""
        if self.geometry.ok and self.rig is not None and self.rig.mismatch:
            return self.rig.status
        return self.geometry.status.value

    @property
    def status_message(self) -> str:
        return self.rig.describe() if self.status != self.geometry.status.value else self.geometry.message

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
            f"{g.mode}: {self.status}, {self.num_inliers}/{self.num_matches} inliers, "
            + (f"quality {self.quality.score:.2f}, " if self.quality.score is not None else "")
            + f"polarity {self.polarity}, {1000 * self.timings['total']:.0f} ms ({self.model})"
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
            "quality": self.quality.to_dict(),
            "status": self.status,
            "rig": None if self.rig is None else {
                "status": self.rig.status, "state": self.rig.state, "distance": self.rig.distance,
                "distance_translation_deg": self.rig.distance_translation_deg, "threshold": self.rig.threshold,
            },
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
        _warn_unused_network_size(self.config, model)
        self.matcher = matcher or create_matcher(self.config.model, **self.config.matcher_options(model))
        self._matcher_key = self.config.matcher_key(model)
        self.rig: RigEstimator | None = None
        self.refresher = None  # the two-rate rig's refresh model (rig_refresh.py)
        self._refresh_key: tuple | None = None
        self._update_rig(self.config)

    def _update_rig(self, config: PipelineConfig) -> None:
        """Rig mode on/off; a new estimator (the estimate restarts) when what it pools changes;
        the two-rate rig's refresher (re)built when its model or the settings it runs with change."""
        c = config.rig
        key = (config.geometry, config.ransac_threshold, c.window, c.max_points)
        if not c.enabled:
            self.rig = None
        elif self.rig is None or key != self._rig_key:
            self.rig = RigEstimator(c, config.geometry, config.ransac_threshold)
        else:
            self.rig.config = c  # gate and alarm settings apply from the next frame
        self._rig_key = key
        refresh_key = None if self.rig is None or not c.refresh_model else (
            c.refresh_model, c.refresh_weights, c.refresh_every, c.refresh_wait, config.geometry,
            config.ransac_threshold, config.polarity, config.device, config.min_quality, repr(config.thermal))
        if refresh_key is None:
            self.refresher = None
        elif refresh_key != self._refresh_key or self.refresher is None:
            from .rig_refresh import RigRefresher

            self.refresher = RigRefresher(config, self.rig)
        else:
            self.refresher.rig = self.rig
        self._refresh_key = refresh_key

    def adopt_rig(self, other: "Pipeline") -> None:
        """Keep ``other``'s rig estimate (a rebuilt matcher does not change the rig), and its
        refresher when this one would run the same refresh model."""
        if self.rig is not None and other.rig is not None and self._rig_key == other._rig_key:
            other.rig.config = self.config.rig
            self.rig = other.rig
            if self.refresher is not None and other.refresher is not None and self._refresh_key == other._refresh_key:
                self.refresher = other.refresher
            if self.refresher is not None:
                self.refresher.rig = self.rig

    def rig_status(self) -> tuple[int, str, dict[str, Any]] | None:
        """(level, message, values) of the rig and the refresher, for diagnostics; None off rig mode."""
        if self.rig is None:
            return None
        level, message, values = self.rig.status()
        if self.refresher is not None:
            values.update(self.refresher.status())
        return level, message, values

    def reconfigure(self, config: PipelineConfig) -> None:
        """Apply a new config; the matcher is rebuilt only when a matcher option changed."""
        config.validate()
        model = config.resolved_model()
        key = config.matcher_key(model)
        if key != self._matcher_key:
            _warn_unused_network_size(config, model)
            self.matcher = create_matcher(config.model, **config.matcher_options(model))
            self._matcher_key = key
        self._update_rig(config)
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
        t_match = 0.0
        found: list[Matches] = []
        for polarity in polarities:
            img1 = 255 - th if polarity == "inverted" else th
            ta = time.perf_counter()
            found.append(self.matcher.match(vis, img1))
            t_match += time.perf_counter() - ta
        tb = time.perf_counter()
        vis_wh = (np.asarray(visible).shape[1], np.asarray(visible).shape[0])
        th_wh = (np.asarray(thermal).shape[1], np.asarray(thermal).shape[0])
        matches, geom, polarity, quality = self.fit(found, polarities, vis_wh, th_wh, K0, K1)
        t_geom = time.perf_counter() - tb
        refine_s = None
        if cfg.refine and cfg.geometry in ("homography", "affine"):
            tr = time.perf_counter()
            refined = self.refine(vis, th, geom, quality, polarities, vis_wh, th_wh)
            if refined is not None:
                matches, geom, polarity, quality = refined
            refine_s = time.perf_counter() - tr
        total = time.perf_counter() - t0
        result = PipelineResult(
            matches=matches,
            geometry=geom,
            polarity=polarity,
            model=self.matcher.describe(),
            timings={"preprocess": t1 - t0, "match": t_match, "geometry": t_geom, "total": total,
                     **({} if refine_s is None else {"refine": refine_s})},
            visible_shape=tuple(np.asarray(visible).shape[:2]),
            thermal_shape=tuple(np.asarray(thermal).shape[:2]),
            quality=quality,
        )
        if self.rig is not None:  # the gate: a separate step after the per-frame verdict
            tr = time.perf_counter()
            result.rig = self.rig.update(result, K0, K1, pool=not cfg.rig.refresh_only)
            result.timings["rig"] = time.perf_counter() - tr
            result.timings["total"] += result.timings["rig"]
            if self.refresher is not None:  # the two-rate rig: the slow model's turn, in the background
                tr = time.perf_counter()
                self.refresher.offer(visible, thermal, K0, K1)
                if cfg.rig.refresh_wait:
                    result.timings["rig_refresh"] = time.perf_counter() - tr
        return result

    def refine(
        self,
        vis: np.ndarray,
        th: np.ndarray,
        first: GeometryResult,
        first_quality: Quality,
        polarities: tuple[str, ...],
        visible_wh: tuple[int, int],
        thermal_wh: tuple[int, int],
    ) -> tuple[Matches, GeometryResult, str, Quality] | None:
        """The refinement pass (``refine``): match again with the thermal image warped by the
        first fit's model (withheld or not, :meth:`match_refined`), fit as in :meth:`fit`, and
        return that fit when its quality score beats the first one's, else None (keep the first)."""
        H0 = first.matrix if first.matrix is not None else first.rejected_matrix
        if H0 is None:
            return None
        found = self.match_refined(vis, th, H0, polarities, visible_wh, thermal_wh)
        refined = self.fit(found, polarities, visible_wh, thermal_wh, refined=True)
        return refined if refined_is_better(first_quality, refined[3]) else None

    def match_refined(
        self,
        vis: np.ndarray,
        th: np.ndarray,
        H0: np.ndarray,
        polarities: tuple[str, ...],
        visible_wh: tuple[int, int],
        thermal_wh: tuple[int, int],
    ) -> list[Matches]:
        """Matches of ``vis`` against the preprocessed thermal image ``th`` warped into the
        visible frame by ``H0`` (visible px -> thermal px), per polarity, with the thermal
        points mapped back to thermal pixels (those that land outside the thermal image dropped)."""
        w, h = int(visible_wh[0]), int(visible_wh[1])
        # the preprocessed thermal image on the visible grid; replicated borders: a black border
        # would be a strong edge that exists in neither camera
        warped = warp_thermal_to_visible(th, H0, (h, w), replicate_border=True)
        found = []
        for polarity in polarities:
            m = self.matcher.match(vis, 255 - warped if polarity == "inverted" else warped)
            k1 = apply_homography(H0, m.kpts1)
            keep = (np.isfinite(k1).all(1) & (k1[:, 0] >= -0.5) & (k1[:, 1] >= -0.5)
                    & (k1[:, 0] <= thermal_wh[0] - 0.5) & (k1[:, 1] <= thermal_wh[1] - 0.5))
            found.append(Matches(np.asarray(m.kpts0)[keep], k1[keep].astype(np.float32), np.asarray(m.scores)[keep]))
        return found

    def fit(
        self,
        found: list[Matches],
        polarities: tuple[str, ...],
        visible_wh: tuple[int, int],
        thermal_wh: tuple[int, int],
        K0: np.ndarray | None = None,
        K1: np.ndarray | None = None,
        refined: bool = False,
    ) -> tuple[Matches, GeometryResult, str, Quality]:
        """Geometry and verdict for the matches of each polarity (``found[i]`` for
        ``polarities[i]``): the step after matching, also run by scripts/verdict_study.py on
        cached matches. ``refined``: matches of the refinement pass (scored with their own
        coefficients, quality.family_of). Returns (matches, geometry, polarity used, quality); an OK fit whose
        quality score is below ``min_quality`` comes back as LOW_QUALITY. An essential fit's
        rotation covariance is replaced by the verdict's rotation error model."""
        cfg = self.config

        def fit_one(m: Matches) -> GeometryResult:
            return estimate_geometry(
                m.kpts0,
                m.kpts1,
                cfg.geometry,
                K0=K0,
                K1=K1,
                threshold_px=cfg.ransac_threshold,
                confidence=cfg.ransac_confidence,
                min_matches=cfg.min_matches,
                min_inlier_ratio=cfg.min_inlier_ratio,
                covariance_inflation=POSE_COVARIANCE_INFLATION,
                rotation_floor_px=POSE_ROTATION_FLOOR_PX,
            )

        # "both" pools the matches of both polarities into one fit; otherwise each is fitted
        if cfg.polarity == "both":
            matches, polarity = _pool(found), "both"
            geom = fit_one(matches)
        else:
            fits = [(m, fit_one(m), p) for m, p in zip(found, polarities)]
            matches, geom, polarity = fits[0]
            for m, g, p in fits[1:]:
                if _better(g, geom, len(m), len(matches)):
                    matches, geom, polarity = m, g, p
        angle = None
        if geom.ok and cfg.geometry == "essential" and cfg.polarity == "both":
            # how far each polarity's matches alone move the rotation: the pose's stability
            angle = polarity_disagreement_deg(geom, [fit_one(m) for m in found])
        quality = assess(geom, matches.kpts0, matches.kpts1, visible_wh, thermal_wh, refined, angle) if geom.ok else Quality(None)
        if geom.ok and geom.mode == "essential" and quality.score is not None:
            # the rotation covariance is the verdict's error model (quality.ROTATION_SIGMA): the
            # first-order one does not predict the error of cross-modal matches
            sigma = rotation_sigma_deg(quality.features)
            quality.features["rotation_sigma_deg"] = sigma
            geom = with_rotation_sigma(geom, math.radians(sigma))
        if geom.ok and quality.score is not None and quality.score < cfg.min_quality:
            geom = _low_quality(geom, f"quality {quality.score:.2f} < min_quality {cfg.min_quality:g}")
        return matches, geom, polarity, quality


def _warn_unused_network_size(config: PipelineConfig, model: str) -> None:
    if config.network_size != "auto" and model != "matchanything_eloftr":
        logging.getLogger(__name__).warning(
            "network_size %s applies to MatchAnything-ELoFTR only; model auto chose %s, which resizes to its "
            "long side (resolution %d)", config.network_size, model, config.resolution)


def refined_is_better(first: Quality, refined: Quality) -> bool:
    """Keep the refinement pass's fit only when its quality score beats the first fit's (a first
    fit without a score loses to any scored refit). Marks the kept one (feature ``refined``)."""
    if refined.score is None or (first.score is not None and refined.score <= first.score):
        return False
    refined.features["refined"] = 1.0
    return True


def _pool(found: list[Matches]) -> Matches:
    """The matches of several polarities as one set (polarity 'both')."""
    return Matches(
        np.concatenate([m.kpts0 for m in found]),
        np.concatenate([m.kpts1 for m in found]),
        np.concatenate([m.scores for m in found]),
        {"truncated": sum(int(m.info.get("truncated", 0)) for m in found)},  # ELoFTR: pairs K dropped
    )


def _low_quality(geom: GeometryResult, reason: str) -> GeometryResult:
    """An OK fit the verdict does not trust: no model (as every non-OK status), inliers kept."""
    return GeometryResult(
        mode=geom.mode,
        status=GeometryStatus.LOW_QUALITY,
        message=f"{reason} ({geom.message})",
        matrix=None,
        inliers=geom.inliers,
        rms_residual_px=geom.rms_residual_px,
        translation_observable=geom.translation_observable,
        rejected_matrix=geom.matrix,
    )


def _better(a: GeometryResult, b: GeometryResult, na: int, nb: int) -> bool:
    """Polarity 'auto': prefer a successful fit, then more inliers, then more matches."""
    return (a.status == GeometryStatus.OK, a.num_inliers, na) > (
        b.status == GeometryStatus.OK,
        b.num_inliers,
        nb,
    )
