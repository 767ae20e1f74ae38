"""Homography accuracy protocol on aligned visible/thermal pairs.

Each pair of a folder (``visible/NAME.*`` + ``thermal/NAME.*``, pixel-aligned) becomes a test
case: the thermal image is warped by a homography drawn from a per-pair seed (rotation +-20 deg,
scale 0.8-1.2, translation <= 10 % of the size, corner jitter <= 8 %), the pipeline matches the
visible image against the warped thermal image and fits a homography, and the fit is scored
against the known warp (mean corner error) and so is every putative match (reprojection error).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from ..imaging.limits import check_image_file
from .metrics import corner_error, match_precision, pose_auc, success_rates

__all__ = [
    "AlignedPair",
    "PairResult",
    "THRESHOLDS_PX",
    "evaluate_pair",
    "load_aligned_pairs",
    "random_homography",
    "run_protocol",
    "summarize",
    "warp_pair",
]

THRESHOLDS_PX = (3.0, 5.0, 10.0)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class AlignedPair:
    """One pre-registered pair: the same pixel shows the same scene point in both images."""

    name: str
    visible: np.ndarray  # (H, W, 3) uint8 BGR or (H, W) uint8
    thermal: np.ndarray  # (H, W) uint8 / uint16


def random_homography(
    seed: int,
    width: int,
    height: int,
    *,
    max_rotation_deg: float = 20.0,
    scale_range: tuple[float, float] = (0.8, 1.2),
    max_translation: float = 0.10,
    max_jitter: float = 0.08,
) -> np.ndarray:
    """The protocol's warp for one pair, deterministic in ``seed``: a rotation and scale about
    the image centre, a translation (fraction of the size) and a perspective jitter of the four
    corners (fraction of the size). Returns 3x3 float64 mapping original pixels to warped pixels
    (use it with ``cv2.warpPerspective(thermal, H, (width, height))``)."""
    if width < 2 or height < 2:
        raise ValueError(f"random_homography: image size must be at least 2x2, got {width}x{height}")
    rng = np.random.default_rng(seed)
    angle = np.deg2rad(rng.uniform(-max_rotation_deg, max_rotation_deg))
    scale = rng.uniform(*scale_range)
    shift = rng.uniform(-max_translation, max_translation, 2) * (width, height)
    jitter = rng.uniform(-max_jitter, max_jitter, (4, 2)) * (width, height)
    centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    c, s = np.cos(angle) * scale, np.sin(angle) * scale
    similarity = np.array([[c, -s], [s, c]])
    corners = np.array([[0, 0], [width - 1, 0], [width - 1, height - 1], [0, height - 1]], np.float64)
    moved = (corners - centre) @ similarity.T + centre + shift + jitter
    H = cv2.getPerspectiveTransform(corners.astype(np.float32), moved.astype(np.float32)).astype(np.float64)
    return H / H[2, 2]


def _find_image(folder: Path, stem: str) -> Path | None:
    for suffix in IMAGE_SUFFIXES:
        for candidate in (folder / f"{stem}{suffix}", folder / f"{stem}{suffix.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def load_aligned_pairs(directory: str | Path, limit: int | None = None) -> list[AlignedPair]:
    """Read ``directory/visible/NAME.*`` and ``directory/thermal/NAME.*`` pairs, sorted by NAME.

    Visible images come back as stored (BGR or gray uint8); thermal images as single-channel
    (colour-coded 8-bit files are reduced to gray). Names present in only one folder are
    skipped. Raises ValueError when the folder layout is wrong or holds no pairs."""
    root = Path(directory)
    vis_dir, th_dir = root / "visible", root / "thermal"
    if not vis_dir.is_dir() or not th_dir.is_dir():
        raise ValueError(
            f"{root}: expected sub-folders visible/ and thermal/ holding pixel-aligned images with "
            "the same file names"
        )
    stems = sorted(p.stem for p in vis_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    pairs: list[AlignedPair] = []
    for stem in stems:
        th_path = _find_image(th_dir, stem)
        vis_path = _find_image(vis_dir, stem)
        if th_path is None or vis_path is None:
            continue
        for path in (vis_path, th_path):  # before decoding: a 389 KB PNG can be 20000x20000
            if (problem := check_image_file(path)) is not None:
                raise ValueError(f"{path}: {problem[1]}")
        visible = cv2.imread(str(vis_path), cv2.IMREAD_UNCHANGED)
        thermal = cv2.imread(str(th_path), cv2.IMREAD_UNCHANGED)
        if visible is None or thermal is None:
            raise ValueError(f"cannot decode {vis_path if visible is None else th_path}")
        if visible.ndim == 3 and visible.shape[2] == 4:
            visible = cv2.cvtColor(visible, cv2.COLOR_BGRA2BGR)
        if thermal.ndim == 3:
            thermal = cv2.cvtColor(thermal[:, :, :3], cv2.COLOR_BGR2GRAY)
        if visible.shape[:2] != thermal.shape[:2]:
            raise ValueError(
                f"pair {stem}: visible {visible.shape[1]}x{visible.shape[0]} and thermal "
                f"{thermal.shape[1]}x{thermal.shape[0]} differ in size; aligned pairs must match"
            )
        pairs.append(AlignedPair(stem, visible, thermal))
        if limit is not None and len(pairs) >= limit:
            break
    if not pairs:
        raise ValueError(f"{root}: no pairs found (same file name in visible/ and thermal/)")
    return pairs


def warp_pair(pair: AlignedPair, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The protocol's test case for a pair: (warped thermal, H visible -> warped thermal)."""
    h, w = pair.visible.shape[:2]
    H = random_homography(seed, w, h)
    warped = cv2.warpPerspective(pair.thermal, H, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return warped, H


@dataclass
class PairResult:
    """Scores of one test case."""

    name: str
    seed: int
    corner_error_px: float  # of the fitted homography, verdict ignored; inf when none was fitted
    num_matches: int
    num_inliers: int  # geometric (MAGSAC++) inliers
    gt_inlier_ratio: float  # fraction of matches within 3 px of the ground truth
    polarity: str
    time_s: float  # wall time of Pipeline.process
    cpu_time_s: float  # CPU time of this process during Pipeline.process (all threads)
    status: str
    quality: float | None = None  # the verdict's score (geometry/quality.py)


def evaluate_pair(pipeline, pair: AlignedPair, seed: int, gt_px: float = 3.0) -> PairResult:
    """Warp, match through ``pipeline`` (a matchanything_ros.pipeline.Pipeline with homography
    geometry) and score one pair."""
    warped, H = warp_pair(pair, seed)
    t0, c0 = time.perf_counter(), time.process_time()
    result = pipeline.process(pair.visible, warped)
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
    h, w = pair.visible.shape[:2]
    g = result.geometry
    return PairResult(
        name=pair.name,
        seed=seed,
        # the fit's own accuracy, also when the verdict withheld it (LOW_QUALITY): SR@t measures
        # the matcher + fit, OK precision / coverage (summarize) the verdict
        corner_error_px=corner_error(g.matrix if result.ok else g.rejected_matrix, H, w, h),
        num_matches=result.num_matches,
        num_inliers=result.num_inliers,
        gt_inlier_ratio=match_precision(result.matches.kpts0, result.matches.kpts1, H, gt_px),
        polarity=result.polarity,
        time_s=elapsed,
        cpu_time_s=cpu,
        status=g.status.value,
        quality=result.quality.score,
    )


def run_protocol(
    pipeline,
    pairs: Sequence[AlignedPair],
    seed: int = 0,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> list[PairResult]:
    """Evaluate every pair; pair i uses seed ``seed + i`` (as ``make-bag --folder`` does)."""
    items = list(enumerate(pairs))
    iterator = progress(items) if progress is not None else items
    return [evaluate_pair(pipeline, pair, seed + i) for i, pair in iterator]


def summarize(results: Sequence[PairResult], thresholds: Sequence[float] = THRESHOLDS_PX) -> dict:
    """Aggregate scores: SR@t (success rate of the mean corner error of every fit, the verdict
    ignored), AUC@t, the verdict's coverage (share of pairs OK) and OK precision (share of OK
    pairs within 10 px), median matches, mean ground-truth inlier ratio, mean/median wall time
    and mean CPU time per pair."""
    errors = [r.corner_error_px for r in results]
    sr = success_rates(errors, thresholds)
    auc = pose_auc(errors, thresholds)
    times = np.array([r.time_s for r in results]) if results else np.zeros(1)
    ok = [r for r in results if r.status == "OK"]
    return {
        "pairs": len(results),
        "coverage": len(ok) / len(results) if results else 0.0,
        "ok_precision": sum(r.corner_error_px <= 10.0 for r in ok) / len(ok) if ok else float("nan"),
        **{f"SR@{t:g}": sr[float(t)] for t in thresholds},
        **{f"AUC@{t:g}": auc[float(t)] for t in thresholds},
        "median_corner_error_px": float(np.median(errors)) if results else float("inf"),
        "median_matches": float(np.median([r.num_matches for r in results])) if results else 0.0,
        "gt_inlier_ratio": float(np.mean([r.gt_inlier_ratio for r in results])) if results else 0.0,
        "inverted_fraction": float(np.mean([r.polarity == "inverted" for r in results])) if results else 0.0,
        "mean_time_s": float(times.mean()),
        "median_time_s": float(np.median(times)),
        # CPU seconds are what a pair costs on an otherwise idle machine (with one torch
        # thread); wall seconds include waiting for a shared CPU.
        "mean_cpu_time_s": float(np.mean([r.cpu_time_s for r in results])) if results else 0.0,
    }
