"""Thermal (and other high-bit-depth) image normalisation to 8-bit for the matcher.

Radiometric thermal cameras deliver 16-bit counts (or float temperatures) whose useful range is
a small, scene-dependent slice of the container. :func:`normalize_thermal` maps that slice to
0..255 with one of three range rules, then optionally applies CLAHE (OpenCV) and inversion:

* ``percentile`` (default): the ``low_percentile`` / ``high_percentile`` of the valid pixels map
  to 0 / 255, so a few hot outliers (sun, exhaust, dead pixels) do not flatten the image;
* ``fixed``: ``fixed_min`` / ``fixed_max`` in raw units (calibrated cameras, stable contrast
  between frames);
* ``minmax``: the image's own minimum / maximum.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

THERMAL_MODES = ("percentile", "fixed", "minmax")


@dataclass
class ThermalConfig:
    """How a thermal frame becomes uint8. Field names are ROS parameter names (``thermal.*``)."""

    mode: str = "percentile"  # one of THERMAL_MODES
    low_percentile: float = 1.0  # percentile mode: maps to 0
    high_percentile: float = 99.0  # percentile mode: maps to 255
    fixed_min: float = 0.0  # fixed mode: raw value mapped to 0
    fixed_max: float = 65535.0  # fixed mode: raw value mapped to 255
    clahe: bool = False  # contrast-limited adaptive histogram equalisation after the stretch
    clahe_clip_limit: float = 2.0
    clahe_tile_grid: int = 8  # tiles per side
    invert: bool = False  # hot = dark instead of hot = bright

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the bad field and the allowed range."""
        if self.mode not in THERMAL_MODES:
            raise ValueError(f"thermal.mode must be one of {THERMAL_MODES}, got {self.mode!r}")
        for name in ("low_percentile", "high_percentile", "fixed_min", "fixed_max", "clahe_clip_limit"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise ValueError(f"thermal.{name} must be a number, got {value!r}")
            if not math.isfinite(float(value)):
                raise ValueError(f"thermal.{name} must be finite, got {value!r}")
        if not 0.0 <= self.low_percentile < self.high_percentile <= 100.0:
            raise ValueError(
                "thermal percentiles must satisfy 0 <= low_percentile < high_percentile <= 100, got "
                f"low_percentile={self.low_percentile}, high_percentile={self.high_percentile}"
            )
        if not self.fixed_min < self.fixed_max:
            raise ValueError(
                f"thermal.fixed_min ({self.fixed_min}) must be smaller than thermal.fixed_max ({self.fixed_max})"
            )
        if not self.clahe_clip_limit > 0:
            raise ValueError(f"thermal.clahe_clip_limit must be > 0, got {self.clahe_clip_limit}")
        tiles = self.clahe_tile_grid
        if isinstance(tiles, bool) or not isinstance(tiles, (int, np.integer)) or not 1 <= tiles <= 64:
            raise ValueError(f"thermal.clahe_tile_grid must be an integer in [1, 64], got {tiles!r}")
        for name in ("clahe", "invert"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"thermal.{name} must be true or false, got {getattr(self, name)!r}")


def _single_channel(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] in (3, 4):
        # A high-bit-depth colour frame (e.g. a 16-bit visible camera): use BGR luma weights.
        weights = np.array([0.114, 0.587, 0.299], dtype=np.float64)
        return image[:, :, :3].astype(np.float64) @ weights
    if image.ndim != 2:
        raise ValueError(f"normalize_thermal expects an (H, W) image, got shape {image.shape}")
    return image


def _percentiles(values: np.ndarray, dtype: np.dtype, qs: tuple[float, float]) -> tuple[float, float]:
    """np.percentile (linear interpolation) of the values; for 8/16-bit unsigned images via a
    histogram, which gives the same numbers several times faster than sorting."""
    if dtype not in (np.uint8, np.uint16):
        lo, hi = np.percentile(values, qs)
        return float(lo), float(hi)
    counts = np.bincount(values.ravel(), minlength=1)
    cdf = np.cumsum(counts)
    n = int(cdf[-1])
    out = []
    for q in qs:
        rank = q / 100.0 * (n - 1)
        below, frac = int(np.floor(rank)), rank - np.floor(rank)
        # value of the k-th smallest element (0-based) = first bin whose cumulative count > k
        a, b = np.searchsorted(cdf, [below, min(below + 1, n - 1)], side="right")
        out.append(float(a + frac * (b - a)))
    return out[0], out[1]


def normalize_thermal(image: np.ndarray, config: ThermalConfig | None = None) -> np.ndarray:
    """Stretch a thermal frame (uint8, uint16, int16, float) to an (H, W) uint8 image.

    The range rule is ``config.mode`` (see the module docstring). If the range is empty (a
    constant image, or percentiles that coincide), pixels above it become 255 and the rest 0,
    so a constant image becomes all zeros instead of dividing by zero. Non-finite float pixels
    (NaN, inf: no reading) are ignored when computing the range and come out as 0, after
    CLAHE and inversion. (H, W, 1) is accepted; (H, W, 3|4) is reduced to luma first.
    """
    cfg = config or ThermalConfig()
    image = np.asarray(image)
    if image.size == 0:
        raise ValueError(f"normalize_thermal got an empty image of shape {image.shape}")
    if image.dtype == np.bool_ or not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"normalize_thermal expects a numeric image, got dtype {image.dtype}")
    img = _single_channel(image)
    # float32 is exact for 16-bit counts; wider types keep float64.
    work = img.astype(np.float32 if img.dtype.itemsize <= 2 else np.float64, copy=False)
    valid = None
    if np.issubdtype(work.dtype, np.floating) and not np.isfinite(work).all():
        valid = np.isfinite(work)
    values = work if valid is None else work[valid]

    if values.size == 0:
        lo = hi = 0.0
    elif cfg.mode == "fixed":
        lo, hi = float(cfg.fixed_min), float(cfg.fixed_max)
    elif cfg.mode == "minmax":
        lo, hi = float(values.min()), float(values.max())
    else:
        # integer images have no invalid pixels: hand the raw counts to the histogram path
        src = img if img.dtype in (np.uint8, np.uint16) else values
        lo, hi = _percentiles(src, img.dtype, (cfg.low_percentile, cfg.high_percentile))

    if valid is not None:
        work = np.where(valid, work, lo)
    if hi > lo:
        scaled = (work - lo) * (255.0 / (hi - lo))
        out = np.clip(scaled + 0.5, 0, 255).astype(np.uint8)
    else:
        out = np.where(work > lo, 255, 0).astype(np.uint8)

    if cfg.clahe:
        import cv2

        tiles = int(cfg.clahe_tile_grid)
        out = cv2.createCLAHE(clipLimit=float(cfg.clahe_clip_limit), tileGridSize=(tiles, tiles)).apply(out)
    if cfg.invert:
        out = 255 - out
    if valid is not None:
        out[~valid] = 0
    return np.ascontiguousarray(out)
