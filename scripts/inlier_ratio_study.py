#!/usr/bin/env python3
"""How well do inlier ratio and inlier count separate correct homography fits from wrong ones?
(A study, not a test; it chose PipelineConfig.min_inlier_ratio, see docs/ACCURACY.md.)

  .venv/bin/python scripts/inlier_ratio_study.py [--models xfeat,sift] [--seeds 20]
      [--data ../shared/data/roadscene_dev] [--save OUT.json | --load OUT.json]

Cases: synthetic planar pairs (``matchanything_ros.synthetic.make_planar_pair``, seeds 0..N-1) at
320x256 and 640x512, and the homography protocol on the aligned pairs of ``--data`` (pair i
warped with seed i, as ``matchanything-ros accuracy`` does). Each case goes through the
pipeline's own steps (``Pipeline.preprocess``, the matcher, ``estimate_geometry`` with the
pipeline's threshold, confidence and min_matches) once per thermal polarity, with the inlier
ratio rule off. A fit is *correct* when its mean corner error vs the ground truth is <= 10 px
(SR@10 of docs/ACCURACY.md), *wrong* when it is OK but farther off.

Tables:
1. every OK fit (both polarities): inlier ratio (inliers / matches) and inlier count of the
   correct ones and of the wrong ones (near misses 10-30 px and gross errors > 30 px);
2. per minimum inlier ratio r: what polarity ``auto`` (the pipeline default when written) returns when
   OK also needs inliers / matches >= r -- SR@10, OK results, wrong OK results. The polarity
   choice is the pipeline's (an OK fit first, then more inliers, then more matches), so a
   polarity whose fit r rejects can hand the result to the other polarity.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

RATIOS = (0.0, 0.04, 0.06, 0.07, 0.08, 0.09, 0.10, 0.12, 0.15, 0.20, 0.25, 0.30)
CORRECT_PX = 10.0
GROSS_PX = 30.0  # wrong fits split into near misses (10-30 px) and gross errors


def _cases(args):
    """(dataset, name, visible, thermal, H_gt) for every test case."""
    from matchanything_ros.synthetic import make_planar_pair

    for size in ((320, 256), (640, 512)):
        for seed in range(args.seeds):
            pair = make_planar_pair(seed, size=size)
            yield f"synthetic {size[0]}x{size[1]}", f"seed {seed}", pair.visible, pair.thermal, pair.H
    if args.data:
        from matchanything_ros.commands.accuracy import _find_data
        from matchanything_ros.evaluation.homography_protocol import load_aligned_pairs, warp_pair

        data = _find_data(args.data)
        if not data.is_dir():
            print(f"note: {data} not found, real pairs skipped", file=sys.stderr)
            return
        for i, pair in enumerate(load_aligned_pairs(data)):
            warped, H = warp_pair(pair, i)
            yield data.name, pair.name, pair.visible, warped, H


def collect(args) -> list[dict]:
    from matchanything_ros.evaluation.metrics import corner_error
    from matchanything_ros.geometry import estimate_geometry
    from matchanything_ros.pipeline import Pipeline, PipelineConfig

    records = []
    for model in args.models.split(","):
        cfg = PipelineConfig(model=model, geometry="homography", ransac_threshold=3.0)
        pipe = Pipeline(cfg)
        t0 = time.perf_counter()
        for dataset, name, visible, thermal, H_gt in _cases(args):
            vis, th = pipe.preprocess(visible, thermal)
            h, w = visible.shape[:2]
            fits = []
            for polarity in ("normal", "inverted"):
                matches = pipe.matcher.match(vis, 255 - th if polarity == "inverted" else th)
                g = estimate_geometry(
                    matches.kpts0, matches.kpts1, "homography", threshold_px=cfg.ransac_threshold,
                    confidence=cfg.ransac_confidence, min_matches=cfg.min_matches, min_inlier_ratio=0.0,
                )
                finite = int(np.isfinite(matches.kpts0).all(1).sum() if len(matches) else 0)
                fits.append({
                    "polarity": polarity,
                    "matches": finite,
                    "inliers": g.num_inliers,
                    "status": g.status.value,
                    "corner_error_px": corner_error(g.matrix if g.ok else None, H_gt, w, h),
                })
            records.append({"model": pipe.matcher.describe(), "dataset": dataset, "name": name, "fits": fits})
        print(f"{model}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return records


def _ok_at(fit: dict, r: float) -> bool:
    return fit["status"] == "OK" and fit["inliers"] >= r * fit["matches"]


def choose(fits: list[dict], r: float) -> tuple[dict, bool]:
    """Polarity 'auto' as Pipeline.process does it: OK first, then more inliers, then more matches."""
    best = max(fits, key=lambda f: (_ok_at(f, r), f["inliers"], f["matches"]))
    return best, _ok_at(best, r)


def _q(values, q):
    return f"{np.quantile(values, q):.3f}" if len(values) else "-"


def _band(corner_error_px: float) -> str:
    if corner_error_px <= CORRECT_PX:
        return "correct"
    return "wrong, 10-30 px" if corner_error_px <= GROSS_PX else "wrong, > 30 px"


def separation_table(records) -> str:
    lines = [
        "| model | cases | fit | OK fits | inlier ratio min / p10 / median / max | inliers min / median / max |",
        "|---|---|---|---|---|---|",
    ]
    for (model, dataset), recs in _groups(records):
        for label in ("correct", "wrong, 10-30 px", "wrong, > 30 px"):
            fits = [
                f for r in recs for f in r["fits"] if f["status"] == "OK" and _band(f["corner_error_px"]) == label
            ]
            ratio = [f["inliers"] / f["matches"] for f in fits]
            count = [f["inliers"] for f in fits]
            lines.append(
                f"| {model} | {dataset} ({len(recs)}) | {label} | {len(fits)} | "
                + (f"{_q(ratio, 0)} / {_q(ratio, .1)} / {_q(ratio, .5)} / {_q(ratio, 1)}" if fits else "-")
                + " | "
                + (f"{min(count)} / {int(np.median(count))} / {max(count)}" if fits else "-")
                + " |"
            )
    return "\n".join(lines)


def threshold_table(records) -> str:
    groups = _groups(records)
    names = [f"{m.split(' ')[0]} {d}: SR@10, OK, wrong OK" for (m, d), _ in groups]
    head = "| min inlier ratio | " + " | ".join(names) + " |"
    lines = [head, "|---|" + "---|" * len(groups)]
    for r in RATIOS:
        cells = []
        for _, recs in groups:
            ok = wrong = good = 0
            for rec in recs:
                fit, is_ok = choose(rec["fits"], r)
                err = fit["corner_error_px"] if is_ok else math.inf
                ok += is_ok
                good += err <= CORRECT_PX
                wrong += is_ok and err > CORRECT_PX
            cells.append(f"{good / len(recs):.2f}, {ok}, {wrong}")
        lines.append(f"| {r:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wrong_fits_table(records) -> str:
    """Every wrong OK fit (either polarity) and what auto returned for its case at r = 0."""
    lines = [
        "| model | case | polarity | inliers / matches | ratio | corner error (px) | returned by auto |",
        "|---|---|---|---|---|---|---|",
    ]
    for rec in records:
        chosen, _ = choose(rec["fits"], 0.0)
        for f in rec["fits"]:
            if f["status"] == "OK" and f["corner_error_px"] > CORRECT_PX:
                lines.append(
                    f"| {rec['model'].split(' ')[0]} | {rec['dataset']} {rec['name']} | {f['polarity']} | "
                    f"{f['inliers']}/{f['matches']} | {f['inliers'] / f['matches']:.3f} | {f['corner_error_px']:.0f} | "
                    f"{'yes' if f is chosen else 'no'} |"
                )
    return "\n".join(lines)


def _groups(records):
    keys = []
    for r in records:
        if (r["model"], r["dataset"]) not in keys:
            keys.append((r["model"], r["dataset"]))
    return [(k, [r for r in records if (r["model"], r["dataset"]) == k]) for k in keys]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="xfeat,sift")
    p.add_argument("--seeds", type=int, default=20, help="synthetic seeds per size (default 20)")
    p.add_argument("--data", default="../shared/data/roadscene_dev", help="aligned pairs ('' to skip)")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's default)")
    p.add_argument("--save", help="write the per-fit records as JSON")
    p.add_argument("--load", help="tabulate records saved with --save instead of matching")
    args = p.parse_args()
    if args.load:
        records = json.loads(Path(args.load).read_text())["records"]
    else:
        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        records = collect(args)
        if args.save:
            Path(args.save).write_text(json.dumps({"argv": sys.argv, "records": records}, indent=1, default=float))
    print("## OK fits, both polarities, inlier ratio rule off (correct: corner error <= 10 px)\n")
    print(separation_table(records))
    print("\n## What polarity auto returns with OK also needing inliers / matches >= r\n")
    print(threshold_table(records))
    print("\n## Wrong OK fits\n")
    print(wrong_fits_table(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
