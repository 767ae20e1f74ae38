"""Markdown report with PNG plots (matplotlib, Agg) for an :class:`~.evaluate.Evaluation`.

Writes into one folder: ``report.md``, ``metrics.json`` (summary + per-frame scores) and
``corner_error_cdf.png`` / ``pose_error_cdf.png`` (error CDFs), ``error_over_time.png``,
``matches_over_time.png``, ``latency.png`` and ``worst_<i>.png`` (the worst frames' matches
drawn with ``viz.draw_matches``, downscaled to ``thumb_width`` pixels).
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from .evaluate import HOMOGRAPHY_THRESHOLDS_PX, POSE_THRESHOLDS_DEG, PRECISION_PX, Evaluation, FrameScore
from ..json_out import dumps, jsonable


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a display
    import matplotlib.pyplot as plt

    return plt


def _times(frames: list[FrameScore]) -> np.ndarray:
    t0 = frames[0].stamp_ns if frames else 0
    return np.array([(f.stamp_ns - t0) / 1e9 for f in frames])


def plot_cdf(errors: list[float], thresholds: tuple[float, ...], unit: str, title: str, path: Path) -> None:
    """Cumulative fraction of frames below each error; failures (inf) keep the curve below 1."""
    plt = _plt()
    e = np.sort(np.asarray(errors, dtype=np.float64))
    xmax = 2 * max(thresholds)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    shown = e[e <= xmax]  # larger errors and failures (inf) keep the curve below 1
    xs = np.concatenate([[0.0], shown, [xmax]])
    ys = np.concatenate([[0.0], np.arange(1, len(shown) + 1) / len(e), [len(shown) / len(e)]])
    ax.step(xs, ys, where="post", lw=2)
    for t in thresholds:
        ax.axvline(t, color="grey", ls="--", lw=1)
        ax.text(t, 0.02, f" {t:g} {unit}", color="grey", fontsize=8)
    ax.set_xlim(0, xmax)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(f"error ({unit})")
    ax.set_ylabel("fraction of frames")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_error_over_time(frames: list[FrameScore], unit: str, clip: float, path: Path) -> None:
    """Per-frame error against stamp time; failed frames drawn as red crosses at the clip line."""
    plt = _plt()
    t = _times(frames)
    e = np.array([f.error if f.error is not None else np.nan for f in frames], dtype=np.float64)
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ok = np.isfinite(e)
    ax.plot(t[ok], np.minimum(e[ok], clip), "o-", ms=3, lw=1, label="error")
    failed = np.isinf(e)
    if failed.any():
        ax.plot(t[failed], np.full(failed.sum(), clip), "rx", ms=7, label="failed (no estimate)")
    ax.set_ylim(0, clip * 1.05)
    ax.set_xlabel("time (s, visible stamp)")
    ax.set_ylabel(f"error ({unit}, clipped at {clip:g})")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_matches_over_time(frames: list[FrameScore], path: Path) -> None:
    plt = _plt()
    t = _times(frames)
    fig, ax = plt.subplots(figsize=(8, 3.5), dpi=100)
    ax.plot(t, [f.num_matches for f in frames], "o-", ms=3, lw=1, label="matches")
    ax.plot(t, [f.num_inliers for f in frames], "o-", ms=3, lw=1, label="inliers")
    ax.set_xlabel("time (s, visible stamp)")
    ax.set_ylabel("count")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_latency(frames: list[FrameScore], path: Path) -> bool:
    """Per-frame stage times over time and a histogram of the per-frame cost; False if none."""
    keys = [k for k in ("frame_ms", "pipeline_ms", "match_ms", "geometry_ms") if any(k in f.timings for f in frames)]
    if not keys:
        return False
    plt = _plt()
    t = _times(frames)
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(10, 3.5), dpi=100, gridspec_kw={"width_ratios": [2, 1]})
    for k in keys:
        a0.plot(t, [f.timings.get(k, np.nan) for f in frames], lw=1, label=k.removesuffix("_ms"))
    a0.set_xlabel("time (s, visible stamp)")
    a0.set_ylabel("ms")
    a0.grid(alpha=0.3)
    a0.legend(fontsize=8)
    main = keys[0]
    a1.hist([f.timings[main] for f in frames if main in f.timings], bins=20)
    a1.set_xlabel(f"{main.removesuffix('_ms')} (ms)")
    a1.set_ylabel("frames")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def _find_images(ev: Evaluation, wanted: dict[int, int | None]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Visible/thermal arrays for visible stamps (value: the thermal stamp used, or None for
    the GT one), from the output bag (``--copy-inputs``), ``ev.images``, or the GT's bag."""
    from ..bags.replay import resolve
    from ..node.pair_io import decode_any
    from ..bags.storage import BagReader
    from ..node.config import TopicsConfig

    topics = ev.ground_truth.get("topics") or {}
    vis_topic = topics.get("visible_image") or resolve(TopicsConfig.visible_image, ev.namespace)
    th_topic = topics.get("thermal_image") or resolve(TopicsConfig.thermal_image, ev.namespace)
    th_for = {}
    for vs, ts in wanted.items():
        gt = ev.ground_truth["frames"].get(str(vs), {})
        th_for[vs] = ts if ts is not None else gt.get("thermal_stamp_ns")
    candidates = [ev.bag, ev.images]
    if ev.gt_path is not None and ev.ground_truth.get("bag"):
        candidates.append(ev.gt_path.parent / ev.ground_truth["bag"])
    for bag in candidates:
        if bag is None or not Path(bag).exists():
            continue
        with BagReader(bag) as reader:
            if vis_topic not in reader.topics or th_topic not in reader.topics:
                continue
            vis: dict[int, np.ndarray] = {}
            th: dict[int, np.ndarray] = {}
            th_needed = {v for v in th_for.values() if v is not None}
            for topic, _, msg in reader.messages([vis_topic, th_topic]):
                s = int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
                if topic == vis_topic and s in wanted:
                    vis[s] = decode_any(msg, "visible")
                elif topic == th_topic and s in th_needed:
                    th[s] = decode_any(msg, "thermal")
            return {vs: (vis[vs], th[th_for[vs]]) for vs in wanted if vs in vis and th_for[vs] in th}
    return {}


def draw_worst(ev: Evaluation, out_dir: Path, count: int, thumb_width: int) -> list[tuple[FrameScore, str]]:
    """Draw the ``count`` worst frames (largest error, failures first); [(frame, png name)]."""
    import cv2

    from ..viz import draw_matches

    scored = [f for f in ev.frames if f.error is not None]
    if scored:
        worst = sorted(scored, key=lambda f: (-f.error if math.isfinite(f.error) else -math.inf, f.stamp_ns))[:count]
    else:  # no ground truth: the frames with the fewest inliers
        worst = sorted(ev.frames, key=lambda f: (f.num_inliers, f.stamp_ns))[:count]
    if not worst:
        return []
    wanted = {}
    for f in worst:
        ts = ev.outputs.get(f.stamp_ns).timings.get("thermal_stamp_ns") if f.stamp_ns in ev.outputs else None
        wanted[f.stamp_ns] = int(ts) if ts else None
    images = _find_images(ev, wanted)
    drawn = []
    for i, f in enumerate(worst):
        if f.stamp_ns not in images:
            continue
        visible, thermal = images[f.stamp_ns]
        out = ev.outputs.get(f.stamp_ns)
        if out is not None and out.kpts0 is not None:
            canvas = draw_matches(visible, thermal, (out.kpts0, out.kpts1), out.inliers, title=f.name,
                                     outliers=True)  # worst frames: the outliers are the diagnosis
        else:
            canvas = draw_matches(visible, thermal, (np.zeros((0, 2)), np.zeros((0, 2))), title=f"{f.name}: no output")
        scale = thumb_width / canvas.shape[1]
        if scale < 1:
            canvas = cv2.resize(canvas, (thumb_width, round(canvas.shape[0] * scale)), interpolation=cv2.INTER_AREA)
        name = f"worst_{i + 1}.png"
        cv2.imwrite(str(out_dir / name), canvas, [cv2.IMWRITE_PNG_COMPRESSION, 9])
        drawn.append((f, name))
    return drawn


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _num(v: float | None, digits: int = 2) -> str:
    if v is None:
        return "-"
    return "fail" if math.isinf(v) else f"{v:.{digits}f}"


def frame_rows(frames: list[FrameScore]) -> list[dict[str, Any]]:
    """Per-frame scores as JSON-ready dicts (infinite errors as "inf")."""
    return [jsonable(dict(f.__dict__)) for f in frames]


def write_report(ev: Evaluation, out_dir: str | Path, *, command: str = "", worst: int = 3, thumb_width: int = 640) -> Path:
    """Write report.md, metrics.json and the PNGs into ``out_dir``; returns report.md's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    s, frames = ev.summary, ev.frames
    (out_dir / "metrics.json").write_text(dumps({"summary": s, "frames": frame_rows(frames)}))

    md = ["# Matching evaluation report", ""]
    if not s.get("ground_truth", True):
        md += ["No ground truth: matches, inliers, geometry status and timings only.", ""]
    from .evaluate import partial_line

    if partial_line(s):
        md += [f"**{partial_line(s)}.**", ""]
    if command:
        md += ["Produced by:", "", "```", command, "```", ""]
    source = ev.ground_truth.get("source", "")
    md += [
        f"- output bag: `{ev.bag.name}`; ground truth: "
        + (f"`{ev.gt_path.name}`" if ev.gt_path else "none")
        + (f" ({source})" if source else ""),
        f"- frames: {s['frames']} ({s['frames_with_output']} with output, {s['frames_geometry_ok']} geometry OK"
        + (f"; {s['frames_without_pair_by_design']} without a thermal partner by design" if s.get("frames_without_pair_by_design") else "")
        + ")",
        f"- output topics read: {', '.join(f'`{t}`' for t in s.get('output_topics', []))}",
        *(["- node (last /diagnostics): " + ", ".join(f"{k} `{v}`" for k, v in s["node"].items())] if s.get("node") else []),
        "",
        "## Accuracy" if s.get("ground_truth", True) else "## Matches",
        "",
        "| metric | value |",
        "|---|---|",
    ]
    if "homography" in s:
        h = s["homography"]
        for k, v in h["success_rate"].items():
            md.append(f"| homography SR@{k} (corner error) | {_pct(v)} |")
        for k, v in h["auc"].items():
            md.append(f"| homography AUC@{k} | {_pct(v)} |")
        md.append(f"| homography failures (no estimate) | {h['failed']} / {h['frames']} |")
        median = h["corner_error_median_px"]
        md.append(f"| median corner error | {'no estimate for half the frames or more' if math.isinf(median) else f'{median:.2f} px'} |")
    if "pose" in s:
        p = s["pose"]
        for k, v in p["auc"].items():
            md.append(f"| pose AUC@{k} (max of rotation, translation angle) | {_pct(v)} |")
        md.append(f"| pose failures (no estimate) | {p['failed']} / {p['frames']} |")
        median = p["pose_error_median_deg"]
        md.append(f"| median pose error | {'no estimate for half the frames or more' if math.isinf(median) else f'{median:.2f} deg'} |")
    for key, label in (("all", "all matches"), ("inliers", "inliers")):
        k = f"match_precision_{key}_at_{PRECISION_PX:g}px"
        if k in s:
            md.append(f"| match precision @{PRECISION_PX:g} px, {label} | {_pct(s[k])} |")
    md.append(f"| matches / inliers per published frame (mean) | {s['matches_mean']:.0f} / {s['inliers_mean']:.0f} |")
    md += [""]

    lat = s.get("latency_ms")
    if lat:
        md += ["## Latency (replay, per frame, ms)", "", "| stage | mean | median | p90 | p99 | max |", "|---|---|---|---|---|---|"]
        for key in ("decode", "preprocess", "match", "geometry", "pipeline", "outputs", "frame", "sync_wait", "latency"):
            v = lat.get(key)
            if v:
                md.append(f"| {key} | {v['mean']:.1f} | {v['median']:.1f} | {v['p90']:.1f} | {v['p99']:.1f} | {v['max']:.1f} |")
        md += [
            "",
            "`frame` = decode + pipeline + output messages (the node's cost per pair); `latency` = "
            "`sync_wait` (pair completed - visible stamp) + `frame`. Measured during the replay on its "
            "machine; compare timings only from one machine and one run.",
            "",
        ]

    md += ["## Plots", ""]
    corner = [f.corner_error_px for f in frames if f.corner_error_px is not None]
    if corner:
        plot_cdf(corner, HOMOGRAPHY_THRESHOLDS_PX, "px", "Homography corner error CDF", out_dir / "corner_error_cdf.png")
        md += ["![corner error CDF](corner_error_cdf.png)", ""]
    pose = [f.pose_error_deg for f in frames if f.pose_error_deg is not None]
    if pose:
        plot_cdf(pose, POSE_THRESHOLDS_DEG, "deg", "Pose error CDF (max of rotation, translation angle)", out_dir / "pose_error_cdf.png")
        md += ["![pose error CDF](pose_error_cdf.png)", ""]
    if corner or pose:
        unit, clip = ("px", 2 * max(HOMOGRAPHY_THRESHOLDS_PX)) if corner else ("deg", 2 * max(POSE_THRESHOLDS_DEG))
        plot_error_over_time(frames, unit, clip, out_dir / "error_over_time.png")
        md += ["![error over time](error_over_time.png)", ""]
    plot_matches_over_time(frames, out_dir / "matches_over_time.png")
    md += ["![matches and inliers over time](matches_over_time.png)", ""]
    if plot_latency(frames, out_dir / "latency.png"):
        md += ["![latency](latency.png)", ""]

    drawn = draw_worst(ev, out_dir, worst, thumb_width) if worst > 0 else []
    if drawn:
        rule = "Largest error first" if any(f.error is not None for f in frames) else "Fewest inliers first"
        md += ["## Worst frames", "", f"{rule}; inliers green, outliers red (`viz.draw_matches`), downscaled.", ""]
        for f, name in drawn:
            md += [f"**{f.name or f.stamp_ns}** (stamp {f.stamp_ns}): error {_num(f.error)}, "
                   f"{f.num_inliers}/{f.num_matches} inliers, status {f.status}", "", f"![{name}]({name})", ""]

    md += ["## Per frame", "", "| stamp (ns) | name | status | matches | inliers | corner err (px) | pose err (deg) | precision@3px |",
           "|---|---|---|---|---|---|---|---|"]
    for f in frames:
        md.append(
            f"| {f.stamp_ns} | {f.name} | {f.status} | {f.num_matches} | {f.num_inliers} | "
            f"{_num(f.corner_error_px)} | {_num(f.pose_error_deg)} | {_pct(f.precision_all)} |"
        )
    md.append("")
    path = out_dir / "report.md"
    path.write_text("\n".join(md))
    return path
