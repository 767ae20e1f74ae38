#!/usr/bin/env python3
"""The essential rig estimator replayed on fixed-rig synthetic stereo sequences, with variants
(docs/ACCURACY.md, "Rig mode": how rig.systematic_deg and the warm start were chosen).

  .venv/bin/python scripts/rig_study.py [--seeds 0,100,...] [--variant systematic_deg=0 ...]
                                        [--no-warm-start] [--authors-coordinates]
                                        [--trace SEED] [--pooled]

Each sequence is 30 rendered 640x512 scenes seen by the cameras of stereo seed S
(``make-bag --synthetic stereo --rig-fixed --seed S``), matched once with the driving preset
(XFeat*, 2 px, CLAHE); every variant then replays ``RigEstimator`` over the same results. Printed
per sequence, for frames 20-29: the direction error (median / max), the published direction
sigma and the share of frames whose NEES lies within the chi-square 95 % bound (rotation 3 dof,
direction 2 dof, as ``evaluate``). ``--variant`` takes RigConfig fields (comma-separated
key=value); ``--no-warm-start`` refits from scratch every frame (the estimator before the warm
start); ``--authors-coordinates`` matches with XFeat*'s points read the authors' way
(``exact_coordinates=False``); ``--trace S`` prints sequence S's direction error per frame; ``--pooled`` fits each
sequence's pooled inliers once, all of them and only the ground-truth-correct ones (<= 3 px),
and prints the least-squares direction sigma those claim.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FRAMES = 30


def _sequence(seed: int, pipe):
    from matchanything_ros.synthetic import make_stereo_pair

    first = make_stereo_pair(seed, size=(640, 512))
    rig = (first.K0, first.K1, first.R, first.info["thermal_centre_in_visible"])
    pairs = [first] + [make_stereo_pair(seed + i, size=(640, 512), rig=rig) for i in range(1, FRAMES)]
    return first, pairs, [pipe.process(p.visible, p.thermal, p.K0, p.K1) for p in pairs]


def _replay(first, results, config):
    from matchanything_ros.evaluation.rig_metrics import _nees
    from matchanything_ros.rig import RigEstimator, direction_angle_deg

    est = RigEstimator(config, "essential", threshold=2.0)
    rows = []
    for i, r in enumerate(results):
        est.update(r, first.K0, first.K1)
        s = est.snapshot()
        if s is None or s.covariance is None:
            rows.append((i, np.nan, np.nan, np.nan, np.nan))
            continue
        R01, t01 = s.model.R.T, -s.model.R.T @ s.model.t
        n = _nees(R01, t01, s.covariance, first.R, first.t)
        rows.append((i, direction_angle_deg(t01, -first.R.T @ first.t), s.sigma_translation_deg or np.nan,
                     n.get("rig_nees_rotation", np.nan), n.get("rig_nees_translation", np.nan)))
    return np.array(rows, dtype=float)


def _pooled(first, pairs, results) -> str:
    import cv2

    from matchanything_ros.rig import _Essential, _perturb, _sampson_h, _tangent, direction_angle_deg, refine_pose

    def norm(p, K):
        return cv2.undistortPoints(p.reshape(-1, 1, 2).astype(np.float64), K, None).reshape(-1, 2)

    x0, x1, err = [], [], []
    for p, r in zip(pairs, results):
        m = np.asarray(r.geometry.inliers, bool)
        k0, k1 = r.matches.kpts0[m], r.matches.kpts1[m]
        x0.append(norm(k0, first.K0)); x1.append(norm(k1, first.K1))
        err.append(np.linalg.norm(k1 - p.visible_to_thermal(k0), axis=1))
    x0, x1, err = np.concatenate(x0), np.concatenate(x1), np.concatenate(err)
    f = float(np.mean([first.K0[0, 0], first.K1[0, 0]]))
    ops = _Essential(2.0, f)
    truth = -first.R.T @ first.t
    model = ops.fit(x0, x1)[0]
    ok = err <= 3
    R, t = refine_pose(first.R, first.t, x0[ok], x1[ok], iters=20)  # least squares, from the truth
    # first-order direction sigma the correct inliers claim (independent noise at their RMS)
    h0, h1 = np.c_[x0[ok], np.ones(ok.sum())], np.c_[x1[ok], np.ones(ok.sum())]
    basis, eps, J = _tangent(t), 1e-6, np.empty((int(ok.sum()), 5))
    for k in range(5):
        d = np.zeros(5); d[k] = eps
        J[:, k] = (_sampson_h(*_perturb(R, t, basis, d), h0, h1) - _sampson_h(*_perturb(R, t, basis, -d), h0, h1)) / (2 * eps)
    cov = np.mean(_sampson_h(R, t, h0, h1) ** 2) * np.linalg.inv(J.T @ J)
    sigma = float(np.degrees(np.sqrt(np.diag(cov)[3:].mean())))
    return (f"pooled fit of all {len(x0)} inliers {direction_angle_deg(-model.R.T @ model.t, truth):.2f} deg off; "
            f"of the {int(ok.sum())} ground-truth-correct ones {direction_angle_deg(-R.T @ t, truth):.2f} deg off, "
            f"least squares claims {sigma:.2f} deg")


def main() -> int:
    import yaml

    from matchanything_ros.pipeline import Pipeline, PipelineConfig
    from matchanything_ros.rig import RigConfig, _Essential

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", default="0,100,200,300,400,500,600,700,800,900")
    p.add_argument("--variant", action="append", default=[], help="RigConfig fields, e.g. systematic_deg=0")
    p.add_argument("--no-warm-start", action="store_true")
    p.add_argument("--authors-coordinates", action="store_true")
    p.add_argument("--trace", type=int, help="print this sequence's direction error per frame")
    p.add_argument("--pooled", action="store_true")
    args = p.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
        variants = [{}] + [{k: float(v) for k, v in (kv.split("=") for kv in var.split(","))} for var in args.variant]
        configs = [RigConfig(enabled=True, **v) for v in variants]
        for c in configs:
            c.validate()
    except (ValueError, TypeError) as exc:
        print(f"rig_study: {exc}", file=sys.stderr)
        return 2
    if args.no_warm_start:  # the estimator before the warm start: a fresh MAGSAC++ fit every frame
        _Essential.fit = lambda self, x0, x1, start=None: self._fit_fresh(x0, x1)
    preset = yaml.safe_load((REPO / "config" / "driving_rig.yaml").read_text())["/**"]["ros__parameters"]
    keep = {k: preset[k] for k in ("resolution", "max_matches", "geometry", "ransac_threshold", "min_matches",
                                   "polarity", "thermal")}
    pipe = Pipeline(PipelineConfig.from_dict({**keep, "model": "xfeat"}))
    pipe.matcher.exact_coordinates = not args.authors_coordinates
    runs = {s: _sequence(s, pipe) for s in seeds}
    for variant, config in zip(variants, configs):
        print(f"variant {variant or 'defaults'}{', no warm start' if args.no_warm_start else ''}")
        steady = []
        for s, (first, pairs, results) in runs.items():
            rows = _replay(first, results, config)
            late = rows[20:]
            steady.append(late)
            print(f"  S={s}: direction median {np.nanmedian(late[:, 1]):.2f} max {np.nanmax(late[:, 1]):.2f} deg, "
                  f"sigma {np.nanmedian(late[:, 2]):.2f} deg; NEES within bound: rotation "
                  f"{np.mean(late[:, 3] <= 7.81):.2f}, direction {np.mean(late[:, 4] <= 5.99):.2f}")
            if args.trace == s:
                print("    per frame: " + " ".join(f"{int(i)}:{e:.1f}" for i, e, *_ in rows))
        a = np.concatenate(steady)
        print(f"  all: direction median {np.nanmedian(a[:, 1]):.2f} max {np.nanmax(a[:, 1]):.2f} deg; NEES within "
              f"bound: rotation {np.mean(a[:, 3] <= 7.81):.2f}, direction {np.mean(a[:, 4] <= 5.99):.2f}")
    if args.pooled:
        for s, (first, pairs, results) in runs.items():
            print(f"S={s}: {_pooled(first, pairs, results)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
