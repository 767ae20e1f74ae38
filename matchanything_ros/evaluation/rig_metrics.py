"""Rig-mode evaluation: the rig estimate's error over time, the verdict's OK precision and
coverage, the drift alarm's delay and the floor set by the data.

Inputs are the scored frames (in stamp order), the node's outputs per frame (``rig/homography``
or ``rig/pose`` and the ``rig_state`` / ``rig_level`` of ``replay/timings``) and the ground
truth (``make-bag --rig-fixed`` / ``--rig-change-frame``, whose ``rig`` entry says where the
geometry changed). Frame indices count the scored frames from 0.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

#: the rig estimate counts as converged (and re-converged after a change) below these errors
RIG_CONVERGED_PX = 3.0
RIG_CONVERGED_ROT_DEG = 0.5
RIG_CONVERGED_TRANS_DEG = 5.0
OK_CORRECT_PX = 10.0  # an OK homography is right within this corner error (SR@10)
OK_CORRECT_DEG = 10.0  # an OK pose is right when rotation and translation direction are within this
FLOOR_PX = 3.0  # a correspondence is ground-truth correct within this transfer error
CHI2_95 = {2: 5.991, 3: 7.815}  # chi-square 95 % quantiles for the NEES checks


def rig_frame_errors(gt: dict, out: Any) -> dict[str, float | None]:
    """Errors of the rig estimate published with this frame (None: no estimate or no truth)."""
    from . import metrics

    res: dict[str, float | None] = {}
    if out is None:
        return res
    if gt.get("H") is not None and out.rig_H is not None:
        w, h = gt["visible_size"]
        res["rig_corner_error_px"] = float(metrics.corner_error(out.rig_H, np.asarray(gt["H"], np.float64), w, h))
    if gt.get("R") is not None and out.rig_R01 is not None:
        R_gt, t_gt = np.asarray(gt["R"], np.float64), np.asarray(gt["t"], np.float64).reshape(3)
        R_est, t_est = out.rig_R01.T, -out.rig_R01.T @ out.rig_t01
        res["rig_rotation_error_deg"] = float(metrics.rotation_error_deg(R_est, R_gt))
        res["rig_translation_error_deg"] = float(metrics.translation_angle_deg(t_est, t_gt))
        if out.rig_cov is not None:
            res.update({f"rig_nees_{k}": v for k, v in pose_nees(out.rig_R01, out.rig_t01, out.rig_cov, R_gt, t_gt).items()})
    return res


def pose_nees(R01, t01, cov, R_gt, t_gt) -> dict[str, float]:
    """Normalised estimation error squared of a published pose covariance: ``rotation`` (3 dof,
    the left rotation R01_gt R01^T) and ``translation`` direction (2 dof, on the tangent plane).
    R01, t01: the thermal camera in the visible frame; R_gt, t_gt: OpenCV's X1 = R X0 + t."""
    import cv2

    R01_gt, p_gt = R_gt.T, -R_gt.T @ t_gt
    d_rot = cv2.Rodrigues(R01_gt @ R01.T)[0].ravel()
    out: dict[str, float] = {}
    try:
        out["rotation"] = float(d_rot @ np.linalg.solve(cov[3:, 3:], d_rot))
    except np.linalg.LinAlgError:
        pass
    u = t01 / np.linalg.norm(t01)
    helper = np.eye(3)[int(np.argmin(np.abs(u)))]
    b1 = np.cross(u, helper)
    b1 /= np.linalg.norm(b1)
    B = np.stack([b1, np.cross(u, b1)])  # 2x3 tangent basis
    g = p_gt / np.linalg.norm(p_gt)
    d_t = B @ (g - u)
    C = B @ cov[:3, :3] @ B.T
    try:
        out["translation"] = float(d_t @ np.linalg.solve(C, d_t))
    except np.linalg.LinAlgError:
        pass
    return out


def _first_stable(values: list[float | None], start: int, limit: float) -> int | None:
    """First index >= start from which every value is <= limit (None values break it)."""
    found = None
    for i in range(start, len(values)):
        v = values[i]
        ok = v is not None and math.isfinite(v) and v <= limit
        if ok and found is None:
            found = i
        elif not ok:
            found = None
    return found


def rig_summary(frames: list[Any], outputs: list[Any], gt_doc: dict, gt_frames: list[dict]) -> dict[str, Any] | None:
    """The ``rig`` section of the evaluation summary; None when the bag has no rig output and
    the ground truth is not a fixed-rig sequence."""
    rig_gt = gt_doc.get("rig") or {}
    have = any(getattr(f, "rig_corner_error_px", None) is not None or getattr(f, "rig_rotation_error_deg", None) is not None
               for f in frames)
    states = [(o.timings.get("rig_state") if o is not None else None) for o in outputs]
    if not have and not rig_gt and not any(states):
        return None
    n = len(frames)
    change = rig_gt.get("change_frame")
    steady_end = change if change is not None else n
    summary: dict[str, Any] = {"fixed_rig_ground_truth": bool(rig_gt), "change_frame": change}
    # the verdict: OK precision and coverage over the frames
    ok = [f for f in frames if f.status == "OK"]
    correct = [f for f in ok if _frame_correct(f)]
    summary["ok_frames"] = len(ok)
    summary["coverage"] = len(ok) / n if n else 0.0
    summary["ok_precision"] = len(correct) / len(ok) if ok else None
    summary["rig_mismatch_frames"] = sum(f.status == "RIG_MISMATCH" for f in frames)
    homography = any(g.get("H") is not None for g in gt_frames)
    if homography:
        err = [getattr(f, "rig_corner_error_px", None) for f in frames]
        summary["error_key"] = "rig_corner_error_px"
        summary.update(_error_stats(err, steady_end, RIG_CONVERGED_PX, "px"))
        summary["floor_px"] = _floor(outputs[: min(20, steady_end)], gt_frames[: min(20, steady_end)])
        summary["floor_frames"] = min(20, steady_end)
    else:
        rot = [getattr(f, "rig_rotation_error_deg", None) for f in frames]
        tra = [getattr(f, "rig_translation_error_deg", None) for f in frames]
        summary["error_key"] = "rig_rotation_error_deg"
        summary["rotation"] = _error_stats(rot, steady_end, RIG_CONVERGED_ROT_DEG, "deg")
        summary["translation"] = _error_stats(tra, steady_end, RIG_CONVERGED_TRANS_DEG, "deg")
        for key, dof in (("rig_nees_rotation", 3), ("rig_nees_translation", 2)):
            vals = [getattr(f, key, None) for f in frames[min(20, n):steady_end]]
            vals = [v for v in vals if v is not None and math.isfinite(v)]
            if vals:
                summary[key.removeprefix("rig_")] = {
                    "frames": len(vals), "median": float(np.median(vals)),
                    "share_within_chi2_95": float(np.mean(np.asarray(vals) <= CHI2_95[dof])), "dof": dof}
        err = [None if r is None or t is None else max(r / RIG_CONVERGED_ROT_DEG, t / RIG_CONVERGED_TRANS_DEG)
               for r, t in zip(rot, tra)]
    # the drift alarm
    levels = [int(o.timings.get("rig_level", 0)) if o is not None and "rig_level" in o.timings else 0 for o in outputs]
    alarm: dict[str, Any] = {
        "warn_frames_before_change": sum(lv >= 1 for lv in levels[:steady_end]),
        "error_frames_before_change": sum(lv >= 2 for lv in levels[:steady_end]),
    }
    if change is not None and change < n:
        warn = next((i for i in range(change, n) if levels[i] >= 1), None)
        error = next((i for i in range(change, n) if levels[i] >= 2), None)
        limit = 1.0 if not homography else RIG_CONVERGED_PX
        again = _first_stable(err, change, limit)
        alarm.update(
            warn_frame=warn, error_frame=error,
            warn_delay_frames=None if warn is None else warn - change,
            error_delay_frames=None if error is None else error - change,
            reconverged_frame=again, reconverged_delay_frames=None if again is None else again - change)
    summary["alarm"] = alarm
    return summary


def _frame_correct(f: Any) -> bool:
    if f.corner_error_px is not None:
        return math.isfinite(f.corner_error_px) and f.corner_error_px <= OK_CORRECT_PX
    if f.pose_error_deg is not None:
        return math.isfinite(f.pose_error_deg) and f.pose_error_deg <= OK_CORRECT_DEG
    return False


def _error_stats(err: list[float | None], steady_end: int, limit: float, unit: str) -> dict[str, Any]:
    def pick(lo, hi):
        return [e for e in err[lo:hi] if e is not None and math.isfinite(e)]

    after20 = pick(20, steady_end)
    first = _first_stable(err[:steady_end], 0, limit)
    return {
        f"after_20_frames_max_{unit}": max(after20) if after20 else None,
        f"after_20_frames_median_{unit}": float(np.median(after20)) if after20 else None,
        f"final_{unit}": next((e for e in reversed(err) if e is not None), None),
        "converged_frame": first,  # first frame from which the error stays <= the limit
        f"converged_limit_{unit}": limit,
    }


def _floor(outputs: list[Any], gt_frames: list[dict]) -> float | None:
    """Corner error of ONE least-squares homography fitted to the ground-truth-correct
    correspondences (transfer error <= FLOOR_PX under the frame's true H) pooled over these
    frames: what the data allow at best (RoadScene's own alignment is good to a few px)."""
    import cv2

    from . import metrics

    p0, p1 = [], []
    for out, gt in zip(outputs, gt_frames):
        if out is None or out.kpts0 is None or gt.get("H") is None:
            continue
        H = np.asarray(gt["H"], np.float64)
        err = metrics.homography_reprojection_errors(out.kpts0, out.kpts1, H)
        keep = err <= FLOOR_PX
        p0.append(out.kpts0[keep])
        p1.append(out.kpts1[keep])
    if not p0 or sum(len(p) for p in p0) < 4:
        return None
    H_fit, _ = cv2.findHomography(np.concatenate(p0).astype(np.float64), np.concatenate(p1).astype(np.float64), 0)
    if H_fit is None:
        return None
    gt = gt_frames[0]
    w, h = gt["visible_size"]
    return float(metrics.corner_error(H_fit, np.asarray(gt["H"], np.float64), w, h))


def format_rig(summary: dict[str, Any]) -> list[str]:
    """Terminal lines for the rig section."""
    r = summary
    prec = "n/a" if r["ok_precision"] is None else f"{100 * r['ok_precision']:.1f}%"
    lines = [f"verdict: {r['ok_frames']} OK ({100 * r['coverage']:.1f}% coverage), OK precision {prec}, "
             f"{r['rig_mismatch_frames']} RIG_MISMATCH"]
    if "after_20_frames_max_px" in r:
        lines.append(
            f"rig homography: corner error after 20 frames max {_f(r['after_20_frames_max_px'])} px, median "
            f"{_f(r['after_20_frames_median_px'])} px; below {r['converged_limit_px']:g} px from frame "
            f"{r['converged_frame']}; floor {_f(r.get('floor_px'))} px (one fit to the GT-correct matches of "
            f"{r.get('floor_frames')} frames)")
    for key in ("rotation", "translation"):
        if key in r:
            s = r[key]
            lines.append(f"rig {key}: error after 20 frames max {_f(s['after_20_frames_max_deg'])} deg, median "
                         f"{_f(s['after_20_frames_median_deg'])} deg; below {s['converged_limit_deg']:g} deg from "
                         f"frame {s['converged_frame']}")
    for key in ("nees_rotation", "nees_translation"):
        if key in r:
            s = r[key]
            lines.append(f"rig {key.replace('_', ' ')} ({s['dof']} dof, frames 20+): median {s['median']:.2f}, "
                         f"{100 * s['share_within_chi2_95']:.0f}% within the chi-square 95% bound")
    a = r["alarm"]
    if "warn_frame" in a:
        lines.append(f"rig change at frame {r['change_frame']}: WARN after {a['warn_delay_frames']} frames, ERROR after "
                     f"{a['error_delay_frames']}, re-converged after {a['reconverged_delay_frames']} frames")
    lines.append(f"rig alarms before any change: {a['warn_frames_before_change']} WARN frames, "
                 f"{a['error_frames_before_change']} ERROR frames")
    return lines


def _f(v: Any) -> str:
    return "n/a" if v is None else f"{v:.2f}"
