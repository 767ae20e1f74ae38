#!/usr/bin/env python3
"""Calibrate and check the per-frame verdict (quality score, OK threshold, pose covariance).

  .venv/bin/python scripts/verdict_study.py collect [--bases 0,100,200,300] [--synthetic 40]
  .venv/bin/python scripts/verdict_study.py report  [--fit] [--plot docs/verdict_curve.png]

``collect`` runs the matcher (the pipeline's preprocessing, both thermal polarities) once per
case and caches the matches under ``--cache`` (default /tmp/verdict_cache), so that iterations
on features and score never re-run the matcher. Cases:

* roadscene_dev: the 56 aligned pairs under the accuracy protocol, pair i warped with seed
  BASE + i, for every BASE of ``--bases`` (each base is an independent draw of homographies);
* synthetic planar pairs (``make_planar_pair``, 640x512, seeds 0..N-1), homography truth;
* synthetic stereo pairs (``make_stereo_pair``, 640x512, seeds 0..N-1), essential truth.

``report`` fits the pipeline's geometry (pooled polarities, as the default ``polarity: both``)
to the cached matches, computes the verdict features (matchanything_ros.geometry.quality),
fits the logistic score on the training split (``--fit``: prints coefficients to paste into
quality.py) and prints, on the held-out split, the precision-coverage curve of OK and the
pose covariance consistency (NEES). See docs/ACCURACY.md, "Per-frame verdict".
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

CORRECT_PX = 10.0


def _cases(args):
    """(key, kind, visible, thermal, truth) for every case, cheapest-to-decide first."""
    from matchanything_ros.commands.accuracy import _find_data
    from matchanything_ros.evaluation.homography_protocol import load_aligned_pairs, warp_pair
    from matchanything_ros.synthetic import make_planar_pair, make_stereo_pair

    bases = [int(b) for b in args.bases.split(",") if b.strip()]
    pairs = load_aligned_pairs(_find_data(args.data)) if args.data else []
    n = args.synthetic

    def road(base):
        for i, pair in enumerate(pairs):
            warped, H = warp_pair(pair, base + i)
            yield f"road_{base}_{pair.name}", "homography", pair.visible, warped, {"H": H, "base": base, "seed": base + i}

    def planar():
        for s in range(n):
            p = make_planar_pair(s, size=(640, 512))
            yield f"planar_{s}", "homography", p.visible, p.thermal, {"H": p.H, "seed": s}

    def stereo():
        for s in range(n):
            p = make_stereo_pair(s, size=(640, 512))
            yield f"stereo_{s}", "essential", p.visible, p.thermal, {"K0": p.K0, "K1": p.K1, "R": p.R, "t": p.t, "seed": s}

    if bases:
        yield from road(bases[0])
    yield from stereo()
    yield from planar()
    for b in bases[1:]:
        yield from road(b)


def collect(args) -> None:
    from matchanything_ros.pipeline import Pipeline, PipelineConfig

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline(PipelineConfig(model=args.model))
    (cache / "model.txt").write_text(pipe.matcher.describe())
    t0 = time.perf_counter()
    done = 0
    for key, kind, visible, thermal, truth in _cases(args):
        out = cache / f"{key}.npz"
        if out.exists():
            continue
        vis, th = pipe.preprocess(visible, thermal)
        arrays = {}
        for pol in ("normal", "inverted"):
            m = pipe.matcher.match(vis, 255 - th if pol == "inverted" else th)
            arrays[f"{pol}_k0"], arrays[f"{pol}_k1"], arrays[f"{pol}_s"] = m.kpts0, m.kpts1, m.scores
        meta = {"kind": kind, "vis_wh": [visible.shape[1], visible.shape[0]], "th_wh": [thermal.shape[1], thermal.shape[0]]}
        meta.update({k: (np.asarray(v).tolist() if not isinstance(v, int) else v) for k, v in truth.items()})
        np.savez_compressed(out.with_suffix(".tmp.npz"), meta=json.dumps(meta), **arrays)
        out.with_suffix(".tmp.npz").rename(out)
        done += 1
        print(f"{key}: {time.perf_counter() - t0:.0f} s, {done} new", file=sys.stderr, flush=True)


# -- features ---------------------------------------------------------------------------------

#: chi-square 2.5 % / 97.5 % quantiles (no scipy in the environment): dof -> (low, high)
CHI2_95 = {2: (0.0506, 7.3778), 3: (0.2158, 9.3484), 5: (0.8312, 12.8325)}
ROT_OK_DEG, TDIR_OK_DEG = 2.0, 10.0


class _NoMatcher:
    """Stands in for the matcher: the study feeds cached matches to Pipeline.fit."""

    def describe(self) -> str:
        return "cached"


def _pose_errors(g, truth) -> dict:
    """Rotation / translation-direction errors and NEES of an essential fit's pose covariance
    (camera 1 in camera 0, ROS order as published), vs the truth."""
    from matchanything_ros.evaluation.metrics import rotation_error_deg, translation_angle_deg
    from matchanything_ros.geometry import camera1_pose_in_camera0
    from matchanything_ros.geometry.pose import _log_so3, _tangent_basis

    R_gt, t_gt = np.asarray(truth["R"]), np.asarray(truth["t"])
    out = {
        "rot_err_deg": rotation_error_deg(g.R, R_gt),
        "tdir_err_deg": translation_angle_deg(g.t, t_gt),
        "observable": bool(g.translation_observable),
    }
    if g.covariance is None:
        return out
    R01, p01 = camera1_pose_in_camera0(g.R, g.t)
    R01_gt, p01_gt = camera1_pose_in_camera0(R_gt, t_gt / np.linalg.norm(t_gt))
    d = _log_so3(R01_gt @ R01.T)  # left rotation error, as the covariance is defined
    u = p01 / np.linalg.norm(p01)
    B = np.stack(_tangent_basis(u), 1)  # 3x2: directions on the unit sphere
    e_t = B.T @ (p01_gt / np.linalg.norm(p01_gt) - u)
    C = np.asarray(g.covariance)
    Crr = C[3:, 3:]
    out["nees_rot"] = float(d @ np.linalg.solve(Crr, d))
    out["rot_sigma_deg"] = float(np.degrees(np.sqrt(np.trace(Crr) / 3)))
    if g.translation_observable:
        P = np.zeros((5, 6))
        P[:2, :3] = B.T
        P[2:, 3:] = np.eye(3)
        C5 = P @ C @ P.T
        e = np.concatenate([e_t, d])
        out["nees_tdir"] = float(e_t @ np.linalg.solve(C5[:2, :2], e_t))
        out["nees"] = float(e @ np.linalg.solve(C5, e))
    return out


def features(args) -> list[dict]:
    """One record per cached case: the pipeline's fit (pooled polarities), its verdict
    features, whether it is right, and (essential) its pose errors and NEES."""
    from matchanything_ros.evaluation.metrics import corner_error
    from matchanything_ros.matching import Matches
    from matchanything_ros.pipeline import Pipeline, PipelineConfig

    pipes = {
        mode: Pipeline(PipelineConfig(model="xfeat", geometry=mode, min_quality=0.0), matcher=_NoMatcher())
        for mode in ("homography", "essential")
    }
    records = []
    for path in sorted(Path(args.cache).glob("*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        z = np.load(path)
        meta = json.loads(str(z["meta"]))
        found = [Matches(z[f"{p}_k0"], z[f"{p}_k1"], z[f"{p}_s"]) for p in ("normal", "inverted")]
        kind = meta["kind"]
        K0 = np.asarray(meta["K0"]) if kind == "essential" else None
        K1 = np.asarray(meta["K1"]) if kind == "essential" else None
        _, g, _, q = pipes[kind].fit(found, ("normal", "inverted"), meta["vis_wh"], meta["th_wh"], K0, K1)
        key = path.stem
        rec = {"key": key, "set": key.split("_")[0], "seed": meta["seed"], "base": meta.get("base"), "kind": kind,
               "status": g.status.value, "score": q.score, "features": q.features}
        if kind == "homography":
            w, h = meta["vis_wh"]
            err = corner_error(g.matrix if g.ok else None, np.asarray(meta["H"]), w, h)
            rec["error"] = err
            rec["right"] = bool(err <= CORRECT_PX)
        else:
            pe = _pose_errors(g, meta) if g.ok else {"rot_err_deg": float("inf"), "tdir_err_deg": float("inf")}
            rec.update(pe)
            rec["right"] = bool(pe["rot_err_deg"] <= ROT_OK_DEG and (not pe.get("observable") or pe["tdir_err_deg"] <= TDIR_OK_DEG))
        records.append(rec)
    return records


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("collect", "features", "report"))
    p.add_argument("--features", default="/tmp/verdict_features.json", help="features cache (JSON)")
    p.add_argument("--cache", default="/tmp/verdict_cache")
    p.add_argument("--data", default="../shared/data/roadscene_dev")
    p.add_argument("--bases", default="0,100,200,300")
    p.add_argument("--synthetic", type=int, default=40)
    p.add_argument("--model", default="xfeat")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.action == "collect":
        collect(args)
    elif args.action == "features":
        recs = features(args)
        Path(args.features).write_text(json.dumps(recs, default=float))
        print(f"{len(recs)} records -> {args.features}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
