"""Accuracy metrics and the seeded homography protocol."""
import cv2
import numpy as np
import pytest

from matchanything_ros.evaluation.metrics import (
    corner_error,
    homography_reprojection_errors,
    match_precision,
    pose_auc,
    rotation_error_deg,
    success_rates,
    translation_angle_deg,
)


def test_corner_error_of_identity_and_of_a_shift():
    H = np.array([[1.1, 0.02, 5.0], [0.01, 0.95, -3.0], [1e-5, 0.0, 1.0]])
    assert corner_error(H, H, 640, 512) == 0.0
    shift = np.array([[1, 0, 2.0], [0, 1, 0], [0, 0, 1]]) @ H
    assert corner_error(shift, H, 640, 512) == pytest.approx(2.0)
    assert corner_error(None, H, 640, 512) == float("inf")
    assert corner_error(np.full((3, 3), np.nan), H, 640, 512) == float("inf")


def test_success_rates_count_failures():
    rates = success_rates([1.0, 4.0, 8.0, float("inf"), float("nan")], (3, 5, 10))
    assert rates == {3.0: 0.2, 5.0: 0.4, 10.0: 0.6}
    assert success_rates([], (3,)) == {3.0: 0.0}


def test_auc_of_known_errors():
    assert pose_auc([0.0, 0.0], (5,)) == {5.0: 1.0}
    assert pose_auc([float("inf")], (5,)) == {5.0: 0.0}
    # one error e < t: recall rises linearly to 1 at e, then stays: area = e/2 + (t - e)
    assert pose_auc([2.0], (10,))[10.0] == pytest.approx((1.0 + 8.0) / 10.0)
    # uniform errors on [0, t]: recall ~ x / t, area ~ t/2
    errors = np.linspace(0, 10, 10001)[1:]
    assert pose_auc(errors, (10,))[10.0] == pytest.approx(0.5, abs=1e-3)
    # errors beyond the threshold do not count
    assert pose_auc([20.0, 30.0], (10,))[10.0] == 0.0


def test_match_precision_under_ground_truth():
    H = np.array([[1.0, 0, 10.0], [0, 1.0, -5.0], [0, 0, 1.0]])
    k0 = np.array([[0, 0], [100, 50], [30, 30], [5, 5]], np.float32)
    k1 = cv2.perspectiveTransform(k0[None].astype(np.float64), H)[0]
    k1[2] += [4.0, 0.0]  # 4 px off: wrong at 3 px
    k1[3] += [2.0, 0.0]  # 2 px off: right at 3 px
    assert homography_reprojection_errors(k0, k1, H) == pytest.approx([0, 0, 4, 2])
    assert match_precision(k0, k1, H, 3.0) == 0.75
    assert match_precision(np.zeros((0, 2)), np.zeros((0, 2)), H) == 0.0
    with pytest.raises(ValueError, match="same length"):
        match_precision(k0, k1[:2], H)


def test_pose_errors():
    R = cv2.Rodrigues(np.array([0.0, 0.1, 0.0]))[0]
    assert rotation_error_deg(R, R) == pytest.approx(0.0, abs=1e-6)
    assert rotation_error_deg(np.eye(3), R) == pytest.approx(np.degrees(0.1))
    assert rotation_error_deg(None, R) == float("inf")
    assert translation_angle_deg([1, 0, 0], [2, 0, 0]) == pytest.approx(0.0)
    assert translation_angle_deg([0, 1, 0], [1, 0, 0]) == pytest.approx(90.0)
    assert translation_angle_deg([-1, 0, 0], [1, 0, 0]) == pytest.approx(180.0)
    assert translation_angle_deg([-1, 0, 0], [1, 0, 0], sign_invariant=True) == pytest.approx(0.0)
    assert translation_angle_deg(None, [1, 0, 0]) == float("inf")


def test_random_homography_is_seeded_and_within_the_protocol_ranges():
    from matchanything_ros.evaluation.homography_protocol import random_homography

    w, h = 600, 400
    assert np.array_equal(random_homography(3, w, h), random_homography(3, w, h))
    assert not np.allclose(random_homography(3, w, h), random_homography(4, w, h))
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], np.float64)
    centre = corners.mean(0)
    for seed in range(50):
        H = random_homography(seed, w, h)
        moved = cv2.perspectiveTransform(corners[None], H)[0]
        # rotation <= 20 deg, scale in [0.8, 1.2], shift <= 10 %, jitter <= 8 %: every corner
        # stays within the similarity's reach plus 18 % of the size
        offset = np.linalg.norm(moved - corners, axis=1)
        reach = np.linalg.norm(corners - centre, axis=1) * (0.2 + 2 * np.sin(np.deg2rad(10)) * 1.2)
        assert np.all(offset <= reach + 0.18 * np.hypot(w, h))
        assert np.linalg.det(H[:2, :2]) > 0  # no reflection


def test_load_aligned_pairs(tmp_path):
    from matchanything_ros.evaluation.homography_protocol import load_aligned_pairs

    with pytest.raises(ValueError, match="visible/ and thermal/"):
        load_aligned_pairs(tmp_path)
    (tmp_path / "visible").mkdir()
    (tmp_path / "thermal").mkdir()
    with pytest.raises(ValueError, match="no pairs found"):
        load_aligned_pairs(tmp_path)
    rng = np.random.default_rng(0)
    for name in ("b", "a"):
        cv2.imwrite(str(tmp_path / "visible" / f"{name}.png"), rng.integers(0, 255, (40, 60, 3), dtype=np.uint8))
        cv2.imwrite(str(tmp_path / "thermal" / f"{name}.png"), rng.integers(0, 65535, (40, 60), dtype=np.uint16))
    cv2.imwrite(str(tmp_path / "visible" / "lonely.png"), np.zeros((40, 60, 3), np.uint8))
    pairs = load_aligned_pairs(tmp_path)
    assert [p.name for p in pairs] == ["a", "b"]
    assert pairs[0].visible.shape == (40, 60, 3) and pairs[0].thermal.dtype == np.uint16
    assert len(load_aligned_pairs(tmp_path, limit=1)) == 1
    cv2.imwrite(str(tmp_path / "thermal" / "a.png"), np.zeros((20, 60), np.uint8))
    with pytest.raises(ValueError, match="differ in size"):
        load_aligned_pairs(tmp_path)


def test_accuracy_command_on_a_small_aligned_folder(tmp_path):
    """The protocol end to end through the CLI on two aligned pairs built from synthetic data
    (SIFT: no torch, fast); checks the outputs' structure, not the accuracy."""
    import json

    from matchanything_ros.cli import main
    from matchanything_ros.synthetic import make_planar_pair

    data = tmp_path / "pairs"
    (data / "visible").mkdir(parents=True)
    (data / "thermal").mkdir()
    for seed in (0, 1):
        pair = make_planar_pair(seed, (320, 256))
        cv2.imwrite(str(data / "visible" / f"p{seed}.png"), pair.visible)
        cv2.imwrite(str(data / "thermal" / f"p{seed}.png"), pair.warp_thermal_to_visible())
    out_json, out_md = tmp_path / "acc.json", tmp_path / "acc.md"
    rc = main(["accuracy", "--data", str(data), "--models", "sift", "--polarity", "normal,auto",
               "--resolution", "320", "--quiet", "--json", str(out_json), "--markdown", str(out_md)])
    assert rc == 0
    report = json.loads(out_json.read_text())
    assert report["command"].startswith("matchanything-ros accuracy --data")
    assert [r["polarity"] for r in report["results"]] == ["normal", "auto"]
    summary = report["results"][0]["summary"]
    assert summary["pairs"] == 2 and 0.0 <= summary["SR@10"] <= 1.0 and summary["mean_time_s"] > 0
    assert [p["seed"] for p in report["results"][0]["pairs"]] == [0, 1]
    text = out_md.read_text()
    assert "| model | polarity |" in text and "Machine:" in text
    assert main(["accuracy", "--data", str(tmp_path / "missing"), "--quiet"]) == 2
