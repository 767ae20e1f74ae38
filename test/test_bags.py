"""Bag IO, make-bag, replay: storages, metadata versions, damaged bags, Ctrl-C, mcap readback."""
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from ruamel.yaml import YAML

from matchanything_ros.bags.make_bag import CameraTiming, Frame, load_ground_truth, nominal_K, synthetic_frames, write_bag
from matchanything_ros.bags.replay import ReplayOptions, replay
from matchanything_ros.bags.storage import BagError, BagReader, BagWriter
from matchanything_ros.node.config import NodeConfig
from matchanything_ros.pipeline import PipelineConfig

REPO = Path(__file__).resolve().parent.parent


def easy_frames(count: int, size=(320, 256), seed: int = 0) -> list[Frame]:
    """Pairs whose 'thermal' image is the gray visible image warped by a known homography, so
    SIFT registers them exactly: tests of the bag machinery, not of cross-modal matching."""
    from matchanything_ros.evaluation.homography_protocol import random_homography
    from matchanything_ros.synthetic import make_planar_pair

    frames = []
    for i in range(count):
        visible = make_planar_pair(seed + i, size=size, noise=0.0).visible
        h, w = visible.shape[:2]
        H = random_homography(seed + i, w, h, max_rotation_deg=10.0, max_jitter=0.03)
        thermal = cv2.warpPerspective(cv2.cvtColor(visible, cv2.COLOR_BGR2GRAY), H, (w, h))
        frames.append(Frame(visible, thermal, f"easy-{seed + i}", "planar", nominal_K(w, h), nominal_K(w, h), H=H))
    return frames


@pytest.fixture(scope="module")
def tiny_frames():
    return list(synthetic_frames(2, kind="mixed", size=(96, 64), seed=3))


@pytest.fixture(scope="module")
def sift_cfg():
    return PipelineConfig(model="sift", polarity="normal", resolution=320)


def read_metadata(bag: Path) -> dict:
    return YAML(typ="safe").load((bag / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("version", [5, 9])
def test_make_bag_storages_and_versions_read_back(tmp_path, tiny_frames, storage, version):
    bag = tmp_path / "in"
    gt_path = write_bag(tiny_frames, bag, storage=storage, version=version)
    meta = read_metadata(bag)
    assert meta["version"] == version and meta["storage_identifier"] == storage
    topic_meta = meta["topics_with_message_count"][0]["topic_metadata"]
    if version == 5:  # what Humble's rosbag2 decodes: no v6-v8 fields, QoS as a YAML string
        assert "custom_data" not in meta and "ros_distro" not in meta
        assert "type_description_hash" not in topic_meta
        assert isinstance(topic_meta["offered_qos_profiles"], str)
    else:
        assert topic_meta["type_description_hash"].startswith("RIHS01_")
    with BagReader(bag) as reader:
        assert reader.version == version and reader.storage == storage
        counts = {name: info.count for name, info in reader.topics.items()}
        assert counts == {"/visible/image_raw": 2, "/thermal/image_raw": 2, "/visible/camera_info": 2, "/thermal/camera_info": 2}
        msgs = list(reader.messages(["/visible/image_raw", "/thermal/camera_info"]))
    times = [t for _, t, _ in msgs]
    assert times == sorted(times)
    gt = load_ground_truth(gt_path)
    vis = [m for topic, _, m in msgs if topic == "/visible/image_raw"]
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in vis]
    assert [str(s) for s in stamps] == sorted(gt["frames"])
    assert vis[0].encoding == "bgr8" and (vis[0].width, vis[0].height) == (96, 64)
    stereo = gt["frames"][str(stamps[1])]
    assert stereo["kind"] == "stereo" and stereo["R"] is not None and stereo["H"] is None
    info = [m for topic, _, m in msgs if topic == "/thermal/camera_info"][1]
    np.testing.assert_allclose(np.asarray(info.k).reshape(3, 3), stereo["K1"])


def test_bare_storage_file_reads(tmp_path, tiny_frames):
    write_bag(tiny_frames, tmp_path / "in", storage="mcap", version=9)
    (mcap_file,) = (tmp_path / "in").glob("*.mcap")
    with BagReader(mcap_file) as reader:
        assert reader.version is None and reader.topics["/visible/image_raw"].count == 2


def test_camera_timing_jitter_faster_thermal_and_drops(tmp_path, tiny_frames):
    timing = CameraTiming(rate_hz=10, jitter_ms=4, thermal_rate_factor=2, thermal_drop=0.5, seed=1)
    frames = tiny_frames * 4
    gt = load_ground_truth(write_bag(frames, tmp_path / "in", timing=timing))
    entries = sorted(gt["frames"].values(), key=lambda f: f["visible_stamp_ns"])
    dropped = [f for f in entries if f["thermal_stamp_ns"] is None]
    kept = [f for f in entries if f["thermal_stamp_ns"] is not None]
    assert dropped and kept  # seed 1 drops some of the 8 thermal partners, not all
    for f in kept:
        assert abs(f["thermal_stamp_ns"] - f["visible_stamp_ns"]) <= 4_000_000
    with BagReader(tmp_path / "in") as reader:
        # two thermal frames per period, minus the dropped partners
        assert reader.topics["/thermal/image_raw"].count == 2 * len(frames) - len(dropped)
        times = [t for _, t, _ in reader.messages()]
    assert times == sorted(times)


def test_replay_pairs_with_the_node_synchronizer(tmp_path, sift_cfg):
    """Faster thermal camera + jitter + dropped partners: replay pairs exactly the GT partners."""
    frames = easy_frames(2, size=(160, 128))
    timing = CameraTiming(rate_hz=10, jitter_ms=5, thermal_rate_factor=2, thermal_drop=0.3, seed=4)
    gt = load_ground_truth(write_bag(frames * 3, tmp_path / "in", timing=timing))
    summary = replay(tmp_path / "in", tmp_path / "out", pipe_cfg=sift_cfg, options=ReplayOptions(progress=False))
    expected = {f["visible_stamp_ns"]: f["thermal_stamp_ns"] for f in gt["frames"].values() if f["thermal_stamp_ns"]}
    assert summary.pairs == len(expected) and summary.error is None
    with BagReader(tmp_path / "out") as reader:
        pairs = {}
        for _, _, msg in reader.messages(["/replay/timings"]):
            values = {kv.key: kv.value for kv in msg.status[0].values}
            pairs[msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec] = int(values["thermal_stamp_ns"])
    assert pairs == expected


def test_replay_writes_node_topics_readable_by_mcap(tmp_path, sift_cfg):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    write_bag(easy_frames(2), tmp_path / "in")
    node_cfg = NodeConfig(publish={"debug_image": True})
    summary = replay(tmp_path / "in", tmp_path / "out", node_cfg, sift_cfg, ReplayOptions(progress=False))
    assert summary.processed == 2 and summary.ok == 2
    assert read_metadata(tmp_path / "out")["version"] == 5
    with BagReader(tmp_path / "out") as reader:
        topics = {name: (info.msgtype, info.count) for name, info in reader.topics.items()}
    # a topic is declared by its first message: homography mode has no pose, a bag shorter
    # than diagnostics.period no /diagnostics; replay/summary: one start and one end record
    assert topics == {
        "/correspondences": ("sensor_msgs/msg/PointCloud2", 2),
        "/homography": ("std_msgs/msg/Float64MultiArray", 2),
        "/registered/image": ("sensor_msgs/msg/Image", 2),
        "/debug/matches": ("sensor_msgs/msg/Image", 2),
        "/replay/timings": ("diagnostic_msgs/msg/DiagnosticArray", 2),
        "/replay/summary": ("diagnostic_msgs/msg/DiagnosticArray", 2),
    }
    (mcap_file,) = (tmp_path / "out").glob("*.mcap")
    decoded = {}
    with mcap_file.open("rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        assert reader.get_header().profile == "ros2"
        for _, channel, _, ros_msg in reader.iter_decoded_messages():
            decoded.setdefault(channel.topic, []).append(ros_msg)
    cloud = decoded["/correspondences"][0]
    assert [f.name for f in cloud.fields][:4] == ["visible_x", "visible_y", "thermal_x", "thermal_y"]
    assert cloud.width > 20 and len(cloud.data) == cloud.width * cloud.point_step
    H = np.asarray(decoded["/homography"][0].data).reshape(3, 3)
    assert H.shape == (3, 3) and abs(H[2, 2]) > 0
    assert decoded["/registered/image"][0].encoding == "mono8"
    assert decoded["/replay/timings"][0].status[0].name == "matchanything_ros replay"


def test_replay_sqlite_output_version_9(tmp_path, sift_cfg):
    write_bag(easy_frames(1), tmp_path / "in", storage="sqlite3", version=5)
    options = ReplayOptions(storage="sqlite3", version=9, distro="kilted", progress=False)
    summary = replay(tmp_path / "in", tmp_path / "out", pipe_cfg=sift_cfg, options=options)
    assert summary.processed == 1
    meta = read_metadata(tmp_path / "out")
    assert meta["version"] == 9 and meta["storage_identifier"] == "sqlite3"
    with BagReader(tmp_path / "out", "kilted") as reader:
        assert reader.topics["/correspondences"].count == 1


# -- damaged and wrong inputs ------------------------------------------------------------------
def test_truncated_mcap_replays_readable_part_and_keeps_output(tmp_path, sift_cfg):
    frames = easy_frames(2)
    write_bag(frames * 4, tmp_path / "in")  # ~0.4 MB per pair, 1 MiB MCAP chunks
    (mcap_file,) = (tmp_path / "in").glob("*.mcap")
    with mcap_file.open("r+b") as f:
        f.truncate(int(mcap_file.stat().st_size * 0.7))
    with pytest.raises(BagError, match="cannot open bag .*truncated"):
        BagReader(tmp_path / "in").open()  # without salvage: a clear error
    summary = replay(tmp_path / "in", tmp_path / "out", pipe_cfg=sift_cfg, options=ReplayOptions(progress=False))
    assert summary.error and "truncated or corrupted" in summary.error and "keeps the" in summary.error
    assert 0 < summary.processed < 8
    with BagReader(tmp_path / "out") as reader:  # the partial output is a complete bag
        assert reader.topics["/correspondences"].count == summary.processed


def test_cli_reports_truncated_bag_and_keeps_output(tmp_path):
    write_bag(easy_frames(2) * 4, tmp_path / "in")
    (mcap_file,) = (tmp_path / "in").glob("*.mcap")
    with mcap_file.open("r+b") as f:
        f.truncate(int(mcap_file.stat().st_size * 0.7))
    proc = run_cli("replay", str(tmp_path / "in"), "--out", str(tmp_path / "out"), "-p", "model=sift", "--no-progress")
    assert proc.returncode == 2
    assert "truncated or corrupted" in proc.stderr and "keeps the" in proc.stderr
    with BagReader(tmp_path / "out") as reader:
        assert reader.topics["/correspondences"].count >= 1


@pytest.mark.parametrize("damage", ["garbage_mcap", "bad_metadata", "no_metadata", "truncated_sqlite", "not_a_bag"])
def test_damaged_bags_give_clear_errors(tmp_path, tiny_frames, damage):
    bag = tmp_path / "in"
    write_bag(tiny_frames, bag, storage="sqlite3" if damage == "truncated_sqlite" else "mcap")
    (storage_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    if damage == "garbage_mcap":
        storage_file.write_bytes(os.urandom(5000))
        expected = "cannot open bag"
    elif damage == "bad_metadata":
        (bag / "metadata.yaml").write_text("rosbag2_bagfile_information: {version: 5")
        expected = "truncated or corrupted.*Could not load YAML"  # salvaged from the storage file
    elif damage == "no_metadata":
        (bag / "metadata.yaml").unlink()
        expected = "no metadata.yaml"
    elif damage == "truncated_sqlite":
        with storage_file.open("r+b") as f:
            f.truncate(storage_file.stat().st_size // 2)
        expected = "truncated or corrupted|cannot open bag"
    else:
        bag = tmp_path / "notes.txt"
        bag.write_text("hello")
        expected = "not a ROS 2 bag"
    with pytest.raises(BagError, match=expected):
        with BagReader(bag, salvage=True) as reader:
            list(reader.messages())


def test_missing_topic_lists_what_the_bag_has(tmp_path, tiny_frames, sift_cfg):
    write_bag(tiny_frames, tmp_path / "in", topics={"thermal_image": "/lwir/image"})
    with pytest.raises(BagError, match=r"no topic /thermal/image_raw; it has: .*/lwir/image \[sensor_msgs/msg/Image, 2\]"):
        replay(tmp_path / "in", tmp_path / "out", pipe_cfg=sift_cfg, options=ReplayOptions(progress=False))
    assert not (tmp_path / "out").exists()
    # the node's remapping, as a parameter: topics.thermal_image
    summary = replay(
        tmp_path / "in", tmp_path / "out", NodeConfig(topics={"thermal_image": "/lwir/image"}), sift_cfg,
        ReplayOptions(progress=False),
    )
    assert summary.pairs == 2


def test_existing_output_is_refused(tmp_path, tiny_frames):
    (tmp_path / "out").mkdir()
    with pytest.raises(BagError, match="exists already"):
        BagWriter(tmp_path / "out")


def run_cli(*args, **kwargs):
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    return subprocess.run(
        [sys.executable, "-m", "matchanything_ros.cli", *args], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300, **kwargs,
    )


def test_ctrl_c_leaves_a_valid_output_bag(tmp_path):
    import threading

    # 600 pairs (about a minute of replay): far more than we let it do, so the interrupt always
    # lands mid-run however slowly this test's reader catches up with the progress bar
    write_bag(easy_frames(2) * 300, tmp_path / "in")
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "matchanything_ros.cli", "replay", str(tmp_path / "in"), "--out", str(tmp_path / "out"),
         "-p", "model=sift", "-p", "polarity=normal"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        # a shell's background job (e.g. CI started with `&`) passes SIGINT on as ignored, and
        # Python then never raises KeyboardInterrupt: give the child the default disposition
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    err_chunks: list[str] = []
    progressed = threading.Event()

    def read_stderr():  # the tqdm bar: wait until it reports at least two processed pairs
        while chunk := os.read(proc.stderr.fileno(), 4096):
            err_chunks.append(chunk.decode(errors="replace"))
            counts = re.findall(r"pairs=(\d+)", "".join(err_chunks[-4:]))
            if counts and int(counts[-1]) >= 2:
                progressed.set()

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        assert progressed.wait(timeout=180), "".join(err_chunks)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    err = "".join(err_chunks)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "img/s" in err  # tqdm shows the rate
    with BagReader(tmp_path / "out") as bag:
        n = bag.topics["/correspondences"].count
        assert 2 <= n < 600
        assert len(list(bag.messages(["/correspondences"]))) == n


def test_make_bag_cli_and_bad_arguments(tmp_path):
    proc = run_cli("make-bag", str(tmp_path / "b"), "--frames", "1", "--size", "64x48", "--storage", "sqlite3",
                   "--rosbag-version", "9", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    gt = json.loads((tmp_path / "b.gt.json").read_text())
    assert len(gt["frames"]) == 1 and gt["bag"] == "b"
    assert read_metadata(tmp_path / "b")["storage_identifier"] == "sqlite3"
    bad = run_cli("make-bag", str(tmp_path / "c"), "--size", "64by48")
    assert bad.returncode == 2 and "expected WIDTHxHEIGHT" in bad.stderr
    bad = run_cli("make-bag", str(tmp_path / "c"), "--jitter-ms", "90")
    assert bad.returncode == 2 and "jitter" in bad.stderr
    bad = run_cli("make-bag", str(tmp_path / "c"), "--folder", str(tmp_path))
    assert bad.returncode == 2 and "visible/ and thermal/" in bad.stderr
    bad = run_cli("replay", str(tmp_path / "b"), "--out", str(tmp_path / "o"), "-p", "sync.slop=-1")
    assert bad.returncode == 2 and "sync.slop" in bad.stderr


# -- metadata: every copy agrees with the declared version ------------------------------------
def _storage_metadata(bag: Path) -> dict:
    """Every copy of the metadata the storage file holds, as plain values."""
    import sqlite3

    (storage_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    yaml = YAML(typ="safe")
    if storage_file.suffix == ".db3":
        with sqlite3.connect(storage_file) as db:
            (schema, distro), = db.execute("SELECT schema_version, ros_distro FROM schema").fetchall()
            (meta_version, meta_text), = db.execute("SELECT metadata_version, metadata FROM metadata").fetchall()
            columns = [row[1] for row in db.execute("PRAGMA table_info(topics)")]
            rows = db.execute(f"SELECT {', '.join(columns)} FROM topics").fetchall()
            tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        topics = {r[columns.index("name")]: {
            "hash": r[columns.index("type_description_hash")] if "type_description_hash" in columns else None,
            "qos": r[columns.index("offered_qos_profiles")]} for r in rows}
        return {"schema": schema, "distro": distro, "record_version": meta_version, "record": yaml.load(meta_text),
                "topics": topics, "message_definitions": "message_definitions" in tables}
    from mcap.reader import make_reader

    with storage_file.open("rb") as stream:
        reader = make_reader(stream)
        summary = reader.get_summary()
        (record,) = [m for m in reader.iter_metadata() if m.name == "rosbag2"]
        profile = reader.get_header().profile
    topics = {c.topic: {"hash": c.metadata.get("topic_type_hash"), "qos": c.metadata["offered_qos_profiles"]}
              for c in summary.channels.values()}
    counts = {summary.channels[cid].topic: n for cid, n in summary.statistics.channel_message_counts.items()}
    return {"distro": record.metadata["ROS_DISTRO"], "record": yaml.load(record.metadata["serialized_metadata"]),
            "topics": topics, "counts": counts, "profile": profile}


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
@pytest.mark.parametrize("version,distro,expected_distro", [(5, "humble", "humble"), (9, "humble", "jazzy"),
                                                             (9, "kilted", "kilted")])
def test_metadata_copies_agree_with_the_declared_version(tmp_path, sift_cfg, storage, version, distro, expected_distro):
    from rosbags.rosbag2 import Reader
    from rosbags.rosbag2.metadata import parse_qos

    from matchanything_ros.bags.storage import SQLITE_SCHEMA_VERSION, get_typestore

    write_bag(easy_frames(2, size=(160, 128)), tmp_path / "in", storage=storage, version=version, distro=distro)
    replay(tmp_path / "in", tmp_path / "out", pipe_cfg=sift_cfg,
           options=ReplayOptions(progress=False, storage=storage, version=version, distro=distro))
    typestore = get_typestore(distro)
    for bag in (tmp_path / "in", tmp_path / "out"):
        meta = read_metadata(bag)
        stored = _storage_metadata(bag)
        assert meta["version"] == stored["record"]["version"] == version
        assert stored["distro"] == expected_distro  # db3 schema table / MCAP ROS_DISTRO
        if version >= 8:
            assert meta["ros_distro"] == stored["record"]["ros_distro"] == expected_distro
        else:
            assert "ros_distro" not in meta and "custom_data" not in meta
        if storage == "sqlite3":
            assert stored["schema"] == SQLITE_SCHEMA_VERSION[version] == (3 if version == 5 else 4)
            assert stored["record_version"] == version and stored["message_definitions"] == (version >= 9)
        else:
            assert stored["profile"] == "ros2"
        # the metadata record is the final metadata.yaml, field for field
        assert stored["record"] == meta
        with Reader(bag) as reader:
            actual = {}
            for conn, _, _ in reader.messages():
                actual[conn.topic] = actual.get(conn.topic, 0) + 1
        listed = {t["topic_metadata"]["name"]: t for t in meta["topics_with_message_count"]}
        assert {name: t["message_count"] for name, t in listed.items()} == actual  # no empty topic
        assert meta["message_count"] == sum(actual.values())
        if storage == "mcap":
            assert stored["counts"] == actual
        for name, t in listed.items():
            topic_meta = t["topic_metadata"]
            assert set(stored["topics"]) == set(listed)
            if version >= 9:  # RIHS01 per REP 2011, computed by rosbags, the same in every copy
                assert topic_meta["type_description_hash"] == stored["topics"][name]["hash"] \
                    == typestore.hash_rihs01(topic_meta["type"])
                assert isinstance(topic_meta["offered_qos_profiles"], list)
            else:
                assert "type_description_hash" not in topic_meta and stored["topics"][name]["hash"] is None
                assert isinstance(topic_meta["offered_qos_profiles"], str)
            assert parse_qos(topic_meta["offered_qos_profiles"]) == parse_qos(stored["topics"][name]["qos"])
    if storage == "mcap":  # an independent reader decodes what was written
        from mcap.reader import make_reader
        from mcap_ros2.decoder import DecoderFactory

        (mcap_file,) = (tmp_path / "out").glob("*.mcap")
        with mcap_file.open("rb") as stream:
            decoded = [m for _, c, _, m in make_reader(stream, decoder_factories=[DecoderFactory()]).iter_decoded_messages()
                       if c.topic == "/replay/timings"]
        assert len(decoded) == 2


@pytest.mark.parametrize("log_time", ["input", "processing"])
def test_replay_log_time(tmp_path, sift_cfg, log_time):
    """input: each pair's outputs at the receive time of the message that completed the pair
    (reproducible); processing: that plus the processing time."""
    write_bag(easy_frames(2, size=(160, 128)), tmp_path / "in")
    with BagReader(tmp_path / "in") as reader:
        receive = sorted(t for _, t, _ in reader.messages(["/visible/image_raw", "/thermal/image_raw"]))
    replay(tmp_path / "in", tmp_path / "out", pipe_cfg=sift_cfg, options=ReplayOptions(progress=False, log_time=log_time))
    with BagReader(tmp_path / "out") as reader:
        out = {}
        for _, t, msg in reader.messages(["/replay/timings"]):
            values = {kv.key: kv.value for kv in msg.status[0].values}
            out[t] = float(values["frame_ms"])
    completed = [t for t in receive[1::2]]  # each pair completes with its second image
    if log_time == "input":
        assert sorted(out) == completed
    else:
        for (t, frame_ms), t_pair in zip(sorted(out.items()), completed):
            assert t > t_pair and (t - t_pair) / 1e6 <= frame_ms


def test_replay_summary_names_why_images_went_unpaired(tmp_path, sift_cfg):
    """A thermal camera whose clock jumps 2 s ahead for six frames and back: the frames after
    the jump are refused as stamped backwards, and the summary says so (it used to blame
    sync.slop for every unpaired image)."""
    from matchanything_ros.bags.storage import make_header

    bag = tmp_path / "jump"
    writer = BagWriter(bag, storage="mcap").open()
    for topic in ("/visible/image_raw", "/thermal/image_raw"):
        writer.add_topic(topic, "sensor_msgs/msg/Image")
    Image = writer.typestore.types["sensor_msgs/msg/Image"]
    rng = np.random.default_rng(0)

    def image(stamp_ns, frame):
        data = rng.integers(0, 255, 96 * 64, dtype=np.uint8)
        return Image(header=make_header(writer.typestore, stamp_ns, frame), height=64, width=96,
                     encoding="mono8", is_bigendian=0, step=96, data=data)

    for i in range(20):
        t = 10**9 + i * 10**8
        writer.write("/visible/image_raw", t + 1000, image(t, "visible_optical_frame"))
        jump = 2 * 10**9 if 2 <= i < 8 else 0
        writer.write("/thermal/image_raw", t + 2000, image(t + jump, "thermal_optical_frame"))
    writer.close()
    summary = replay(bag, tmp_path / "out", pipe_cfg=sift_cfg, options=ReplayOptions(progress=False))
    assert summary.error is None and summary.stamp_backwards > 0 and summary.unpaired_visible > 0
    text = summary.text()
    assert f"{summary.stamp_backwards} image(s) refused as stamped before their stream's recent stamps" in text


def test_compressed_bag_replays_like_the_raw_one(tmp_path, sift_cfg):
    """make-bag --compressed writes image_transport's compressed topics (JPEG visible, 16-bit
    PNG thermal); replay with the compressed transport pairs the same frames and registers them
    like the raw bag (the thermal PNG is lossless, the JPEG nearly so); without the transport
    parameter it says which one to set."""
    from matchanything_ros.node.config import split_parameters

    frames = easy_frames(4)  # 320x256: SIFT registers each with margin, JPEG or not
    write_bag(frames, tmp_path / "raw")
    write_bag(frames, tmp_path / "cmp", compressed=True)
    with BagReader(tmp_path / "cmp") as reader:
        assert reader.topics["/visible/image_raw/compressed"].msgtype == "sensor_msgs/msg/CompressedImage"
        assert reader.topics["/thermal/image_raw/compressed"].count == 4
    node_cfg, _ = split_parameters({"topics.visible_transport": "compressed", "topics.thermal_transport": "compressed"})
    raw = replay(tmp_path / "raw", tmp_path / "raw_out", pipe_cfg=sift_cfg, options=ReplayOptions(progress=False))
    cmp = replay(tmp_path / "cmp", tmp_path / "cmp_out", node_cfg=node_cfg, pipe_cfg=sift_cfg,
                 options=ReplayOptions(progress=False))
    assert cmp.error is None and (cmp.pairs, cmp.ok, cmp.bad_input) == (raw.pairs, raw.ok, 0) == (4, 4, 0)
    with pytest.raises(BagError, match="replay with -p topics.visible_transport=compressed"):
        replay(tmp_path / "cmp", tmp_path / "wrong_out", pipe_cfg=sift_cfg, options=ReplayOptions(progress=False))
