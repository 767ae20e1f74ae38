#!/usr/bin/env python3
"""The default pipeline on small synthetic planar pairs: how many fits are right, how many the
verdict calls OK, and how right those are.

  .venv/bin/python scripts/small_image_study.py [--size 320x256] [--seeds 100-199] [--refine]

Seeds 100-199 are held out of every fit of the verdict (quality.COEFFICIENTS uses planar seeds
0-99 at 640x512). Prints SR@10 of the fits (withheld ones included), coverage (share OK), OK
precision (share of OK fits within 10 px) and the score buckets. About 1 min per 100 pairs on
2 CPU cores (2 min with --refine).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    from matchanything_ros.evaluation.metrics import corner_error
    from matchanything_ros.pipeline import Pipeline, PipelineConfig
    from matchanything_ros.synthetic import make_planar_pair

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", default="320x256")
    p.add_argument("--seeds", default="100-199", help="first-last")
    p.add_argument("--refine", action="store_true", help="the refinement pass (refine: true)")
    args = p.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    lo, hi = (int(v) for v in args.seeds.split("-"))
    threshold = PipelineConfig().min_quality
    pipe = Pipeline(PipelineConfig(model="xfeat", min_quality=0.0, refine=args.refine))
    errors, scores = [], []
    for seed in range(lo, hi + 1):
        pair = make_planar_pair(seed, size=(w, h))
        res = pipe.process(pair.visible, pair.thermal)
        errors.append(corner_error(res.geometry.matrix if res.geometry.ok else None, pair.H, w, h))
        scores.append(res.quality.score if res.quality.score is not None else 0.0)
    e, s = np.array(errors), np.array(scores)
    ok = s >= threshold
    print(f"{pipe.matcher.describe()}, {args.size}, seeds {lo}-{hi}, refine {args.refine}: "
          f"SR@10 of the fits {np.mean(e <= 10):.2f}; at min_quality {threshold:g}: coverage {ok.mean():.2f}, "
          f"OK precision {np.mean(e[ok] <= 10) if ok.any() else float('nan'):.3f}, right and OK {np.mean(ok & (e <= 10)):.2f}")
    for b0, b1 in ((0, .5), (.5, .7), (.7, .8), (.8, .9), (.9, .95), (.95, .99), (.99, 1.01)):
        m = (s >= b0) & (s < b1)
        if m.any():
            print(f"  score {b0:.2f}-{min(b1, 1):.2f}: {m.sum()} fits, mean {s[m].mean():.2f}, right {np.mean(e[m] <= 10):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
