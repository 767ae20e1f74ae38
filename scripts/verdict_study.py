#!/usr/bin/env python3
"""Calibrate and check the per-frame verdict (quality score, OK threshold, pose covariance).

  .venv/bin/python scripts/verdict_study.py collect [--bases 0,100,...,700] [--synthetic 200]
  .venv/bin/python scripts/verdict_study.py report  [--fit] [--refresh] [--plot docs/verdict_curve.png]
  (``features`` recomputes the per-case features from the match cache; ``report`` does it once)

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


# -- score fit and report ----------------------------------------------------------------------

TRAIN_BASES = (0, 100, 200, 300)  # roadscene bases used to fit; the others are held out
TRAIN_SYNTHETIC = 100  # synthetic seeds below this are used to fit


def is_train(rec) -> bool:
    if rec["set"] == "road":
        return rec["base"] in TRAIN_BASES
    return rec["seed"] < TRAIN_SYNTHETIC


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1e-2, iters: int = 50) -> np.ndarray:
    """Weights (bias first) of an L2-regularised logistic regression, by Newton's method."""
    A = np.column_stack([np.ones(len(X)), X])
    w = np.zeros(A.shape[1])
    reg = l2 * np.eye(A.shape[1])
    reg[0, 0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-A @ w))
        g = A.T @ (p - y) + reg @ w
        Hm = (A * (p * (1 - p))[:, None]).T @ A + reg
        step = np.linalg.solve(Hm, g)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w


def is_ok(rec, score, t) -> bool:
    """The pipeline's decision at min_quality t (Pipeline.fit): status OK, score >= t and, for
    an essential fit when the verdict is on, a rotation stable across polarities."""
    from matchanything_ros.geometry.quality import MAX_POLARITY_DISAGREEMENT_DEG

    if rec["status"] != "OK" or score is None or score < t:
        return False
    return t <= 0 or rec["features"].get("polarity_disagreement_deg", 0.0) <= MAX_POLARITY_DISAGREEMENT_DEG


def curve(recs, scores, thresholds) -> list[tuple]:
    """(threshold, OK frames, coverage, OK precision, right and OK share) per threshold."""
    out = []
    n = len(recs)
    for t in thresholds:
        ok = [r for r, s in zip(recs, scores) if is_ok(r, s, t)]
        right = sum(r["right"] for r in ok)
        out.append((t, len(ok), len(ok) / max(n, 1), right / len(ok) if ok else float("nan"), right / max(n, 1)))
    return out


def report(args, recs) -> None:
    from matchanything_ros.geometry import quality

    families = {"homography": ["homography"], "essential": ["essential"]}
    if args.fit:
        for fam in families:
            names = [k for k in quality.COEFFICIENTS[fam] if k != "bias"]
            train = [r for r in recs if r["kind"] == fam and r["status"] == "OK" and is_train(r)]
            X = np.array([[r["features"][k] for k in names] for r in train])
            y = np.array([float(r["right"]) for r in train])
            w = fit_logistic(X, y)
            print(f"{fam}: fitted on {len(train)} OK fits ({int(y.sum())} right)")
            print("    " + repr({"bias": round(float(w[0]), 3), **{k: round(float(v), 3) for k, v in zip(names, w[1:])}}))
    thresholds = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98]
    groups = [
        ("roadscene_dev, held-out bases", lambda r: r["set"] == "road" and not is_train(r)),
        ("roadscene_dev, training bases", lambda r: r["set"] == "road" and is_train(r)),
        ("synthetic planar, held-out seeds", lambda r: r["set"] == "planar" and not is_train(r)),
        ("synthetic stereo (essential), held-out seeds", lambda r: r["set"] == "stereo" and not is_train(r)),
        ("synthetic stereo (essential), training seeds", lambda r: r["set"] == "stereo" and is_train(r)),
    ]
    for name, sel in groups:
        rs = [r for r in recs if sel(r)]
        if not rs:
            continue
        scores = [quality.quality_score(r["kind"], r["features"]) for r in rs]
        print(f"\n### {name}: {len(rs)} frames\n")
        print("| min_quality | OK frames | coverage (OK / frames) | OK precision | right and OK / frames |")
        print("|---|---|---|---|---|")
        for t, n_ok, cov, prec, rec_ in curve(rs, scores, thresholds):
            print(f"| {t:.2f} | {n_ok} | {cov:.2f} | {prec:.3f} | {rec_:.2f} |")
    nees_report(recs, "all seeds", lambda r: True)
    nees_report(recs, "held-out seeds", lambda r: not is_train(r))
    if args.plot:
        plot(recs, groups, args.plot)


def plot(recs, groups, path) -> None:
    """Precision-coverage curves (one point per min_quality 0.00-0.99) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matchanything_ros.geometry import quality
    from matchanything_ros.pipeline import PipelineConfig

    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=110)
    ts = [i / 100 for i in range(100)]
    default = PipelineConfig().min_quality
    for name, sel in groups:
        if "training" in name:
            continue
        rs = [r for r in recs if sel(r)]
        scores = [quality.quality_score(r["kind"], r["features"]) for r in rs]
        pts = [(c, p) for _, _, c, p, _ in curve(rs, scores, ts) if p == p]
        line, = ax.plot([c for c, _ in pts], [p for _, p in pts], marker=".", ms=3, label=f"{name} ({len(rs)})")
        (_, _, c, p, _), = curve(rs, scores, [default])
        if p == p:
            ax.plot([c], [p], "o", ms=8, mfc="none", color=line.get_color())
    ax.axhline(0.97, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("coverage (share of frames OK)")
    ax.set_ylabel("OK precision (share of OK frames right)")
    ax.set_title(f"Per-frame verdict, min_quality 0-0.99 (circle: default {default:g})", fontsize=9)
    ax.set_ylim(0.6, 1.01)
    ax.set_xlim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    print(f"\nplot -> {path}")


def nees_report(recs, label, sel) -> None:
    stereo = [r for r in recs if r["set"] == "stereo" and sel(r)]
    if not stereo:
        return
    from matchanything_ros.geometry import quality
    from matchanything_ros.pipeline import PipelineConfig

    t = PipelineConfig().min_quality
    ok = [r for r in stereo if is_ok(r, quality.quality_score("essential", r["features"]), t)]
    print(f"\n### Pose covariance consistency, synthetic stereo ({label}): {len(stereo)} frames, "
          f"{len(ok)} OK at min_quality {t:g}\n")

    def share(vals, dof):
        lo, hi = CHI2_95[dof]
        return sum(lo <= v <= hi for v in vals) / len(vals) if vals else float("nan")

    rot = [r["nees_rot"] for r in ok if "nees_rot" in r]
    full = [r["nees"] if "nees" in r else None for r in ok]
    consistent = [
        (CHI2_95[5][0] <= r["nees"] <= CHI2_95[5][1]) if "nees" in r else (CHI2_95[3][0] <= r["nees_rot"] <= CHI2_95[3][1])
        for r in ok if "nees_rot" in r
    ]
    obs = [r for r in ok if r.get("observable")]
    print(f"* NEES within the chi-square 95 % bounds (5 dof with an observable translation direction, else rotation only, 3 dof): "
          f"{np.mean(consistent):.2f} of {len(consistent)} OK frames")
    print(f"* rotation NEES (3 dof) within bounds: {share(rot, 3):.2f}; translation direction observable in {len(obs)} "
          f"of {len(ok)}, its NEES (2 dof) within bounds: {share([r['nees_tdir'] for r in obs if 'nees_tdir' in r], 2):.2f}")
    re = [r["rot_err_deg"] for r in ok]
    te = [r["tdir_err_deg"] for r in obs]
    if re:
        print(f"* rotation error (deg) median / p90 / max: {np.median(re):.2f} / {np.quantile(re, .9):.2f} / {max(re):.2f}")
    if te:
        print(f"* translation direction error where observable (deg) median / p90 / max: "
              f"{np.median(te):.1f} / {np.quantile(te, .9):.1f} / {max(te):.1f}")
    sig = [r["rot_sigma_deg"] for r in ok if "rot_sigma_deg" in r]
    if sig:
        print(f"* published rotation sigma (deg) median / max: {np.median(sig):.2f} / {max(sig):.2f}")
    del full


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("collect", "features", "report"))
    p.add_argument("--features", default="/tmp/verdict_features.json", help="features cache (JSON)")
    p.add_argument("--cache", default="/tmp/verdict_cache")
    p.add_argument("--data", default="../shared/data/roadscene_dev")
    p.add_argument("--bases", default="0,100,200,300,400,500,600,700", help="roadscene warp seed bases")
    p.add_argument("--synthetic", type=int, default=200, help="synthetic seeds per kind")
    p.add_argument("--model", default="xfeat")
    p.add_argument("--fit", action="store_true", help="fit and print the logistic coefficients (training split)")
    p.add_argument("--refresh", action="store_true", help="recompute the features from the match cache")
    p.add_argument("--plot", help="write the precision-coverage curves as a PNG")
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
    else:
        if args.refresh or not Path(args.features).exists():
            recs = features(args)
            Path(args.features).write_text(json.dumps(recs, default=float))
        recs = json.loads(Path(args.features).read_text())
        from matchanything_ros.commands.accuracy import machine_note

        print(f"machine: {machine_note()}; cached matches: {(Path(args.cache) / 'model.txt').read_text()}")
        report(args, recs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
