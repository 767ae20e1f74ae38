"""The `matchanything-ros` command line: demo and match, exit codes and outputs.

Runs the installed console script as a subprocess, as a user would."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from matchanything_ros.synthetic import make_planar_pair

EXE = shutil.which("matchanything-ros", path=str(Path(sys.executable).parent)) or "matchanything-ros"


def cli(*args, cwd=None):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([EXE, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=600)


@pytest.fixture(scope="module")
def pair_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    pair = make_planar_pair(0)  # 640x512: at 320x256 the scene is too small for a reliable fit
    cv2.imwrite(str(d / "vis.png"), pair.visible)
    cv2.imwrite(str(d / "th.png"), pair.thermal)  # 16-bit PNG, as radiometric cameras save
    (d / "bad.png").write_bytes(b"not an image")
    png = bytearray(cv2.imencode(".png", pair.visible)[1].tobytes())
    png[80:400] = bytes(320)  # a valid header over damaged data: libpng complains on stderr
    (d / "damaged.png").write_bytes(bytes(png))
    jpg = cv2.imencode(".jpg", pair.visible)[1].tobytes()
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])  # decodes, half grey, with a warning
    (d / "broken.yaml").write_text("camera_matrix: {data: [1, 2\n  : : :\n")
    (d / "corrupt_bag").mkdir()  # issue 9: a corrupt metadata.yaml gave a 6-12 line YAML error
    (d / "corrupt_bag" / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  version: 5\n  storage_identifier: [sqlite3\n   : : :\n")
    (d / "corrupt_bag" / "x.db3").write_bytes(b"")
    return d, pair


def test_help_lists_every_command():
    res = cli("--help")
    assert res.returncode == 0
    for command in ("demo", "match", "accuracy", "weights", "export", "build-engine", "benchmark",
                    "make-bag", "replay", "evaluate"):
        assert command in res.stdout


def test_demo_writes_pictures_and_a_summary(tmp_path):
    res = cli("demo", "--out", tmp_path / "demo", "--pairs", "1")
    assert res.returncode == 0, res.stderr
    assert "mean corner error vs truth" in res.stdout and "rotation error" in res.stdout
    pngs = sorted(p.name for p in (tmp_path / "demo").glob("*.png"))
    assert pngs == ["planar_0_matches.png", "planar_0_registration.png", "stereo_0_matches.png"]
    assert cv2.imread(str(tmp_path / "demo" / "planar_0_matches.png")).shape[1] == 2 * 640
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    assert summary[0]["corner_error_px"] < 10 and summary[0]["geometry"]["status"] == "OK"
    assert summary[0]["quality"]["score"] >= 0.9  # the verdict, published with every result


def test_match_writes_json_and_visualisation(pair_files, tmp_path):
    d, pair = pair_files
    res = cli("match", d / "vis.png", d / "th.png", "--json", tmp_path / "r.json", "--viz", tmp_path / "r.png")
    assert res.returncode == 0, res.stderr
    out = json.loads((tmp_path / "r.json").read_text())
    assert out["geometry"]["status"] == "OK"
    assert out["quality"]["score"] >= 0.9 and "log_corner_sigma" in out["quality"]["features"]
    H = np.array(out["geometry"]["matrix"])
    corners = np.array([[0, 0, 1], [639, 0, 1], [639, 511, 1], [0, 511, 1]], float).T
    est, gt = H @ corners, pair.H @ corners
    assert np.abs(est[:2] / est[2] - gt[:2] / gt[2]).max() < 10
    assert len(out["matches"]["kpts_visible"]) == out["num_matches"]
    assert cv2.imread(str(tmp_path / "r.png")) is not None


def test_match_essential_with_intrinsics_string(pair_files):
    d, _ = pair_files
    res = cli("match", d / "vis.png", d / "th.png", "--geometry", "essential", "--intrinsics", "600,600,320,256")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("essential:")


@pytest.mark.parametrize(
    "args, message",
    [
        (["match", "missing.png", "th.png"], "visible image not found"),
        (["match", "vis.png", "bad.png"], "cannot read thermal image"),
        (["match", "damaged.png", "th.png"], "cannot read visible image damaged.png: the file is damaged (libpng"),
        (["match", "truncated.jpg", "th.png"], "truncated.jpg: the file is damaged (Premature end of JPEG"),
        (["match", ".", "th.png"], "visible image . is a folder"),
        (["match", "vis.png", "th.png", "--geometry", "essential"], "--geometry essential needs the cameras' intrinsics"),
        (["match", "vis.png", "th.png", "--model", "superglue"], "unknown model 'superglue'"),
        (["match", "vis.png", "th.png", "--intrinsics", "nope.yaml"], "intrinsics file not found"),
        # issue 9: no directory is created for an output file, a folder is not a file
        (["match", "vis.png", "th.png", "--json", "no_such_dir/sub/r.json"], "output directory no_such_dir/sub does not exist"),
        (["match", "vis.png", "th.png", "--viz", "."], "is a directory"),
        (["evaluate", "some_bag", "--json", "no_such_dir/r.json"], "does not exist"),
        (["match", "vis.png", "th.png", "--intrinsics", "broken.yaml"], "not valid YAML"),
        (["replay", "corrupt_bag", "--out", "out_bag"], "cannot open bag"),
        (["replay", "corrupt_bag", "--out", "no_such_dir/out_bag"], "no_such_dir does not exist"),
        (["make-bag", "no_such_dir/bag"], "no_such_dir does not exist"),
        (["demo", "--out", "no_such_dir/demo"], "no_such_dir does not exist"),
    ],
)
def test_user_errors_are_one_line_exit_2(pair_files, args, message):
    d, _ = pair_files
    res = cli(*args, cwd=d)
    assert res.returncode == 2
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert not (d / "no_such_dir").exists()


def test_benchmark_refuses_a_backend_that_cannot_run_before_any_work(tmp_path):
    """One line, exit 2, nothing written: TensorRT (not installed here, or no GPU) and CUDA on a
    machine without one are refused before the minutes-long export."""
    import importlib.util

    import torch

    if importlib.util.find_spec("tensorrt") is not None and torch.cuda.is_available():
        pytest.skip("TensorRT and a GPU are present: the backend can run")
    res = cli("benchmark", "--backends", "torch,tensorrt", "--random-weights", cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "tensorrt" in res.stderr and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_option_prints_the_subcommands_usage(pair_files):
    d, _ = pair_files
    res = cli("match", "vis.png", "th.png", "--bogus", cwd=d)
    assert res.returncode == 2
    assert res.stderr.startswith("usage: matchanything-ros match ") and "unrecognized arguments: --bogus" in res.stderr


def test_benchmark_models_sift_runs_and_a_failed_case_fails_the_command(tmp_path):
    """SIFT takes no device (it raised a TypeError and the command still exited 0); a case that
    cannot run (MINIMA without weights) makes the command fail with one line."""
    res = cli("benchmark", "--models", "sift", "--resolutions", "160x128", "--runs", "1", "--warmup", "1",
              "--work-dir", str(tmp_path / "w"), cwd=tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    row = next(line for line in res.stdout.splitlines() if line.startswith("| sift |"))
    assert "Error" not in row and row.split("|")[5].strip() != "-", row
    res = cli("benchmark", "--models", "sift,minima_splg", "--resolutions", "160x128", "--runs", "1",
              "--warmup", "1", "--work-dir", str(tmp_path / "w"), cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    assert "1 case(s) failed: minima_splg 160x128" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_offline_weights_download_is_one_line(tmp_path):
    env = dict(os.environ, HF_ENDPOINT="http://127.0.0.1:9", HF_HUB_OFFLINE="0")  # nothing listens on port 9
    for key in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        env.pop(key, None)
    res = subprocess.run([EXE, "weights", "download", "--cache-dir", str(tmp_path / "hf")], capture_output=True,
                         text=True, env=env, timeout=600)
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "offline" in res.stderr, res.stderr
    assert res.stdout == ""


def test_json_outputs_are_strict_json():
    """NaN is not JSON: every file the package writes has null there (and "inf" for an
    infinite error)."""
    from matchanything_ros.json_out import dumps

    text = dumps({"a": float("nan"), "b": [float("inf"), np.float32(1.5)], "c": np.arange(2)})
    assert json.loads(text) == {"a": None, "b": ["inf", 1.5], "c": [0, 1]}
    assert "NaN" not in text


def test_heartbeat_reports_a_long_step():
    import io
    import time

    from matchanything_ros.commands.common import Heartbeat

    out = io.StringIO()
    with Heartbeat("exporting", every=0.05, stream=out):
        time.sleep(0.2)
    lines = out.getvalue().splitlines()
    import re

    assert lines[0] == "exporting ..." and len(lines) >= 2
    assert all(re.fullmatch(r"exporting: \d+ s", line) for line in lines[1:]), lines
