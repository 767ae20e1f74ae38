"""Rig mode (matchanything_ros/rig.py): the pooled estimate, its covariance, the gate and the
drift alarm, on synthetic correspondences fitted by the real geometry code (no matcher)."""
import math

import cv2
import numpy as np
import pytest

from matchanything_ros.geometry import estimate_geometry
from matchanything_ros.matching import Matches
from matchanything_ros.pipeline import Pipeline, PipelineConfig, PipelineResult
from matchanything_ros.rig import CHANGED, RIG_MISMATCH, TRACKING, RigConfig, RigEstimator, corner_distance

SIZE = (640, 480)
H_TRUE = np.array([[0.95, -0.04, 18.0], [0.03, 1.02, -11.0], [2e-5, -1e-5, 1.0]])


def _apply(H, p):
    q = np.c_[p, np.ones(len(p))] @ H.T
    return q[:, :2] / q[:, 2:]


def _roll(H, deg):
    """H followed by a rotation of the thermal camera about its optical axis (nominal K)."""
    K = np.array([[SIZE[0], 0, (SIZE[0] - 1) / 2], [0, SIZE[0], (SIZE[1] - 1) / 2], [0, 0, 1]])
    R = cv2.Rodrigues(np.array([0.0, 0.0, np.deg2rad(deg)]))[0]
    M = K @ R @ np.linalg.inv(K) @ H
    return M / M[2, 2]


def _result(p0, p1, geometry) -> PipelineResult:
    return PipelineResult(Matches(p0, p1, np.ones(len(p0))), geometry, "both", "synthetic", {"total": 0.0},
                          (SIZE[1], SIZE[0]), (SIZE[1], SIZE[0]))


def _h_frame(rng, H, wrong=False) -> PipelineResult:
    """A frame's matches: 150 true ones (0.8 px noise) + 100 random ones; a *wrong* frame has
    only 15 true ones, 60 that fit another homography 25-60 px away, and random ones: MAGSAC
    locks onto the wrong model, as on a night frame."""
    n_true = 15 if wrong else 150
    p0 = rng.uniform([0, 0], SIZE, (n_true, 2))
    p1 = _apply(H, p0) + rng.normal(0, 0.8, p0.shape)
    parts0, parts1 = [p0], [p1]
    if wrong:
        Hw = H.copy()
        Hw[:2, 2] += rng.uniform(25, 60, 2) * rng.choice([-1, 1], 2)
        q0 = rng.uniform([0, 0], SIZE, (60, 2))
        parts0.append(q0)
        parts1.append(_apply(Hw, q0) + rng.normal(0, 0.8, q0.shape))
    r0 = rng.uniform([0, 0], SIZE, (100, 2))
    parts0.append(r0)
    parts1.append(rng.uniform([0, 0], SIZE, (100, 2)))
    k0, k1 = np.concatenate(parts0), np.concatenate(parts1)
    return _result(k0, k1, estimate_geometry(k0, k1, "homography", min_matches=12))


def _run(rig, frames):
    checks = [rig.update(r) for r in frames]
    return checks


def test_homography_rig_pools_evidence_gates_wrong_frames_and_shrinks_its_covariance():
    rng = np.random.default_rng(0)
    rig = RigEstimator(RigConfig(enabled=True), "homography", 3.0)
    wrong = [i % 3 == 2 for i in range(45)]  # a third of the frames fit a wrong model
    sigmas, checks = [], []
    for i, bad in enumerate(wrong):
        r = _h_frame(rng, H_TRUE, bad)
        assert r.geometry.ok
        if bad:
            assert corner_distance(r.geometry.matrix, H_TRUE, SIZE) > 15  # the frame is really wrong
        checks.append(rig.update(r))
        est = rig.snapshot()
        sigmas.append(est.sigma if est else math.inf)
    est = rig.snapshot()
    assert est.converged and est.state == TRACKING and est.level == 0
    # pooled evidence: far better than any single frame (0.8 px noise, 150 matches)
    assert corner_distance(est.model.H, H_TRUE, SIZE) < 0.3
    assert sigmas[8] > sigmas[-1] and sigmas[-1] < 0.2
    after = range(6, len(wrong))
    assert all(checks[i].status == RIG_MISMATCH for i in after if wrong[i])
    assert all(checks[i].status == "OK" for i in after if not wrong[i])
    # the wrong frames never raise the drift alarm
    assert all(c.level == 0 for c in checks)


def test_homography_drift_alarm_and_reconvergence_after_a_knocked_camera():
    rng = np.random.default_rng(1)
    rig = RigEstimator(RigConfig(enabled=True), "homography", 3.0)
    H2 = _roll(H_TRUE, 2.0)  # the thermal camera turned 2 degrees at frame 30
    assert corner_distance(H2, H_TRUE, SIZE) > 10
    levels, errors, frames_before = [], [], None
    for i in range(60):
        H = H_TRUE if i < 30 else H2
        check = rig.update(_h_frame(rng, H, wrong=i % 4 == 3))
        levels.append(check.level)
        est = rig.snapshot()
        errors.append(corner_distance(est.model.H, H, SIZE))
        if i == 29:
            frames_before = est.frames
        if 30 <= i < 33 and i % 4 != 3:
            assert check.status == RIG_MISMATCH  # the new geometry disagrees with the estimate
        if 30 <= i < 33 and check.level == 0:
            # a RIG_MISMATCH frame does not pull the estimate toward the new geometry
            assert est.frames == frames_before and corner_distance(est.model.H, H_TRUE, SIZE) < 0.5
    assert max(levels[:30]) == 0
    warn = next(i for i in range(30, 60) if levels[i] >= 1)
    error = next(i for i in range(30, 60) if levels[i] >= 2)
    assert warn - 30 <= 5 and error - 30 <= 5
    again = next(i for i in range(30, 60) if all(e < 1.0 for e in errors[i:]))
    assert again - 30 <= 15
    est = rig.snapshot()
    assert est.changes == 1 and est.state == CHANGED and est.level == 2  # held after the change
    level, message, values = rig.status()
    assert level == 2 and "changed" in message and values["rig_changes"] == 1


def _stereo_frame(rng, K, R, t, n=200, noise=0.5):
    X = np.c_[rng.uniform(-6, 6, n), rng.uniform(-2, 2, n), rng.uniform(4, 30, n)]
    x0 = X @ K.T
    x0 = x0[:, :2] / x0[:, 2:]
    X1 = X @ R.T + t
    x1 = X1 @ K.T
    x1 = x1[:, :2] / x1[:, 2:]
    x0 = x0 + rng.normal(0, noise, x0.shape)
    x1 = x1 + rng.normal(0, noise, x1.shape)
    g = estimate_geometry(x0, x1, "essential", K0=K, K1=K, threshold_px=2.0, min_matches=30)
    return _result(x0, x1, g)


def test_essential_rig_rotation_and_translation_direction_with_a_consistent_covariance():
    rng = np.random.default_rng(2)
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    R = cv2.Rodrigues(np.array([0.01, -0.02, 0.005]))[0]
    centre = np.array([0.25, 0.02, 0.01])
    t = -R @ centre
    rig = RigEstimator(RigConfig(enabled=True), "essential", 2.0)
    for _ in range(20):
        rig.update(_stereo_frame(rng, K, R, t), K, K)
    est = rig.snapshot()
    assert est.converged and est.mode == "essential"
    rot_err = np.degrees(np.linalg.norm(cv2.Rodrigues(est.model.R.T @ R)[0]))
    cos = abs(est.model.t @ t) / np.linalg.norm(t)
    trans_err = np.degrees(np.arccos(min(1.0, cos)))
    assert rot_err < 0.1 and trans_err < 2.0
    # covariance: the rotation error within 4 sigma, the scale direction huge
    assert rot_err < 4 * est.sigma + 1e-3
    assert est.covariance.shape == (6, 6)
    u = -est.model.R.T @ est.model.t
    assert u @ est.covariance[:3, :3] @ u > 1e5


def test_rig_disabled_for_unsupported_geometry_and_config_validation():
    rig = RigEstimator(RigConfig(enabled=True), "fundamental", 3.0)
    rng = np.random.default_rng(3)
    check = rig.update(_h_frame(rng, H_TRUE))
    assert check.status == "UNCHECKED" and rig.status()[0] == 1 and "fundamental" in rig.status()[1]
    with pytest.raises(ValueError, match="rig.recent"):
        RigConfig(recent=1).validate()
    with pytest.raises(ValueError, match="rig.window"):
        PipelineConfig.from_dict({"rig.enabled": True, "rig.window": 1})
    cfg = PipelineConfig.from_dict({"rig.enabled": True, "rig.gate_px": 4.0})
    assert cfg.rig.enabled and cfg.rig.gate_px == 4.0


def test_pipeline_result_status_and_outputs_for_a_rig_mismatch():
    from matchanything_ros.node.outputs import OutputBuilder, rosbags_types

    rng = np.random.default_rng(4)
    rig = RigEstimator(RigConfig(enabled=True), "homography", 3.0)
    for _ in range(8):
        rig.update(_h_frame(rng, H_TRUE))
    bad = _h_frame(rng, H_TRUE, wrong=True)
    bad.rig = rig.update(bad)
    assert bad.geometry.ok and bad.rig.status == RIG_MISMATCH
    assert not bad.ok and bad.status == RIG_MISMATCH and "disagrees with the rig estimate" in bad.status_message
    out = OutputBuilder(rosbags_types())
    assert out.homography(bad) is None  # not published as a trusted fit
    assert bad.to_dict(include_matches=False)["status"] == RIG_MISMATCH


def test_calibration_file_is_written_atomically_and_reads_back(tmp_path):
    from matchanything_ros.node.rig_outputs import read_calibration, write_calibration

    rng = np.random.default_rng(5)
    rig = RigEstimator(RigConfig(enabled=True), "homography", 3.0)
    for _ in range(8):
        rig.update(_h_frame(rng, H_TRUE))
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "rig.yaml"
    write_calibration(path, rig.snapshot(), "vis", "th", 123)
    doc = read_calibration(path)
    assert doc["mode"] == "homography" and doc["parent_frame"] == "vis" and doc["converged"]
    H = np.asarray(doc["homography"]["matrix"]).reshape(3, 3)
    assert corner_distance(H, H_TRUE, SIZE) < 1.0
    assert len(doc["homography"]["corner_covariance_px2"]) == 64
    assert [p.name for p in path.parent.iterdir()] == ["rig.yaml"]  # no temp file left
    (tmp_path / "other.yaml").write_text("a: 1\n")
    with pytest.raises(ValueError, match="not a matchanything_ros rig calibration"):
        read_calibration(tmp_path / "other.yaml")


def test_calibration_file_never_follows_or_replaces_what_is_not_its_file(tmp_path):
    """Hostile paths and frames (issue 18): no folder is created, a symlink, FIFO or folder at
    the path is left alone, a frame id that is not one is refused, and every string is quoted."""
    import os

    from matchanything_ros.node.rig_outputs import write_calibration

    rng = np.random.default_rng(5)
    rig = RigEstimator(RigConfig(enabled=True), "homography", 3.0)
    for _ in range(8):
        rig.update(_h_frame(rng, H_TRUE))
    est = rig.snapshot()
    with pytest.raises(ValueError, match="does not exist"):
        write_calibration(tmp_path / "missing" / "rig.yaml", est, "vis", "th", 1)
    assert not (tmp_path / "missing").exists()
    victim = tmp_path / "victim.conf"
    victim.write_text("important\n")
    (tmp_path / "link.yaml").symlink_to(victim)
    os.mkfifo(tmp_path / "fifo.yaml")
    (tmp_path / "dir.yaml").mkdir()
    for name in ("link.yaml", "fifo.yaml", "dir.yaml"):
        with pytest.raises(ValueError, match="not a regular file"):
            write_calibration(tmp_path / name, est, "vis", "th", 1)
    assert victim.read_text() == "important\n" and (tmp_path / "link.yaml").is_symlink()
    with pytest.raises(ValueError, match="not a frame id"):
        write_calibration(tmp_path / "rig.yaml", est, "x ; touch PWNED", "th", 1)
    assert not (tmp_path / "rig.yaml").exists()
    write_calibration(tmp_path / "rig.yaml", est, "base_link/visible-1.optical", "th", 1)
    text = (tmp_path / "rig.yaml").read_text()
    assert "'parent_frame': 'base_link/visible-1.optical'" in text and "'mode': 'homography'" in text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.yaml", "fifo.yaml", "link.yaml", "rig.yaml", "victim.conf"]


def test_make_bag_fixed_rig_stereo_frames_share_the_cameras_until_the_change():
    from matchanything_ros.bags.make_bag import RigSequence, synthetic_frames

    frames = list(synthetic_frames(3, kind="stereo", size=(96, 64), seed=4,
                                   rig=RigSequence(change_frame=2, change_deg=2.0, axis="pan")))
    a, b, c = frames
    for f in (b, c):
        assert np.allclose(f.K0, a.K0) and np.allclose(f.K1, a.K1)
    assert np.allclose(b.R, a.R) and np.allclose(b.t, a.t)
    assert not np.array_equal(b.visible, a.visible)  # another scene
    angle = np.degrees(np.linalg.norm(cv2.Rodrigues(c.R @ a.R.T)[0]))
    assert angle == pytest.approx(2.0, abs=1e-9)
    centre = -a.R.T @ a.t
    assert np.allclose(-c.R.T @ c.t, centre)  # the camera turned in place
    with pytest.raises(ValueError, match="stereo"):
        next(synthetic_frames(2, kind="planar", rig=RigSequence()))


def test_replay_in_rig_mode_publishes_the_estimate_and_evaluate_scores_it(tmp_path, roadscene_dir):
    """make-bag --folder --rig-fixed -> replay with rig mode -> evaluate, on 12 real pairs."""
    from matchanything_ros.bags.make_bag import RigSequence, folder_frames, write_bag
    from matchanything_ros.bags.replay import ReplayOptions, replay
    from matchanything_ros.bags.storage import BagReader
    from matchanything_ros.evaluation.evaluate import evaluate
    from matchanything_ros.node.config import split_parameters
    from matchanything_ros.node.rig_outputs import read_calibration

    gt = write_bag(folder_frames(roadscene_dir, count=12, seed=0, rig=RigSequence()), tmp_path / "rig", rig=RigSequence())
    (tmp_path / "calib").mkdir()  # the node and replay create no folder (issue 18)
    calib = tmp_path / "calib" / "rig.yaml"
    node_cfg, pipe_cfg = split_parameters({"model": "xfeat", "rig.enabled": True,
                                           "output.rig_calibration_file": str(calib)})
    summary = replay(tmp_path / "rig", tmp_path / "out", node_cfg, pipe_cfg, ReplayOptions(progress=False))
    assert summary.processed == 12
    with BagReader(tmp_path / "out") as reader:
        assert reader.topics["/rig/homography"].count >= 5
        statuses = [s for _, _, m in reader.messages(["/diagnostics"]) for s in m.status]
    assert any(s.name == "matcher_node: rig calibration" for s in statuses)
    doc = read_calibration(calib)
    assert doc["mode"] == "homography" and doc["converged"] and doc["frames_seen"] == 12
    ev = evaluate(tmp_path / "out", gt)
    rig = ev.summary["rig"]
    assert rig["fixed_rig_ground_truth"] and rig["final_px"] < 3.0
    assert rig["ok_precision"] == 1.0 and rig["alarm"]["error_frames_before_change"] == 0
    assert ev.frames[-1].rig_corner_error_px < 3.0


def test_evaluate_rig_summary_alarm_delay_and_reconvergence():
    """rig_metrics on a hand-made sequence: change at frame 4, WARN at 5, ERROR at 6, the rig
    error back below 3 px from frame 7 on (one frame over it at 6)."""
    from matchanything_ros.evaluation.evaluate import FrameOutput, FrameScore
    from matchanything_ros.evaluation.rig_metrics import _first_stable, rig_summary

    assert _first_stable([5, 1, 4, 1, 1], 0, 3.0) == 3
    assert _first_stable([1, 1, None], 0, 3.0) is None
    errors = [2.0, 1.0, 1.0, 1.0, 9.0, 9.0, 4.0, 2.0, 1.5, 1.0]
    levels = [0, 0, 0, 0, 0, 1, 2, 2, 2, 2]
    statuses = ["OK", "OK", "RIG_MISMATCH", "OK", "RIG_MISMATCH", "RIG_MISMATCH", "OK", "OK", "OK", "OK"]
    corner = [1.0, 2.0, 30.0, 3.0, 8.0, 8.0, 12.0, 2.0, 2.0, 2.0]  # the frames' own errors
    frames, outputs = [], []
    for i in range(10):
        f = FrameScore(i, "", "planar", statuses[i], corner_error_px=corner[i])
        f.rig_corner_error_px = errors[i]
        frames.append(f)
        outputs.append(FrameOutput(i, timings={"rig_level": str(levels[i]), "rig_state": "TRACKING"}))
    gt = [{"H": np.eye(3).tolist(), "visible_size": [10, 10]} for _ in range(10)]
    s = rig_summary(frames, outputs, {"rig": {"fixed": True, "change_frame": 4}}, gt)
    assert s["ok_frames"] == 7 and s["coverage"] == pytest.approx(0.7)
    assert s["ok_precision"] == pytest.approx(6 / 7)  # frame 6 is OK but 12 px off
    assert s["rig_mismatch_frames"] == 3
    a = s["alarm"]
    assert (a["warn_delay_frames"], a["error_delay_frames"], a["reconverged_delay_frames"]) == (1, 2, 3)
    assert a["warn_frames_before_change"] == 0


def test_essential_rig_covariance_is_consistent_on_clean_data():
    """NEES of the rig rotation over independent sequences (3 dof, chi-square 95 % bound 7.81):
    the bootstrap over frames neither over- nor under-states the scatter of clean data."""
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    R = cv2.Rodrigues(np.array([0.01, -0.02, 0.005]))[0]
    t = -R @ np.array([0.25, 0.02, 0.01])
    nees = []
    for seed in range(8):
        rng = np.random.default_rng(100 + seed)
        # clean data share no bias: the bootstrap alone (no systematic floors)
        rig = RigEstimator(RigConfig(enabled=True, systematic_px=0.0, systematic_deg=0.0), "essential", 2.0, seed=seed)
        for _ in range(15):
            rig.update(_stereo_frame(rng, K, R, t), K, K)
        e = rig.snapshot()
        d = cv2.Rodrigues(R.T @ e.model.R)[0].ravel()  # left error of R01 = R^T
        nees.append(float(d @ np.linalg.solve(e.covariance[3:, 3:], d)))
    assert np.median(nees) < 7.81 and np.mean(np.asarray(nees) <= 7.81) >= 0.75, nees
    assert np.median(nees) > 0.35  # nor far too large (chi-square 3 dof: 5 % quantile)


def test_essential_rig_warm_start_keeps_the_better_of_previous_and_fresh():
    """The pooled refit also refines the previous estimate and keeps whichever explains the
    pool better: a good previous estimate stays (no jump to another MAGSAC++ minimum), a wrong
    one is replaced by the fresh fit."""
    from matchanything_ros.rig import RigModel, _Essential, direction_angle_deg, rotation_angle_deg

    rng = np.random.default_rng(5)
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    R = cv2.Rodrigues(np.array([0.01, -0.02, 0.005]))[0]
    t = -R @ np.array([0.25, 0.02, 0.01])
    ops = _Essential(2.0, 500.0)
    points = [ops.frame_points(_stereo_frame(rng, K, R, t), K, K) for _ in range(6)]  # each frame's inliers
    n = [np.concatenate([p[0] for p in points]), np.concatenate([p[1] for p in points])]
    good = ops.fit(*n, start=RigModel("essential", R=R, t=t / np.linalg.norm(t)))[0]
    assert rotation_angle_deg(good.R, R) < 0.05 and direction_angle_deg(good.t, t) < 1.0
    wrong_t = cv2.Rodrigues(np.array([0.0, 0.0, np.radians(40)]))[0] @ t
    fixed = ops.fit(*n, start=RigModel("essential", R=R, t=wrong_t / np.linalg.norm(wrong_t)))[0]
    assert direction_angle_deg(fixed.t, t) < 1.0
    assert ops._cost(fixed, *n) < ops._cost(RigModel("essential", R=R, t=wrong_t), *n)


def test_essential_rig_systematic_floors():
    """The direction's floor (systematic_deg) is in the published covariance and sigma."""
    rng = np.random.default_rng(3)
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    R = cv2.Rodrigues(np.array([0.01, -0.02, 0.005]))[0]
    t = -R @ np.array([0.25, 0.02, 0.01])
    frames = [_stereo_frame(rng, K, R, t) for _ in range(10)]
    sig = {}
    for deg in (0.0, 3.0):
        rig = RigEstimator(RigConfig(enabled=True, systematic_deg=deg), "essential", 2.0, seed=1)
        for f in frames:
            rig.update(f, K, K)
        e = rig.snapshot()
        u = -e.model.R.T @ e.model.t
        tangential = e.covariance[:3, :3] - np.outer(u, u) * (u @ e.covariance[:3, :3] @ u)
        sig[deg] = (e.sigma_translation_deg, np.degrees(np.sqrt(np.trace(tangential) / 2)))
    assert sig[0.0][0] < 1.0  # clean data: the bootstrap alone is small
    assert sig[3.0][0] == pytest.approx(np.hypot(sig[0.0][0], 3.0), rel=1e-6)
    assert sig[3.0][1] == pytest.approx(np.hypot(sig[0.0][1], 3.0), rel=1e-3)
    with pytest.raises(ValueError, match="systematic_deg"):
        RigConfig(systematic_deg=-1.0).validate()


def test_rig_outputs_pose_tf_static_schedule_and_frames():
    """essential rig: rig/pose every refit once converged, /tf_static and the calibration file
    on the first converged estimate and then every RESEND_UPDATES frames (not at camera rate)."""
    from matchanything_ros.node.config import NodeConfig
    from matchanything_ros.node.outputs import OutputBuilder, rosbags_types
    from matchanything_ros.node.rig_outputs import RESEND_UPDATES, RigOutputs

    rng = np.random.default_rng(7)
    K = np.array([[500.0, 0, 320], [0, 500.0, 240], [0, 0, 1]])
    R = cv2.Rodrigues(np.array([0.01, -0.02, 0.005]))[0]
    t = -R @ np.array([0.25, 0.02, 0.01])
    rig = RigEstimator(RigConfig(enabled=True), "essential", 2.0)
    cfg = NodeConfig.from_flat({"publish.rig_tf_static": True, "output.rig_calibration_file": "/tmp/x.yaml"})
    outputs = RigOutputs(OutputBuilder(rosbags_types()))
    keys_per_frame = []
    for i in range(8 + RESEND_UPDATES):
        rig.update(_stereo_frame(rng, K, R, t, n=80), K, K)
        keys_per_frame.append([k for k, _ in outputs.messages(rig.snapshot(), cfg, 1000 + i, "vis", "th")])
    first = next(i for i, keys in enumerate(keys_per_frame) if keys)
    assert keys_per_frame[first] == ["rig_pose", "rig_tf_static", "rig_calibration"]
    assert all(keys == ["rig_pose"] for keys in keys_per_frame[first + 1:first + RESEND_UPDATES])
    assert keys_per_frame[first + RESEND_UPDATES] == ["rig_pose", "rig_tf_static", "rig_calibration"]
    msgs = dict(outputs.messages(rig.snapshot(), cfg, 5000, "vis", "th"))
    assert msgs == {}  # nothing new without a refit
    rig.update(_stereo_frame(rng, K, R, t, n=80), K, K)
    pose = dict(outputs.messages(rig.snapshot(), cfg, 5001, "vis", "th"))["rig_pose"]
    assert pose.header.frame_id == "vis"
    p = pose.pose.pose.position
    centre = np.array([p.x, p.y, p.z])
    assert np.linalg.norm(centre) == pytest.approx(1.0)  # unit baseline: scale unknown
    truth = np.array([0.25, 0.02, 0.01]) / np.linalg.norm([0.25, 0.02, 0.01])
    assert np.degrees(np.arccos(min(1.0, centre @ truth))) < 3.0


def test_rig_outputs_send_again_for_a_new_estimator_and_failed_writes_warn():
    """Issue 18, item 11: after a rig restart (a new estimator: rig parameters changed) the
    first converged estimate goes out again, calibration file included; a failed write is a
    counter and a WARN in /diagnostics, not an error a good pair clears."""
    from matchanything_ros.node.config import NodeConfig
    from matchanything_ros.node.health import NodeHealth, Thresholds
    from matchanything_ros.node.outputs import OutputBuilder, rosbags_types
    from matchanything_ros.node.rig_outputs import RigOutputs

    rng = np.random.default_rng(5)
    cfg = NodeConfig.from_flat({"output.rig_calibration_file": "/tmp/x.yaml"})
    outputs = RigOutputs(OutputBuilder(rosbags_types()))

    def run(frames: int) -> list[list[str]]:
        rig = RigEstimator(RigConfig(enabled=True), "homography", 3.0)
        keys = []
        for i in range(frames):
            rig.update(_h_frame(rng, H_TRUE))
            keys.append([k for k, _ in outputs.messages(rig.snapshot(), cfg, 1000 + i, "vis", "th")])
        return keys

    first = run(12)
    again = run(8)  # a new estimator, fewer updates than the last send
    assert any("rig_calibration" in k for k in first) and any("rig_calibration" in k for k in again)
    health = NodeHealth("matcher_node: test", start_time=0.0)
    health.on_error("calibration_write_errors", "cannot write the rig calibration file: disk full")
    report = health.report(1.0, Thresholds(0.2, 0.5, 30.0))
    assert int(report.values["calibration_write_errors"]) == 1
    assert "rig calibration file write(s) failed" in report.message


def test_the_pool_is_bounded_whatever_window_and_max_points_allow():
    """Issue 18, item 5: rig.window 1000 x rig.max_points 100,000 (both in range) had let the
    pool, and every frame's refit, grow without bound. At most POOL_POINTS are pooled."""
    from matchanything_ros.rig import POOL_POINTS

    rng = np.random.default_rng(11)
    rig = RigEstimator(RigConfig(enabled=True, window=1000, max_points=100000), "homography", 3.0)
    assert rig.per_frame_points() == POOL_POINTS // 1000
    assert RigEstimator(RigConfig(enabled=True), "homography", 3.0).per_frame_points() == RigConfig().max_points
    for _ in range(60):
        rig.update(_h_frame(rng, H_TRUE))
    values = rig.status()[2]
    assert int(values["rig_frames"]) == 60 and 0 < int(values["rig_points"]) <= 60 * rig.per_frame_points()
    assert corner_distance(rig.snapshot().model.H, H_TRUE, SIZE) < 2.0


def test_a_failed_calibration_write_is_tried_again_on_the_next_frame():
    """Found by the fuzz suite with fitting pairs: a write refused for one frame's header (a
    frame id that is not one) waited RESEND_UPDATES frames for the next try; all three tries of
    a 60-frame run fell on such frames and no file was ever written. The write is owed until
    one succeeds, with or without a refit."""
    from matchanything_ros.node.config import NodeConfig
    from matchanything_ros.node.outputs import OutputBuilder, rosbags_types
    from matchanything_ros.node.rig_outputs import RigOutputs

    rng = np.random.default_rng(3)
    cfg = NodeConfig.from_flat({"output.rig_calibration_file": "/tmp/x.yaml"})
    outputs = RigOutputs(OutputBuilder(rosbags_types()))
    rig = RigEstimator(RigConfig(enabled=True), "homography", 3.0)
    owed = []
    for i in range(12):
        rig.update(_h_frame(rng, H_TRUE))
        keys = [k for k, _ in outputs.messages(rig.snapshot(), cfg, 1000 + i, "vis", "th")]
        if "rig_calibration" in keys:
            owed.append(i)
            outputs.file_written(len(owed) > 3)  # the first three writes fail
    assert len(owed) == 4 and owed == list(range(owed[0], owed[0] + 4))  # every frame until one succeeds
    assert [k for k, _ in outputs.messages(rig.snapshot(), cfg, 2000, "vis", "th")] == []  # paid
    outputs.file_written(False)
    assert [k for k, _ in outputs.messages(rig.snapshot(), cfg, 2001, "vis", "th")] == ["rig_calibration"]  # no refit


def test_essential_rig_from_real_cross_modal_matches():
    """End to end on rendered visible/thermal pairs of one fixed rig (the cameras of stereo seed
    0, a new scene per frame) through the default matcher and the driving preset's fit: the
    pooled estimate meets the rig goals (rotation < 0.5 deg, direction within its published
    sigma's bound) after 12 frames at 480x384 (docs/ACCURACY.md, "Rig mode")."""
    from matchanything_ros.rig import direction_angle_deg, rotation_angle_deg
    from matchanything_ros.synthetic import make_stereo_pair

    size = (480, 384)
    pipe = Pipeline(PipelineConfig(model="xfeat", geometry="essential", ransac_threshold=2.0, resolution=480,
                                   thermal={"clahe": True}))
    rig = RigEstimator(RigConfig(enabled=True), "essential", 2.0)
    first = make_stereo_pair(0, size=size)
    fixed = (first.K0, first.K1, first.R, first.info["thermal_centre_in_visible"])
    for i in range(12):
        p = first if i == 0 else make_stereo_pair(i, size=size, rig=fixed)
        rig.update(pipe.process(p.visible, p.thermal, p.K0, p.K1), p.K0, p.K1)
    e = rig.snapshot()
    assert e.converged
    assert rotation_angle_deg(e.model.R, first.R) < 0.5
    direction = direction_angle_deg(-e.model.R.T @ e.model.t, -first.R.T @ first.t)
    assert direction < 2.45 * e.sigma_translation_deg and direction < 6.0, (direction, e.sigma_translation_deg)


def test_evaluation_scores_a_frame_without_a_new_rig_estimate_with_the_one_in_force():
    """rig/pose and rig/homography are published only when the estimate changes (a frame the
    gate rejects leaves it): such a frame is scored with the last estimate published."""
    from types import SimpleNamespace as NS

    from matchanything_ros.evaluation.evaluate import _carry_rig_estimate

    def out(H=None):
        return NS(rig_H=H, rig_R01=None, rig_t01=None, rig_cov=None)

    H1, H2 = np.eye(3), np.diag([2.0, 2.0, 1.0])
    outs = [out(), out(H1), out(), None, out(), out(H2), out()]
    _carry_rig_estimate(outs)
    assert outs[0].rig_H is None  # nothing published yet
    assert outs[2].rig_H is H1 and outs[4].rig_H is H1 and outs[6].rig_H is H2
