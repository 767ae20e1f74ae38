"""make-bag -> replay -> evaluate: the metrics read from the output bag are the pipeline's."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from matchanything_ros.bags.make_bag import load_ground_truth, synthetic_frames, write_bag
from matchanything_ros.bags.replay import ReplayOptions, replay
from matchanything_ros.bags.storage import BagError
from matchanything_ros.evaluation import metrics
from matchanything_ros.evaluation.evaluate import FrameOutput, evaluate, format_summary, score_frame
from matchanything_ros.evaluation.report import write_report
from matchanything_ros.pipeline import Pipeline, PipelineConfig

from test_bags import easy_frames  # noqa: E402  (same test folder)

REPO = Path(__file__).resolve().parent.parent
QUIET = ReplayOptions(progress=False)


def run_cli(*args):
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    return subprocess.run([sys.executable, "-m", "matchanything_ros.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def easy_run(tmp_path_factory):
    """3 easy pairs (gray visible warped by a known H) replayed with SIFT; the replay stops
    after 2 pairs (max_pairs=2), so the 3rd is not replayed and must not be scored."""
    root = tmp_path_factory.mktemp("easy")
    gt = write_bag(easy_frames(3), root / "in")
    summary = replay(root / "in", root / "out", pipe_cfg=PipelineConfig(model="sift", polarity="normal"),
                     options=ReplayOptions(progress=False, max_pairs=2))
    return root, gt, summary


def test_easy_pairs_reproduce_known_metrics(easy_run):
    root, gt, summary = easy_run
    assert summary.processed == 2
    ev = evaluate(root / "out", gt)
    s = ev.summary
    # a partial replay: only what was replayed is scored, and the summary says so
    assert s["frames"] == 2 and s["frames_with_output"] == 2
    assert s["partial"] == {"reason": "replay stopped early (max_pairs)", "scored_frames": 2,
                            "not_replayed_frames": 1, "last_stamp_ns": 1_700_000_000_100_000_000}
    assert format_summary(s).splitlines()[0].startswith("PARTIAL REPLAY: replay stopped early (max_pairs); scored the 2")
    h = s["homography"]
    # two pairs registered to a fraction of a pixel
    assert h["failed"] == 0
    assert h["success_rate"] == {"3px": 1.0, "5px": 1.0, "10px": 1.0}
    assert all(f.corner_error_px < 1.0 for f in ev.frames)
    assert s["match_precision_inliers_at_3px"] > 0.95
    assert s["latency_ms"]["frame"]["count"] == 2 and s["latency_ms"]["match"]["median"] > 0


def test_report_files_and_sizes(easy_run, tmp_path):
    root, gt, _ = easy_run
    ev = evaluate(root / "out", gt)
    path = write_report(ev, tmp_path / "report", command="matchanything-ros evaluate out --gt in.gt.json", worst=2)
    text = path.read_text()
    files = {p.name for p in (tmp_path / "report").iterdir()}
    assert {"report.md", "metrics.json", "corner_error_cdf.png", "error_over_time.png", "matches_over_time.png",
            "latency.png", "worst_1.png", "worst_2.png"} <= files
    for name in files:  # every picture the report links exists, and nothing else is linked
        if name.endswith(".png"):
            assert f"]({name})" in text
    assert "| homography SR@3px (corner error) | 100.0% |" in text
    assert "**PARTIAL REPLAY: replay stopped early (max_pairs); scored the 2 frames replayed" in text
    assert "matchanything-ros evaluate out --gt in.gt.json" in text
    assert sum(p.stat().st_size for p in (tmp_path / "report").glob("*.png")) < 1_000_000
    metrics_json = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert len(metrics_json["frames"]) == 2 and metrics_json["summary"]["partial"]["not_replayed_frames"] == 1


def test_cli_folder_bag_metrics_equal_the_accuracy_protocol(tmp_path):
    """make-bag --folder / replay / evaluate on the CLI give exactly the corner errors of the
    accuracy protocol (homography_protocol.evaluate_pair) on the same pairs: nothing is lost
    in the bag round trip and both use the same seeded warps."""
    import cv2

    from matchanything_ros.evaluation.homography_protocol import evaluate_pair, load_aligned_pairs

    folder = tmp_path / "pairs"
    for sub in ("visible", "thermal"):
        (folder / sub).mkdir(parents=True)
    for frame in easy_frames(3, seed=10):  # aligned pairs: thermal = gray visible, unwarped
        cv2.imwrite(str(folder / "visible" / f"{frame.name}.png"), frame.visible)
        cv2.imwrite(str(folder / "thermal" / f"{frame.name}.png"), cv2.cvtColor(frame.visible, cv2.COLOR_BGR2GRAY))
    bag, out = tmp_path / "in", tmp_path / "out"
    proc = run_cli("make-bag", str(bag), "--folder", str(folder), "--seed", "5", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("replay", str(bag), "--out", str(out), "-p", "model=sift", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("evaluate", str(out), "--gt", str(tmp_path / "in.gt.json"), "--json", str(tmp_path / "m.json"),
                   "--report", str(tmp_path / "rep"))
    assert proc.returncode == 0, proc.stderr
    assert "SR@10px 100.0%" in proc.stdout and (tmp_path / "rep" / "report.md").is_file()
    got = json.loads((tmp_path / "m.json").read_text())
    pipeline = Pipeline(PipelineConfig(model="sift"))
    expected = [evaluate_pair(pipeline, pair, 5 + i) for i, pair in enumerate(load_aligned_pairs(folder))]
    assert [f["name"] for f in got["frames"]] == [r.name for r in expected]
    np.testing.assert_allclose([f["corner_error_px"] for f in got["frames"]], [r.corner_error_px for r in expected],
                               rtol=1e-6)
    np.testing.assert_allclose([f["precision_all"] for f in got["frames"]], [r.gt_inlier_ratio for r in expected],
                               rtol=1e-6)


def test_roadscene_make_bag_uses_the_protocol_warps(roadscene_dir, tmp_path):
    from matchanything_ros.bags.make_bag import folder_frames
    from matchanything_ros.evaluation.homography_protocol import load_aligned_pairs, warp_pair

    gt = load_ground_truth(write_bag(folder_frames(roadscene_dir, count=2, seed=0), tmp_path / "rs"))
    frames = sorted(gt["frames"].values(), key=lambda f: f["visible_stamp_ns"])
    for i, pair in enumerate(load_aligned_pairs(roadscene_dir, limit=2)):
        warped, H = warp_pair(pair, i)
        assert frames[i]["name"] == pair.name
        np.testing.assert_allclose(frames[i]["H"], H)
        assert frames[i]["visible_size"] == [pair.visible.shape[1], pair.visible.shape[0]]


def test_pose_through_the_bag_equals_the_pipeline_pose(tmp_path):
    """relative_pose (thermal camera in the visible frame, quaternion) -> back to OpenCV R, t:
    evaluate's errors equal those of the in-process PipelineResult."""
    frames = list(synthetic_frames(1, kind="stereo", size=(320, 256), seed=0))
    gt = write_bag(frames, tmp_path / "in")
    # plumbing (the pose's way through the bag), not the verdict: min_quality 0 keeps the fit
    cfg = PipelineConfig(model="xfeat", geometry="essential", resolution=320, max_matches=1024, min_quality=0.0)
    results = {}
    replay(tmp_path / "in", tmp_path / "out", pipe_cfg=cfg, options=QUIET,
           on_result=lambda stamp, r: results.__setitem__(stamp, r))
    ev = evaluate(tmp_path / "out", gt)
    truth = load_ground_truth(gt)["frames"]
    posed = 0
    for f in ev.frames:
        r = results[f.stamp_ns]
        R_gt, t_gt = np.asarray(truth[str(f.stamp_ns)]["R"]), np.asarray(truth[str(f.stamp_ns)]["t"])
        if not r.ok or r.geometry.R is None:
            assert math.isinf(f.pose_error_deg)
            continue
        posed += 1
        assert f.rotation_error_deg == pytest.approx(metrics.rotation_error_deg(r.geometry.R, R_gt), abs=1e-3)
        assert f.translation_error_deg == pytest.approx(
            metrics.translation_angle_deg(r.geometry.t, t_gt, sign_invariant=True), abs=1e-3)
    assert posed >= 1
    assert set(ev.summary["pose"]["auc"]) == {"5deg", "10deg", "20deg"}
    assert "match_precision_all_at_3px" in ev.summary  # epipolar criterion for stereo frames


def test_score_frame_conventions():
    rng = np.random.default_rng(0)
    import cv2

    R = cv2.Rodrigues(np.array([0.02, -0.05, 0.01]))[0]
    t = np.array([-0.2, 0.01, 0.02])
    K = np.array([[300.0, 0, 160], [0, 300, 128], [0, 0, 1]])
    gt = {"visible_stamp_ns": 1, "name": "s", "kind": "stereo", "R": R.tolist(), "t": t.tolist(),
          "K0": K.tolist(), "K1": K.tolist(), "H": None, "visible_size": [320, 256]}
    # points on a plane 5 m away, projected exactly: epipolar precision 1, pose error 0
    X = np.c_[rng.uniform(-2, 2, (50, 2)), np.full(50, 5.0)]
    x0 = (X @ K.T)[:, :2] / 5.0
    X1 = X @ R.T + t
    x1 = (X1 @ K.T)[:, :2] / X1[:, 2:3]
    out = FrameOutput(1, kpts0=x0, kpts1=x1, scores=np.ones(50), inliers=np.ones(50, bool), R01=R.T, t01=-R.T @ t * 3)
    s = score_frame(gt, out, has_homography_topic=True, has_pose_topic=True)
    assert s.pose_error_deg == pytest.approx(0.0, abs=1e-4) and s.precision_all == 1.0
    assert s.corner_error_px is None  # no homography ground truth for a stereo frame
    tilt = cv2.Rodrigues(np.array([0.0, np.deg2rad(7.0), 0.0]))[0]
    out.R01 = (R @ tilt).T  # estimated orientation off by 7 degrees
    assert score_frame(gt, out, True, True).rotation_error_deg == pytest.approx(7.0, abs=1e-6)
    assert math.isinf(score_frame(gt, None, True, True).pose_error_deg)
    planar = {"visible_stamp_ns": 2, "H": np.eye(3).tolist(), "visible_size": [320, 256]}
    ok = FrameOutput(2, H=np.eye(3))
    assert score_frame(planar, ok, True, False).corner_error_px == 0.0
    assert math.isinf(score_frame(planar, FrameOutput(2), True, False).corner_error_px)


def test_evaluate_errors_are_clear(easy_run, tmp_path):
    root, gt, _ = easy_run
    with pytest.raises(BagError, match="has none of the node's output topics"):
        evaluate(root / "in", gt)  # the input bag, not a replay
    other = write_bag(easy_frames(1, size=(64, 48)), tmp_path / "other", timing=None)
    doc = json.loads(other.read_text())
    doc["frames"] = {str(int(k) + 12345): {**v, "visible_stamp_ns": int(k) + 12345} for k, v in doc["frames"].items()}
    other.write_text(json.dumps(doc))
    with pytest.raises(BagError, match="no output stamp .* matches a ground-truth stamp"):
        evaluate(root / "out", other)
    (tmp_path / "bad.json").write_text("{\"format\": \"something else\", \"frames\": {}}")
    with pytest.raises(BagError, match="not a matchanything_ros ground-truth file"):
        evaluate(root / "out", tmp_path / "bad.json")
    proc = run_cli("evaluate", str(root / "out"), "--gt", str(tmp_path / "missing.json"))
    assert proc.returncode == 2 and "ground truth file not found" in proc.stderr


def test_without_ground_truth_lists_output_frames(easy_run, tmp_path):
    """An own recording: no accuracy, but matches/inliers/status/timings and pictures."""
    root, _, _ = easy_run
    ev = evaluate(root / "out", images=root / "in")
    assert ev.summary["frames"] == 2 and ev.summary["frames_geometry_ok"] == 2
    assert "homography" not in ev.summary and "pose" not in ev.summary
    path = write_report(ev, tmp_path / "r", worst=1)
    assert "No ground truth" in path.read_text() and (tmp_path / "r" / "worst_1.png").is_file()


def test_copy_inputs_makes_the_output_bag_self_contained(tmp_path):
    import shutil

    gt = write_bag(easy_frames(1, size=(160, 128), seed=2), tmp_path / "in")  # 167 SIFT matches (seed 0: ~12)
    replay(tmp_path / "in", tmp_path / "out", pipe_cfg=PipelineConfig(model="sift", polarity="normal"),
           options=ReplayOptions(progress=False, copy_inputs=True))
    shutil.rmtree(tmp_path / "in")  # pictures must now come from the output bag
    ev = evaluate(tmp_path / "out", gt)
    assert ev.summary["homography"]["success_rate"]["3px"] == 1.0
    write_report(ev, tmp_path / "r", worst=1)
    assert (tmp_path / "r" / "worst_1.png").is_file()
