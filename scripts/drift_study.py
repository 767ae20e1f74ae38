#!/usr/bin/env python3
"""Calibrate the rig drift alarm on some drives and report it on others.

  .venv/bin/python scripts/drift_study.py [--seeds 0,1] [--angles 0,1,2,3] [--change-frame 30]

Change sequences as ``make-bag --folder DIR --rig-change-frame F --rig-change-deg A`` makes them
(matchanything_ros.bags.make_bag.folder_frames: every pair of a set warped by one rig
homography, the thermal camera rolled by A degrees from frame F on), from the RoadScene pairs
of each half of the split by drive (evaluation.drives.split_by_drive over roadscene_dev +
roadscene_calib): one sequence per rig seed and angle (angle 0: no change, where any alarm is
a false one). The per-frame pipeline results (the
defaults) are computed once per sequence; the rig estimator (matchanything_ros.rig) then replays
them for every alarm setting of the grid. Per setting: the WARN and ERROR delays after the
change (frames), and alarms before it (false alarms). The setting is chosen on the fit drives
(no false alarm, then the smallest ERROR delay, then WARN delay) and reported on the check
drives, beside the current defaults. docs/ACCURACY.md, "Rig mode".
"""
from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

GRID = {"recent": (4, 6, 8), "alarm_frames": (1, 2, 3)}


def _set_folders(data: list[Path], tmp: Path) -> dict[str, Path]:
    """{"fit": folder, "check": folder}: symlinks to each half's pairs, in the layout
    folder_frames reads (visible/, thermal/)."""
    from matchanything_ros.evaluation.drives import split_by_drive

    files = {p.stem: (p, d / "thermal" / p.name) for d in data for p in sorted((d / "visible").iterdir())}
    fit, check = split_by_drive(sorted(files))
    out = {}
    for label, names in (("fit", fit), ("check", check)):
        folder = tmp / label
        for sub in ("visible", "thermal"):
            (folder / sub).mkdir(parents=True)
        for name in sorted(names):
            vis, th = files[name]
            (folder / "visible" / vis.name).symlink_to(vis.resolve())
            (folder / "thermal" / th.name).symlink_to(th.resolve())
        out[label] = folder
    return out


def _results(pipe, folder: Path, seed: int, angle: float, change: int) -> list:
    """Per-frame results of ``pipe`` (the defaults, rig off) on one change sequence."""
    from matchanything_ros.bags.make_bag import RigSequence, folder_frames

    rig = RigSequence(change_frame=change, change_deg=angle)
    return [pipe.process(f.visible, f.thermal, f.K0, f.K1) for f in folder_frames(folder, seed=seed, rig=rig)]


def _delays(results: list, config, change: int | None) -> tuple[int | None, int | None, bool]:
    """(frames to the first WARN at or after the change, to the first ERROR, any alarm before
    it); ``change`` None: a sequence without a change, where any alarm is a false one."""
    from matchanything_ros.rig import RigEstimator

    est = RigEstimator(config, "homography", 3.0)
    levels = [est.update(r).level for r in results]
    if change is None:
        return None, None, any(lv >= 1 for lv in levels)
    warn = next((i - change for i, lv in enumerate(levels) if i >= change and lv >= 1), None)
    error = next((i - change for i, lv in enumerate(levels) if i >= change and lv >= 2), None)
    return warn, error, any(lv >= 1 for lv in levels[:change])


def _score(rows: list[tuple], angles: list[float]) -> tuple:
    """Order of settings on the fit drives: fewest false alarms, fewest missed ERRORs, then the
    largest ERROR delay, then the largest WARN delay (a miss counts as the sequence's length)."""
    miss = 1000
    false_alarms = sum(fa for _, _, fa in rows)
    changed = [r for r, a in zip(rows, angles) if a > 0]
    errors = [e if e is not None else miss for _, e, _ in changed]
    warns = [w if w is not None else miss for w, _, _ in changed]
    return false_alarms, sum(e == miss for e in errors), max(errors), max(warns), float(np.mean(errors))


def _fmt(rows: list[tuple], angles: list[float]) -> str:
    def d(v):
        return "-" if v is None else str(v)

    changed = [r for r, a in zip(rows, angles) if a > 0]
    warns = [w for w, _, _ in changed]
    errors = [e for _, e, _ in changed]
    return (f"WARN after {', '.join(map(d, warns))} frames; ERROR after {', '.join(map(d, errors))}; "
            f"sequences with a false alarm {sum(fa for _, _, fa in rows)} of {len(rows)}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="../shared/data/roadscene_dev,../shared/data/roadscene_calib")
    p.add_argument("--seeds", default="0,1", help="rig homography seeds (one sequence per seed and angle)")
    p.add_argument("--angles", default="0,1,2,3", help="roll of the thermal camera at the change (deg; 0: no change)")
    p.add_argument("--change-frame", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    import torch

    from matchanything_ros.commands.accuracy import _find_data, machine_note
    from matchanything_ros.pipeline import Pipeline, PipelineConfig
    from matchanything_ros.rig import RigConfig

    torch.set_num_threads(args.threads)
    seeds = [int(s) for s in args.seeds.split(",")]
    angles = [float(a) for a in args.angles.split(",")]
    data = [_find_data(d) for d in args.data.split(",") if d.strip()]
    print(f"machine: {machine_note()}")
    t0 = time.perf_counter()
    pipe = Pipeline(PipelineConfig())
    with tempfile.TemporaryDirectory() as tmp:
        folders = _set_folders(data, Path(tmp))
        seqs = {label: [(s, a, _results(pipe, folder, s, a, args.change_frame))
                        for s, a in itertools.product(seeds, angles)] for label, folder in folders.items()}
    print(f"{sum(len(v) for v in seqs.values())} sequences matched in {time.perf_counter() - t0:.0f} s "
          f"(change at frame {args.change_frame}; seeds {seeds}; angles {angles} deg)")
    default = RigConfig(enabled=True)
    settings = [dataclasses.replace(default, **dict(zip(GRID, vals))) for vals in itertools.product(*GRID.values())]
    angles_of = [a for _, a, _ in seqs["fit"]]  # the same order in both sets
    table = {label: {i: [_delays(r, cfg, args.change_frame if a > 0 else None) for _, a, r in seqs[label]]
                     for i, cfg in enumerate(settings)} for label in seqs}
    best = min(range(len(settings)), key=lambda i: _score(table["fit"][i], angles_of))
    current = next(i for i, c in enumerate(settings) if all(getattr(c, k) == getattr(default, k) for k in GRID))
    print("\nsequences with a change, in order: " + ", ".join(f"seed {s} {a:g} deg" for s, a, _ in seqs["fit"] if a > 0))
    for name, i in (("current defaults", current), ("chosen on the fit drives", best)):
        cfg = settings[i]
        print(f"\n{name}: " + ", ".join(f"{k}={getattr(cfg, k)}" for k in GRID))
        for label in ("fit", "check"):
            print(f"  {label} drives: {_fmt(table[label][i], angles_of)}")
    print("\nevery setting, best first on the fit drives (sequences with false alarms, missed ERRORs, worst ERROR delay,"
          " worst WARN delay), and its check drives:")
    for i in sorted(range(len(settings)), key=lambda i: _score(table["fit"][i], angles_of)):
        print(f"  {', '.join(f'{k}={getattr(settings[i], k)}' for k in GRID)}: {_score(table['fit'][i], angles_of)[:4]}"
              f"; check drives: {_fmt(table['check'][i], angles_of)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
