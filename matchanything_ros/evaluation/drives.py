"""Group RoadScene-style pairs into drives, split them, and put confidence intervals on rates.

Frames of one drive look alike (same road, light, weather, camera settings), so a figure fitted
on some frames and checked on their neighbours is not a figure on unseen data. Pairs are named
after their FLIR source frame (``FLIR_04071``, ``FLIR_video_00843``): a drive is a run of frame
numbers of one source with gaps of at most ``gap``. Fitting happens on one set of drives and
figures are reported on the other; intervals resample whole drives (cluster bootstrap).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

#: frame-number gap that starts a new drive (RoadScene's shared subsets are every fourth pair,
#: so neighbours in one drive are 2-150 frames apart; drives are hundreds apart)
DRIVE_GAP = 150
_NAME = re.compile(r"^(.*?)(\d+)$")


def _source_and_number(name: str) -> tuple[str, int]:
    m = _NAME.match(name)
    if not m:
        return name, 0
    return m.group(1), int(m.group(2))


def drives(names: Sequence[str], gap: int = DRIVE_GAP) -> dict[str, str]:
    """{name: drive id} where a drive is a run of one source's frame numbers with gaps <= gap.
    The id names the drive's first frame (``FLIR_04071``). A name without a number is its own drive."""
    out: dict[str, str] = {}
    prev: tuple[str, int] | None = None
    current = ""
    for name in sorted(set(names), key=_source_and_number):
        src, num = _source_and_number(name)
        if prev is None or src != prev[0] or num - prev[1] > gap or not _NAME.match(name):
            current = name
        out[name] = current
        prev = (src, num)
    return out


def split_by_drive(names: Sequence[str], gap: int = DRIVE_GAP) -> tuple[set[str], set[str]]:
    """(fit, check): two sets of names, whole drives each, with about half the pairs in each.
    Deterministic: drives by size (largest first, then id), each to the set with fewer pairs."""
    by_drive: dict[str, list[str]] = {}
    for name, d in drives(names, gap).items():
        by_drive.setdefault(d, []).append(name)
    sets: tuple[set[str], set[str]] = (set(), set())
    for d in sorted(by_drive, key=lambda d: (-len(by_drive[d]), d)):
        sets[0 if len(sets[0]) <= len(sets[1]) else 1].update(by_drive[d])
    return sets


def cluster_bootstrap(
    items: Sequence,
    cluster: Callable[[object], str],
    stat: Callable[[list], float],
    reps: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``stat`` over resamples of whole clusters (drives) with replacement.
    Resamples where ``stat`` is undefined (nan) are left out."""
    groups: dict[str, list] = {}
    for it in items:
        groups.setdefault(cluster(it), []).append(it)
    keys = sorted(groups)
    if not keys:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(reps):
        pick = rng.integers(0, len(keys), len(keys))
        v = stat([it for k in pick for it in groups[keys[k]]])
        if v == v:
            vals.append(v)
    if not vals:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0
    return float(np.quantile(vals, a)), float(np.quantile(vals, 1.0 - a))
