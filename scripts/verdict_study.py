#!/usr/bin/env python3
"""Calibrate and check the per-frame verdict (quality score, OK threshold, pose covariance) on
pairs it was not fitted on.

  .venv/bin/python scripts/verdict_study.py collect --bases 0,100,200,300 --synthetic 200 [--refine]
  .venv/bin/python scripts/verdict_study.py aligned     # RoadScene's own alignment vs the fit, per pair
  .venv/bin/python scripts/verdict_study.py report [--refine] [--fit --select [--fit-families F]] [--plot PNG]
  (``features`` recomputes the per-case features from the match cache; ``report`` does it once)

``collect`` runs the matcher (the pipeline's preprocessing, both thermal polarities) once per
case and caches the matches under ``--cache`` (default /tmp/verdict_cache), so that iterations
on features and score never re-run the matcher; ``--refine`` also caches the refinement pass's
matches (Pipeline.match_refined). Cases:

* RoadScene: the aligned pairs of every ``--data`` folder (roadscene_dev and roadscene_calib)
  under the accuracy protocol, pair i warped with seed BASE + i, for every BASE of ``--bases``;
* synthetic planar pairs (``make_planar_pair``, 640x512, seeds 0..N-1), homography truth;
* synthetic stereo pairs (``make_stereo_pair``, 640x512, seeds 0..``--stereo``-1), essential
  truth, matched and fitted with the settings of the essential preset (config/driving_rig.yaml:
  CLAHE, 2 px RANSAC threshold, 30 matches minimum): the settings users run essential with.

Splits: the RoadScene pairs are split **by drive** (evaluation.drives.split_by_drive over the
pairs of all folders): the score is fitted on the fit drives and every figure quoted is from
the check drives, with 95 % intervals that resample whole drives; synthetic planar seeds below
100 are fitted on, the others held out; synthetic stereo seeds from 100 up are fitted on and
seeds 0-99 held out (they include `make-bag --synthetic stereo`'s default bag, seeds 0-19).

``report`` fits the pipeline's geometry (pooled polarities, as the default ``polarity: both``)
to the cached matches, computes the verdict features (matchanything_ros.geometry.quality),
optionally fits the logistic score on the fit split (``--fit``; ``--select`` picks the
homography features by leave-one-drive-out log-loss on the fit drives; the coefficients are
printed to paste into quality.py) and prints per group the precision-coverage curve of OK, the
reliability of the score buckets, the wrong OK fits, and the pose covariance consistency
(NEES). See docs/ACCURACY.md, "Per-frame verdict".
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
    folders = [_find_data(d) for d in args.data.split(",") if d.strip()]
    n = args.synthetic
    n_stereo = args.stereo

    def road(base):
        for folder in folders:
            # roadscene_dev keeps its old keys ("road_..."), so earlier caches stay valid
            label = "road" if folder.name == "roadscene_dev" else folder.name.replace("roadscene_", "")
            for i, pair in enumerate(load_aligned_pairs(folder)):
                warped, H = warp_pair(pair, base + i)
                yield (f"{label}_{base}_{pair.name}", "homography", pair.visible, warped,
                       {"H": H, "base": base, "seed": base + i, "data": folder.name, "name": pair.name})

    def planar():
        for s in range(n):
            p = make_planar_pair(s, size=(640, 512))
            yield f"planar_{s}", "homography", p.visible, p.thermal, {"H": p.H, "seed": s}

    def stereo():
        for s in range(n_stereo):
            p = make_stereo_pair(s, size=(640, 512))
            yield (f"stereo_{s}", "essential", p.visible, p.thermal,
                   {"K0": p.K0, "K1": p.K1, "R": p.R, "t": p.t, "seed": s, "preset": STEREO_PRESET.name})

    if bases:
        yield from road(bases[0])
    yield from stereo()
    yield from planar()
    for b in bases[1:]:
        yield from road(b)


POLARITIES = ("normal", "inverted")
#: the essential cases are matched and fitted as the essential preset does
STEREO_PRESET = REPO / "config" / "driving_rig.yaml"


def preset_config(model: str, **changes):
    """The pipeline configuration of STEREO_PRESET (as the node reads it), ``model`` and
    ``changes`` applied."""
    import dataclasses

    from matchanything_ros.node.config import load_params_file

    return dataclasses.replace(load_params_file(STEREO_PRESET)[1], model=model, **changes)


def _save(out: Path, **arrays) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_suffix(".tmp.npz"), **arrays)
    out.with_suffix(".tmp.npz").rename(out)


def _found(z) -> list:
    """The cached matches of each polarity."""
    from matchanything_ros.matching import Matches

    return [Matches(z[f"{p}_k0"], z[f"{p}_k1"], z[f"{p}_s"]) for p in POLARITIES]


def collect(args) -> None:
    from matchanything_ros.pipeline import Pipeline, PipelineConfig

    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    pipe = Pipeline(PipelineConfig(model=args.model))
    # the essential cases: the preset's preprocessing (CLAHE) and matcher settings
    pipes = {"homography": pipe, "essential": Pipeline(preset_config(args.model))}
    (cache / "model.txt").write_text(pipe.matcher.describe())
    t0 = time.perf_counter()
    done = 0
    for key, kind, visible, thermal, truth in _cases(args):
        out = cache / f"{key}.npz"
        # --refine: the refinement pass's matches (Pipeline.match_refined) with the thermal
        # image warped by the first fit, homography cases only, in refined/
        ref_out = cache / "refined" / f"{key}.npz"
        need_ref = args.refine and kind == "homography" and not ref_out.exists()
        if out.exists() and kind == "essential" and json.loads(str(np.load(out)["meta"])).get("preset") != STEREO_PRESET.name:
            out.unlink()  # matched before the stereo cases used the preset's settings
        if out.exists() and not need_ref:
            continue
        vis, th = pipes[kind].preprocess(visible, thermal)
        vis_wh = (visible.shape[1], visible.shape[0])
        th_wh = (thermal.shape[1], thermal.shape[0])
        if not out.exists():
            arrays = {}
            for pol in POLARITIES:
                m = pipes[kind].matcher.match(vis, 255 - th if pol == "inverted" else th)
                arrays[f"{pol}_k0"], arrays[f"{pol}_k1"], arrays[f"{pol}_s"] = m.kpts0, m.kpts1, m.scores
            meta = {"kind": kind, "vis_wh": list(vis_wh), "th_wh": list(th_wh)}
            meta.update({k: (np.asarray(v).tolist() if not isinstance(v, int) else v) for k, v in truth.items()})
            _save(out, meta=json.dumps(meta), **arrays)
        if need_ref:
            _, g, _, _ = pipe.fit(_found(np.load(out)), POLARITIES, vis_wh, th_wh)
            H0 = g.matrix if g.matrix is not None else g.rejected_matrix
            arrays = {"H0": np.full((3, 3), np.nan) if H0 is None else np.asarray(H0)}
            if H0 is not None:
                for pol, m in zip(POLARITIES, pipe.match_refined(vis, th, H0, POLARITIES, vis_wh, th_wh)):
                    arrays[f"{pol}_k0"], arrays[f"{pol}_k1"], arrays[f"{pol}_s"] = m.kpts0, m.kpts1, m.scores
            _save(ref_out, **arrays)
        done += 1
        print(f"{key}: {time.perf_counter() - t0:.0f} s, {done} new", file=sys.stderr, flush=True)


# -- features ---------------------------------------------------------------------------------

#: chi-square 2.5 % / 97.5 % quantiles (no scipy in the environment): dof -> (low, high)
CHI2_95 = {2: (0.0506, 7.3778), 3: (0.2158, 9.3484), 5: (0.8312, 12.8325)}
TDIR_OK_DEG = 10.0


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


def _essential_outcome(g, meta) -> dict:
    """Pose errors of an essential fit and whether it is right."""
    pe = _pose_errors(g, meta) if g.ok else {"rot_err_deg": float("inf"), "tdir_err_deg": float("inf")}
    from matchanything_ros.geometry.quality import ROTATION_RIGHT_DEG

    pe["right"] = bool(pe["rot_err_deg"] <= ROTATION_RIGHT_DEG and (not pe.get("observable") or pe["tdir_err_deg"] <= TDIR_OK_DEG))
    return pe


def features(args) -> list[dict]:
    """One record per cached case: the pipeline's fit (pooled polarities), its verdict
    features, whether it is right, and (essential) its pose errors and NEES."""
    from matchanything_ros.evaluation.metrics import corner_error
    from matchanything_ros.pipeline import Pipeline, PipelineConfig

    pipes = {
        "homography": Pipeline(PipelineConfig(model="xfeat", min_quality=0.0), matcher=_NoMatcher()),
        "essential": Pipeline(preset_config("xfeat", min_quality=0.0), matcher=_NoMatcher()),
        # one polarity's matches (polarity normal): the "essential_single" rotation model
        "essential_single": Pipeline(preset_config("xfeat", min_quality=0.0, polarity="normal"), matcher=_NoMatcher()),
    }
    records = []
    for path in sorted(Path(args.cache).glob("*.npz")):
        if path.name.endswith(".tmp.npz"):
            continue
        z = np.load(path)
        meta = json.loads(str(z["meta"]))
        found = _found(z)
        kind = meta["kind"]
        if kind == "essential" and meta.get("preset") != STEREO_PRESET.name:
            raise SystemExit(f"{path}: matched without the preset's settings; run `collect` again (it replaces it)")
        K0 = np.asarray(meta["K0"]) if kind == "essential" else None
        K1 = np.asarray(meta["K1"]) if kind == "essential" else None
        _, g, _, q = pipes[kind].fit(found, POLARITIES, meta["vis_wh"], meta["th_wh"], K0, K1)
        key = path.stem
        refit = None
        ref_path = path.parent / "refined" / path.name
        if kind == "homography" and ref_path.exists() and "normal_k0" in np.load(ref_path):
            # the refinement pass's fit, kept beside the first: which one the pipeline keeps
            # depends on the coefficients (effective(), at report time)
            _, g2, _, q2 = pipes[kind].fit(_found(np.load(ref_path)), POLARITIES, meta["vis_wh"], meta["th_wh"],
                                           refined=True)
            w, h = meta["vis_wh"]
            err2 = corner_error(g2.matrix if g2.ok else None, np.asarray(meta["H"]), w, h)
            refit = {"status": g2.status.value, "features": q2.features, "error": err2, "right": bool(err2 <= CORRECT_PX)}
        road = "H" in meta and "base" in meta
        rec = {"key": key, "set": "road" if road else key.split("_")[0], "seed": meta["seed"], "base": meta.get("base"),
               "kind": kind, "status": g.status.value, "score": q.score, "features": q.features}
        if road:  # older caches (roadscene_dev only) lack these: the key holds them
            rec["data"] = meta.get("data", "roadscene_dev")
            rec["name"] = meta.get("name", key.split("_", 2)[2])
        if kind == "homography":
            w, h = meta["vis_wh"]
            err = corner_error(g.matrix if g.ok else None, np.asarray(meta["H"]), w, h)
            rec["error"] = err
            rec["right"] = bool(err <= CORRECT_PX)
            if refit is not None:
                rec["refit"] = refit
        else:
            rec.update(_essential_outcome(g, meta))
            _, g1, _, q1 = pipes["essential_single"].fit(found[:1], POLARITIES[:1], meta["vis_wh"], meta["th_wh"], K0, K1)
            rec["single"] = {"status": g1.status.value, "features": q1.features, **_essential_outcome(g1, meta)}
        records.append(rec)
    return records


# -- score fit and report ----------------------------------------------------------------------

TRAIN_SYNTHETIC = 100  # synthetic seeds below this are used to fit
FIT_SYNTHETIC_PLANAR = TRAIN_SYNTHETIC  # --fit-synthetic: planar seeds in the fit (0: RoadScene fit drives only)
_FIT_NAMES: set[str] | None = None


def fit_names(recs) -> set[str]:
    """RoadScene pairs whose drives are fitted on (evaluation.drives.split_by_drive over every
    pair of every data folder); the other drives are never fitted on."""
    global _FIT_NAMES
    if _FIT_NAMES is None:
        from matchanything_ros.evaluation.drives import split_by_drive

        _FIT_NAMES = split_by_drive(sorted({r["name"] for r in recs if r["set"] == "road"}))[0]
    return _FIT_NAMES


def is_train(rec) -> bool:
    if rec["set"] == "road":
        return rec["name"] in _FIT_NAMES
    if rec["set"] == "stereo":  # seeds 0-99 held out: make-bag's stereo bags start at seed 0
        return rec["seed"] >= TRAIN_SYNTHETIC
    return rec["seed"] < FIT_SYNTHETIC_PLANAR


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
    """The pipeline's decision at min_quality t (Pipeline.fit): status OK and score >= t."""
    return rec["status"] == "OK" and score is not None and score >= t


def curve(recs, scores, thresholds) -> list[tuple]:
    """(threshold, OK frames, coverage, OK precision, right and OK share) per threshold."""
    out = []
    n = len(recs)
    for t in thresholds:
        ok = [r for r, s in zip(recs, scores) if is_ok(r, s, t)]
        right = sum(r["right"] for r in ok)
        out.append((t, len(ok), len(ok) / max(n, 1), right / len(ok) if ok else float("nan"), right / max(n, 1)))
    return out


#: homography features ``--select`` chooses from (quality.quality_features computes them all)
CANDIDATES = ("inlier_ratio", "log_inliers", "coverage", "log_corner_sigma", "log_split_corner_px", "hull_fraction",
              "rms_residual_px")


def select_features(recs, max_size: int = 3) -> list[str]:
    """The homography feature subset (up to ``max_size`` of CANDIDATES) with the lowest
    leave-one-drive-out log-loss on the fit split's RoadScene drives: chosen without looking at
    the check drives. Prints the best candidates."""
    import itertools

    from matchanything_ros.evaluation.drives import drives

    train = [r for r in recs if r["kind"] == "homography" and r["status"] == "OK" and r["set"] == "road" and is_train(r)]
    drive = drives(sorted({r["name"] for r in train}))
    groups = np.array([drive[r["name"]] for r in train])
    y = np.array([float(r["right"]) for r in train])
    rows = []
    for k in range(1, max_size + 1):
        for names in itertools.combinations(CANDIDATES, k):
            X = np.array([[r["features"][n] for n in names] for r in train])
            p = np.empty(len(y))
            for g in np.unique(groups):
                out = groups == g
                w = fit_logistic(X[~out], y[~out])
                p[out] = 1.0 / (1.0 + np.exp(-(w[0] + X[out] @ w[1:])))
            p = np.clip(p, 1e-6, 1 - 1e-6)
            rows.append((float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))), names))
    rows.sort()
    print(f"feature selection: leave-one-drive-out log-loss on {len(train)} OK fits of {len(set(groups))} fit drives")
    for loss, names in rows[:8]:
        print(f"    {loss:.4f}  {', '.join(names)}")
    return list(rows[0][1])


def fit_rotation_sigma(X: np.ndarray, err_deg: np.ndarray, iters: int = 100) -> np.ndarray:
    """Weights (bias first) of ``log sigma = w . [1, X]`` maximising the likelihood of rotation
    errors ``err_deg`` (the norm of a 3-vector ~ N(0, sigma^2 I): Maxwell), by Newton's method."""
    A = np.column_stack([np.ones(len(X)), X])
    r2 = np.asarray(err_deg, dtype=np.float64) ** 2
    w = np.zeros(A.shape[1])
    w[0] = 0.5 * np.log(np.mean(r2) / 3.0)
    for _ in range(iters):
        a = r2 * np.exp(-2.0 * (A @ w))
        g = A.T @ (3.0 - a)  # d/dw of sum(3 log sigma + r^2 / (2 sigma^2))
        Hm = (A * (2.0 * a)[:, None]).T @ A + 1e-9 * np.eye(len(w))
        step = np.linalg.solve(Hm, g)
        w -= step
        if np.abs(step).max() < 1e-9:
            break
    return w


def fitted_scores(args, recs) -> dict[str, dict[str, float]]:
    """The coefficients the report scores with: quality.COEFFICIENTS and ROTATION_SIGMA, or
    with ``--fit`` refitted on the fit split (``--fit-features`` picks the homography features;
    printed, to paste into quality.py): logistic regressions for the homography families, the
    rotation error model by maximum likelihood for the essential ones."""
    from matchanything_ros.geometry import quality

    coefs = {fam: dict(c) for fam, c in {**quality.COEFFICIENTS, **quality.ROTATION_SIGMA}.items()}
    if not args.fit:
        return coefs
    for fam in args.fit_families.split(","):
        names = [k for k in coefs[fam] if k != "bias"]
        if fam.startswith("essential"):
            # essential_single: the fit of one polarity's matches of every stereo case
            pool = [{**r, **r["single"]} for r in recs if "single" in r] if fam == "essential_single" else recs
            train = [r for r in pool if r["kind"] == "essential" and r["status"] == "OK" and is_train(r)]
            X = np.array([[r["features"][k] for k in names] for r in train])
            w = fit_rotation_sigma(X, np.array([r["rot_err_deg"] for r in train]))
            coefs[fam] = {"bias": round(float(w[0]), 3), **{k: round(float(v), 3) for k, v in zip(names, w[1:])}}
            print(f"{fam} (rotation sigma, deg): fitted on {len(train)} OK fits of the fit split")
            print("    " + repr(coefs[fam]))
            continue
        # homography_refined: every refit of the fit split (kept or not: which is kept depends
        # on these very coefficients)
        pool = [{**r, **r["refit"]} for r in recs if "refit" in r] if fam == "homography_refined" else recs
        if fam == "homography" and args.fit_features:
            names = args.fit_features.split(",")
        elif fam == "homography" and args.select:
            names = select_features(pool)
        train = [r for r in pool if r["kind"] == "homography" and r["status"] == "OK" and is_train(r)]
        X = np.array([[r["features"][k] for k in names] for r in train])
        y = np.array([float(r["right"]) for r in train])
        w = fit_logistic(X, y)
        coefs[fam] = {"bias": round(float(w[0]), 3), **{k: round(float(v), 3) for k, v in zip(names, w[1:])}}
        print(f"{fam}: fitted on {len(train)} OK fits ({int(y.sum())} right) of the fit split")
        print("    " + repr(coefs[fam]))
    return coefs


def score_of(coefs, rec) -> float | None:
    from matchanything_ros.geometry import quality

    return quality.quality_score(rec["kind"], rec["features"], rec.get("refined", False), coefficients=coefs)


def effective(recs, coefs, refine: bool) -> list[dict]:
    """The records as the pipeline would report them: with ``refine``, a case's refit replaces
    its first fit where the pipeline keeps it (pipeline.refined_is_better on the two scores)."""
    from matchanything_ros.geometry.quality import Quality
    from matchanything_ros.pipeline import refined_is_better

    out = []
    for r in recs:
        if refine and "refit" in r:
            first = Quality(score_of(coefs, r) if r["status"] == "OK" else None)
            ref = {**r, **r["refit"], "refined": True}
            second = Quality(score_of(coefs, ref) if ref["status"] == "OK" else None, dict(ref["features"]))
            if refined_is_better(first, second):
                out.append({**ref, "first_error": r["error"]})
                continue
        out.append({**r, "refined": False, **({"first_error": r["error"]} if refine and "refit" in r else {})})
    return out


def _drive_of(recs):
    from matchanything_ros.evaluation.drives import drives

    d = drives(sorted({r["name"] for r in recs if r["set"] == "road"}))
    return lambda item: d[item[0]["name"]] if item[0]["set"] == "road" else str(item[0]["seed"])


def with_ci(recs, scores, t, drive_of) -> str:
    """OK precision and coverage at min_quality t with 95 % cluster-bootstrap intervals (drives)."""
    from matchanything_ros.evaluation.drives import cluster_bootstrap

    items = list(zip(recs, scores))

    def prec(its):
        ok = [r for r, s in its if is_ok(r, s, t)]
        return sum(r["right"] for r in ok) / len(ok) if ok else float("nan")

    def cov(its):
        return sum(is_ok(r, s, t) for r, s in its) / max(len(its), 1)

    p, c = prec(items), cov(items)
    plo, phi = cluster_bootstrap(items, drive_of, prec)
    clo, chi = cluster_bootstrap(items, drive_of, cov)
    return f"OK precision {p:.3f} [{plo:.3f}, {phi:.3f}], coverage {c:.2f} [{clo:.2f}, {chi:.2f}]"


#: score buckets of the reliability table (lower edges; the last bucket ends at 1)
BUCKETS = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 0.99)


def reliability(recs, scores) -> list[tuple]:
    """(bucket low, high, fits, mean score, share right) of OK-status fits per score bucket."""
    rows = []
    edges = list(BUCKETS) + [1.0 + 1e-9]
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = [(r, s) for r, s in zip(recs, scores) if r["status"] == "OK" and s is not None and lo <= s < hi]
        if sel:
            rows.append((lo, min(hi, 1.0), len(sel), float(np.mean([s for _, s in sel])),
                         float(np.mean([r["right"] for r, _ in sel]))))
    return rows


def wilson(share: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial share (frames of one bucket are not independent
    across warps of one pair: read it as a lower bound on the uncertainty)."""
    if n == 0:
        return float("nan"), float("nan")
    c = share + z * z / (2 * n)
    d = z * np.sqrt(share * (1 - share) / n + z * z / (4 * n * n))
    return (c - d) / (1 + z * z / n), (c + d) / (1 + z * z / n)


def success_rates(recs) -> str:
    """SR@3/5/10 of the fit's corner error, withheld fits included (the verdict ignored)."""
    errs = np.array([r.get("error", np.inf) for r in recs])
    return " / ".join(f"{np.mean(errs <= t):.2f}" for t in (3, 5, 10))


def report(args, recs) -> None:
    from matchanything_ros.pipeline import PipelineConfig

    fit_names(recs)
    coefs = fitted_scores(args, recs)
    recs = effective(recs, coefs, args.refine)
    if args.refine:
        kept = [r for r in recs if r.get("refined")]
        print(f"refinement pass: the refit kept for {len(kept)} of {sum('first_error' in r for r in recs)} cases")
    default = PipelineConfig().min_quality
    drive_of = _drive_of(recs)
    thresholds = [0.0, 0.3, 0.5, 0.6, 0.7, 0.8, 0.85, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98]
    road = lambda r: r["set"] == "road"  # noqa: E731
    groups = [
        ("RoadScene, check drives (never fitted on)", lambda r: road(r) and not is_train(r)),
        ("RoadScene, fit drives", lambda r: road(r) and is_train(r)),
        ("synthetic planar, held-out seeds", lambda r: r["set"] == "planar" and not is_train(r)),
        ("synthetic stereo (essential), held-out seeds", lambda r: r["set"] == "stereo" and not is_train(r)),
        ("synthetic stereo (essential), training seeds", lambda r: r["set"] == "stereo" and is_train(r)),
        ("synthetic stereo, one polarity's matches (essential_single), held-out seeds",
         lambda r: r["set"] == "stereo_single" and not is_train(r)),
    ]
    # the stereo cases fitted with one polarity's matches, as records of their own
    singles = [{**r, **r["single"], "set": "stereo_single"} for r in recs if "single" in r]
    for name, sel in groups:
        rs = [r for r in recs + singles if sel(r)]
        if not rs:
            continue
        scores = [score_of(coefs, r) for r in rs]
        n_img = len({r.get("name", r["key"]) for r in rs})
        n_drv = len({drive_of((r, None)) for r in rs}) if road(rs[0]) else None
        print(f"\n### {name}: {len(rs)} frames" + (f" ({n_img} pairs, {n_drv} drives)" if n_drv else "") + "\n")
        if rs[0]["kind"] == "homography":
            print(f"SR@3/5/10 of the fit (withheld fits included): {success_rates(rs)}")
            if any("first_error" in r for r in rs):
                before = [{"error": r.get("first_error", r.get("error", np.inf))} for r in rs]
                print(f"SR@3/5/10 without the refinement pass: {success_rates(before)}")
        print(f"at min_quality {default:g}: {with_ci(rs, scores, default, drive_of)} (95 % intervals, "
              + ("resampling drives)" if n_drv else "resampling seeds)") + "\n")
        print("| min_quality | OK frames | coverage (OK / frames) | OK precision | right and OK / frames |")
        print("|---|---|---|---|---|")
        for t, n_ok, cov, prec, rec_ in curve(rs, scores, thresholds):
            print(f"| {t:.2f} | {n_ok} | {cov:.2f} | {prec:.3f} | {rec_:.2f} |")
        print("\nReliability (fits with a model, by score bucket):\n")
        print("| score bucket | fits | mean score | share right (95 % Wilson interval) | gap (points) |")
        print("|---|---|---|---|---|")
        for lo, hi, n, ms, sr in reliability(rs, scores):
            wl, wh = wilson(sr, n)
            print(f"| {lo:.2f}-{hi:.2f} | {n} | {ms:.3f} | {sr:.3f} ({wl:.2f}-{wh:.2f}) | {100 * (sr - ms):+.1f} |")
    wrong_oks(recs, coefs, default, args.aligned)
    nees_report(recs, coefs, "all seeds", lambda r: True)
    nees_report(recs, coefs, "held-out seeds", lambda r: not is_train(r))
    if args.plot:
        plot(recs, groups, args.plot, coefs)


def plot(recs, groups, path, coefs) -> None:
    """Precision-coverage curves (one point per min_quality 0.00-0.99) and the reliability
    diagram of the never-fitted RoadScene drives, as one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from matchanything_ros.pipeline import PipelineConfig

    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(11, 4.4), dpi=110)
    ts = [i / 100 for i in range(100)]
    default = PipelineConfig().min_quality
    for name, sel in groups:
        if "training" in name or "fit drives" in name:
            continue
        rs = [r for r in recs if sel(r)]
        if not rs:
            continue
        scores = [score_of(coefs, r) for r in rs]
        pts = [(c, p) for _, _, c, p, _ in curve(rs, scores, ts) if p == p]
        line, = ax.plot([c for c, _ in pts], [p for _, p in pts], marker=".", ms=3, label=f"{name} ({len(rs)})")
        (_, _, c, p, _), = curve(rs, scores, [default])
        if p == p:
            ax.plot([c], [p], "o", ms=8, mfc="none", color=line.get_color())
        if rs[0]["set"] == "road":
            rows = reliability(rs, scores)
            ax2.plot([m for _, _, _, m, _ in rows], [s for _, _, _, _, s in rows], "o-", label=name)
            for lo, hi, n, m, s_ in rows:
                ax2.annotate(str(n), (m, s_), textcoords="offset points", xytext=(4, -10), fontsize=7)
    ax.axhline(0.97, color="grey", ls="--", lw=0.8)
    ax.set_xlabel("coverage (share of frames OK)")
    ax.set_ylabel("OK precision (share of OK frames right)")
    ax.set_title(f"Per-frame verdict, min_quality 0-0.99 (circle: default {default:g})", fontsize=9)
    ax.set_ylim(0.6, 1.01)
    ax.set_xlim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    x = np.linspace(0, 1, 11)
    ax2.plot(x, x, color="grey", lw=0.8)
    ax2.fill_between(x, x - 0.05, x + 0.05, color="grey", alpha=0.15, label="+-5 points")
    ax2.set_xlabel("mean score in bucket (claimed p(right))")
    ax2.set_ylabel("share of the bucket's fits right")
    ax2.set_title("Reliability, score buckets " + ", ".join(f"{b:g}" for b in BUCKETS) + " (n per point)", fontsize=9)
    ax2.set_xlim(0, 1.02)
    ax2.set_ylim(0, 1.02)
    ax2.grid(alpha=0.3)
    ax2.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    fig.savefig(path)
    print(f"\nplot -> {path}")


def nees_report(recs, coefs, label, sel) -> None:
    stereo = [r for r in recs if r["set"] == "stereo" and sel(r)]
    if not stereo:
        return
    from matchanything_ros.pipeline import PipelineConfig

    t = PipelineConfig().min_quality
    ok = [r for r in stereo if is_ok(r, score_of(coefs, r), t)]
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
    within = [r["rot_err_deg"] <= 3 * r["rot_sigma_deg"] for r in ok if "rot_sigma_deg" in r]
    print(f"* rotation error within 3 sigma (per axis, published): {np.mean(within):.2f} of {len(within)} OK frames; "
          f"over all {len(stereo)} fits with a pose: "
          f"{np.mean([r['rot_err_deg'] <= 3 * r['rot_sigma_deg'] for r in stereo if 'rot_sigma_deg' in r]):.2f}")
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


def aligned(args) -> None:
    """The pipeline's fit (defaults, verdict off) on each *unwarped* pair, scored against
    RoadScene's own alignment (identity): how far the data's registration is from what the
    matches say, i.e. the label noise under every warp of that pair. -> ``--aligned`` JSON."""
    from matchanything_ros.commands.accuracy import _find_data
    from matchanything_ros.evaluation.homography_protocol import load_aligned_pairs
    from matchanything_ros.evaluation.metrics import corner_error
    from matchanything_ros.pipeline import Pipeline, PipelineConfig

    pipe = Pipeline(PipelineConfig(model=args.model, min_quality=0.0))
    out = {}
    for folder in [_find_data(d) for d in args.data.split(",") if d.strip()]:
        for pair in load_aligned_pairs(folder):
            res = pipe.process(pair.visible, pair.thermal)
            h, w = pair.visible.shape[:2]
            out[pair.name] = corner_error(res.geometry.matrix if res.ok else None, np.eye(3), w, h)
            print(f"{pair.name}: {out[pair.name]:.1f} px", file=sys.stderr, flush=True)
    Path(args.aligned).write_text(json.dumps(out))
    errs = np.array(list(out.values()))
    print(f"{len(out)} aligned pairs: the fit lands within 3 / 5 / 10 px of the data's alignment for "
          + " / ".join(f"{np.mean(errs <= t):.2f}" for t in (3, 5, 10)) + f" of them -> {args.aligned}")


def wrong_oks(recs, coefs, t, aligned_path) -> None:
    """The check drives' OK fits beyond CORRECT_PX at min_quality t, with the pair's aligned
    offset (``aligned``) where measured."""
    offsets = json.loads(Path(aligned_path).read_text()) if aligned_path and Path(aligned_path).exists() else {}
    bad = [r for r in recs if r["set"] == "road" and not is_train(r) and is_ok(r, score_of(coefs, r), t) and not r["right"]]
    print(f"\nWrong OK fits on the check drives at min_quality {t:g}: {len(bad)}\n")
    for r in sorted(bad, key=lambda r: (r["name"], r["base"])):
        off = offsets.get(r["name"])
        print(f"* {r['name']} (warp base {r['base']}): {r['error']:.1f} px, score {score_of(coefs, r):.3f}"
              + (f"; unwarped, the fit is {off:.1f} px from the data's alignment" if off is not None else ""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("action", choices=("collect", "features", "report", "aligned"))
    p.add_argument("--aligned", default="/tmp/verdict_aligned.json",
                   help="per-pair offset of the unwarped fit from the data's alignment (written by `aligned`)")
    p.add_argument("--features", default="/tmp/verdict_features.json", help="features cache (JSON)")
    p.add_argument("--cache", default="/tmp/verdict_cache")
    p.add_argument("--data", default="../shared/data/roadscene_dev,../shared/data/roadscene_calib",
                   help="comma-separated folders of aligned pairs (split by drive across all of them)")
    p.add_argument("--bases", default="0,100,200,300,400,500,600,700", help="roadscene warp seed bases")
    p.add_argument("--synthetic", type=int, default=200, help="synthetic planar seeds")
    p.add_argument("--stereo", type=int, default=300, help="synthetic stereo seeds")
    p.add_argument("--model", default="xfeat")
    p.add_argument("--fit", action="store_true", help="fit the logistic coefficients on the fit split, print them, "
                   "and report with them")
    p.add_argument("--fit-features", help="with --fit: comma-separated homography features to fit (default: "
                   "those of quality.COEFFICIENTS)")
    p.add_argument("--fit-families", default="homography,essential,essential_single",
                   help="with --fit: the model families to refit")
    p.add_argument("--select", action="store_true", help="with --fit: choose the homography features by "
                   "leave-one-drive-out log-loss on the fit drives")
    p.add_argument("--refresh", action="store_true", help="recompute the features from the match cache")
    p.add_argument("--plot", help="write the precision-coverage curves as a PNG")
    p.add_argument("--fit-synthetic", type=int, default=TRAIN_SYNTHETIC,
                   help="with --fit: synthetic planar seeds below this are fitted on too (default 100; 0: none)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--refine", action="store_true", help="collect: also the refinement pass's matches; report: "
                   "each case as the pipeline with refine=true reports it (the refit where it is kept)")
    args = p.parse_args()
    global FIT_SYNTHETIC_PLANAR
    FIT_SYNTHETIC_PLANAR = args.fit_synthetic
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.action == "collect":
        collect(args)
    elif args.action == "aligned":
        aligned(args)
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
