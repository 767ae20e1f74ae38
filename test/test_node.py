"""matcher_node end to end over real DDS: the node runs as a subprocess with a params file, this
test publishes synthetic visible/thermal pairs with known geometry from its own rclpy node and
checks pairing, outputs against ground truth, diagnostics, malformed input and runtime
parameter changes.

Isolation: a ROS_DOMAIN_ID derived from the pid, discovery limited to localhost, and the
package's Fast DDS shared-memory profile (large images over best-effort need it).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.ros
rclpy = pytest.importorskip("rclpy")
pytest.importorskip("sensor_msgs.msg")

from matchanything_ros.node.dds import profile_env  # noqa: E402
from matchanything_ros.synthetic import make_planar_pair, make_stereo_pair  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
# (width, height): cross-modal synthetic pairs need the full size for ground-truth checks; the
# other tests use small images to keep the matcher fast on 2 shared cores
GT_SIZE = (640, 512)
SIZE = (320, 256)
SLOP = 0.010
VIS_FRAME, TH_FRAME = "vis_optical", "th_optical"
MS = 1_000_000


def _env() -> dict[str, str]:
    profile = str(REPO / "config" / "fastdds_shm.xml")
    return {
        "ROS_DOMAIN_ID": str(10 + os.getpid() % 190),
        "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
        "ROS_LOCALHOST_ONLY": "1",  # older distros
        **profile_env(profile),
    }


PARAMS = f"""
matcher_node:
  ros__parameters:
    model: xfeat
    resolution: 640
    geometry: homography
    polarity: normal
    min_matches: 12
    sync: {{queue_size: 10, slop: {SLOP}}}
    qos: {{reliability: reliable, depth: 100}}
    worker: {{queue_size: 4}}
    publish: {{registered: true, debug_image: true, pose: true, transform: true, homography: true}}
    diagnostics: {{period: 0.25, stale_timeout: 30.0}}
    frames: {{thermal: {TH_FRAME}}}
"""


# Deadlines are generous (CI shares its machine: a 10 s wait once timed out at load average 20
# on 2 cores) and scale with MATCHANYTHING_TEST_TIME_SCALE on slower machines. Every wait ends
# as soon as its event happens, so a quiet machine does not pay for them.
TIME_SCALE = float(os.environ.get("MATCHANYTHING_TEST_TIME_SCALE", "1"))
WAIT = 60.0  # s, default deadline of one event


def _wait(predicate, timeout: float, what: str, poll: float = 0.02):
    """Bounded poll: return predicate()'s truthy value or fail with ``what``."""
    timeout *= TIME_SCALE
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")


class Harness:
    """The test's own node: publishes inputs, records every output."""

    def __init__(self, proc: subprocess.Popen, compressed: tuple[bool, bool] = (False, False)):
        """``compressed``: publish that stream as image_transport's compressed transport does
        (sensor_msgs/CompressedImage on <topic>/compressed: visible JPEG, thermal 16-bit PNG)."""
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import PoseWithCovarianceStamped, TransformStamped
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
        from std_msgs.msg import Float64MultiArray

        self.proc = proc
        self.compressed = compressed
        self.ctx = rclpy.context.Context()
        rclpy.init(context=self.ctx)
        self.node = rclpy.create_node("matcher_test_driver", context=self.ctx)
        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)  # deep: the loaded CI machine
        self.pub_vis, self.pub_th = (
            self.node.create_publisher(CompressedImage, f"{topic}/compressed", qos) if c
            else self.node.create_publisher(Image, topic, qos)
            for topic, c in (("visible/image_raw", compressed[0]), ("thermal/image_raw", compressed[1])))
        self.pub_vis_info = self.node.create_publisher(CameraInfo, "visible/camera_info", qos)
        self.pub_th_info = self.node.create_publisher(CameraInfo, "thermal/camera_info", qos)
        self.lock = threading.Lock()
        self.got: dict[str, list] = {}
        self.subs = []
        for topic, kind in [
            ("correspondences", PointCloud2),
            ("homography", Float64MultiArray),
            ("relative_pose", PoseWithCovarianceStamped),
            ("relative_transform", TransformStamped),
            ("registered/image", Image),
            ("debug/matches", Image),
            ("/diagnostics", DiagnosticArray),
        ]:
            self.got[topic] = []
            self.subs.append(self.node.create_subscription(kind, topic, self._recorder(topic), qos))
        self.executor = SingleThreadedExecutor(context=self.ctx)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _recorder(self, topic):
        def record(msg):
            with self.lock:
                self.got[topic].append(msg)

        return record

    def messages(self, topic: str) -> list:
        with self.lock:
            return list(self.got[topic])

    def clear(self) -> None:
        with self.lock:
            for v in self.got.values():
                v.clear()

    def close(self) -> None:
        # bounded: an executor whose spin thread does not wake up must not hang the suite (seen
        # once, in the lifecycle module's teardown after the managed node had exited)
        self.executor.shutdown(timeout_sec=WAIT)
        self.node.destroy_node()
        rclpy.shutdown(context=self.ctx)
        self.thread.join(WAIT)

    # -- inputs -----------------------------------------------------------------------------
    def image(self, array: np.ndarray, encoding: str, stamp_ns: int, frame: str):
        from matchanything_ros.node.outputs import OutputBuilder, rclpy_types

        return OutputBuilder(rclpy_types()).image(array, encoding, stamp_ns, frame)

    def compressed_image(self, data: bytes, fmt: str, stamp_ns: int, frame: str):
        from sensor_msgs.msg import CompressedImage

        msg = CompressedImage(format=fmt, data=bytes(data))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        msg.header.frame_id = frame
        return msg

    def stream_image(self, index: int, array: np.ndarray, encoding: str, stamp_ns: int, frame: str):
        """A visible (0) or thermal (1) image message as this harness publishes that stream."""
        if not self.compressed[index]:
            return self.image(array, encoding, stamp_ns, frame)
        import cv2

        fmt = ".jpg" if encoding == "bgr8" else ".png"
        ok, data = cv2.imencode(fmt, array)
        assert ok
        return self.compressed_image(data.tobytes(), f"{encoding}; {fmt[1:]} compressed {encoding}", stamp_ns, frame)

    def info(self, K: np.ndarray, width: int, height: int, stamp_ns: int, frame: str):
        from sensor_msgs.msg import CameraInfo

        msg = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 10**9)
        msg.header.frame_id = frame
        msg.k = [float(v) for v in np.asarray(K).reshape(9)]
        return msg

    def publish_pair(self, pair, stamp_ns: int, thermal_offset_ns: int = 0, infos: bool = False) -> None:
        h, w = pair.visible.shape[:2]
        if infos:
            th_h, th_w = pair.thermal.shape[:2]
            self.pub_vis_info.publish(self.info(pair.K0, w, h, stamp_ns, VIS_FRAME))
            self.pub_th_info.publish(self.info(pair.K1, th_w, th_h, stamp_ns, "thermal_cam"))
            time.sleep(0.05)  # camera info is latched per stream: let it land before the images
        self.pub_vis.publish(self.stream_image(0, pair.visible, "bgr8", stamp_ns, VIS_FRAME))
        self.pub_th.publish(self.stream_image(1, pair.thermal, "mono16", stamp_ns + thermal_offset_ns, "thermal_cam"))

    def output_for(self, stamp_ns: int, topic: str = "correspondences", timeout: float = 2 * WAIT):
        def find():
            for msg in self.messages(topic):
                if msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp_ns:
                    return msg
            if self.proc.poll() is not None:
                pytest.fail(f"matcher_node exited with code {self.proc.returncode}")
            return None

        return _wait(find, timeout, f"{topic} for stamp {stamp_ns}")

    def diagnostics(self, predicate=lambda values, status: True, timeout: float = WAIT) -> tuple[dict, object]:
        """The newest matcher diagnostics status satisfying predicate(values, status)."""
        def find():
            for arr in reversed(self.messages("/diagnostics")):
                for status in arr.status:
                    if status.name.startswith("matcher_node"):
                        values = {kv.key: kv.value for kv in status.values}
                        if predicate(values, status):
                            return values, status
            return None

        try:
            return _wait(find, timeout, "matching diagnostics")
        except BaseException:
            last = self.messages("/diagnostics")[-1:]
            print("last diagnostics:", [{kv.key: kv.value for kv in st.values} for arr in last for st in arr.status])
            raise

    def set_parameters(self, _atomically: bool = False, **values) -> list:
        """SetParameters (rclpy applies each parameter on its own, one result each), or with
        ``_atomically`` SetParametersAtomically (all or none, one result)."""
        from rcl_interfaces.msg import Parameter, ParameterType, ParameterValue
        from rcl_interfaces.srv import SetParameters, SetParametersAtomically

        service = SetParametersAtomically if _atomically else SetParameters
        client = self.node.create_client(service, "/matcher_node/set_parameters" + ("_atomically" * _atomically))
        assert client.wait_for_service(timeout_sec=WAIT * TIME_SCALE), "set_parameters service not found"
        params = []
        for name, value in values.items():
            v = ParameterValue()
            if isinstance(value, bool):
                v.type, v.bool_value = ParameterType.PARAMETER_BOOL, value
            elif isinstance(value, int):
                v.type, v.integer_value = ParameterType.PARAMETER_INTEGER, value
            elif isinstance(value, float):
                v.type, v.double_value = ParameterType.PARAMETER_DOUBLE, value
            else:
                v.type, v.string_value = ParameterType.PARAMETER_STRING, value
            params.append(Parameter(name=name.replace("__", "."), value=v))
        future = client.call_async(service.Request(parameters=params))
        _wait(future.done, WAIT, "set_parameters response")
        self.node.destroy_client(client)
        return [future.result().result] if _atomically else future.result().results

    def get_parameters(self, *names: str) -> dict:
        import rclpy
        from rcl_interfaces.srv import GetParameters

        client = self.node.create_client(GetParameters, "/matcher_node/get_parameters")
        assert client.wait_for_service(timeout_sec=WAIT * TIME_SCALE), "get_parameters service not found"
        future = client.call_async(GetParameters.Request(names=list(names)))
        _wait(future.done, WAIT, "get_parameters response")
        self.node.destroy_client(client)
        return dict(zip(names, (rclpy.parameter.parameter_value_to_python(v) for v in future.result().values)))


@contextlib.contextmanager
def running_node(folder: Path, params_text: str, compressed: tuple[bool, bool] = (False, False),
                 module: str = "matchanything_ros.ros.matcher_node", discover: bool = True):
    """A matcher_node subprocess (``module``) started with ``params_text`` (a params file in
    ``folder``) and a Harness on the same DDS domain, discovered unless ``discover`` is False
    (a managed node subscribes only once active); both torn down after."""
    saved = {k: os.environ.get(k) for k in _env()}
    os.environ.update(_env())
    params = folder / "params.yaml"
    params.write_text(params_text)
    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    env["PYTHONUNBUFFERED"] = "1"
    log = open(folder / "node.log", "w")
    proc = subprocess.Popen(
        [sys.executable, "-m", module, "--ros-args", "--params-file", str(params)],
        env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO),
    )
    h = Harness(proc, compressed)
    h.params_file = params
    try:
        if discover:  # both image subscriptions and the cloud publisher are matched
            _wait(lambda: proc.poll() is not None or (
                h.pub_vis.get_subscription_count() > 0 and h.pub_th.get_subscription_count() > 0
                and h.subs[0].get_publisher_count() > 0), 3 * WAIT, "matcher_node discovery")
        assert proc.poll() is None, f"matcher_node exited: {(folder / 'node.log').read_text()}"
        yield h
    finally:
        h.close()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        print((folder / "node.log").read_text()[-4000:])
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    folder = tmp_path_factory.mktemp("node")
    # the one file the node writes is a start-up parameter (read-only at run time)
    with running_node(folder, PARAMS + f"    output: {{rig_calibration_file: {folder / 'rig.yaml'}}}\n") as h:
        yield h


def _cloud(msg) -> np.ndarray:
    names = [f.name for f in msg.fields]
    assert names == ["visible_x", "visible_y", "thermal_x", "thermal_y", "score", "inlier"]
    return np.frombuffer(bytes(msg.data), dtype="<f4").reshape(msg.width, 6)


_stamp = [1_000 * 10**9]


def next_stamp() -> int:
    _stamp[0] += 100 * MS
    return _stamp[0]


def test_homography_pair_outputs_match_ground_truth(harness):
    pair = make_planar_pair(2, size=GT_SIZE, rotation_deg=8.0, perspective=0.03)
    stamp = next_stamp()
    harness.publish_pair(pair, stamp, thermal_offset_ns=3 * MS)  # jitter within slop

    cloud = harness.output_for(stamp)
    assert cloud.header.frame_id == VIS_FRAME
    table = _cloud(cloud)
    inl = table[table[:, 5] == 1.0]
    assert len(inl) >= 12
    gt = pair.visible_to_thermal(inl[:, 0:2])
    assert np.median(np.linalg.norm(gt - inl[:, 2:4], axis=1)) < 3.0

    hom = _wait(lambda: harness.messages("homography"), WAIT, "homography")[-1]
    H = np.asarray(hom.data).reshape(3, 3)
    w, h = GT_SIZE
    corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
    import cv2

    err = np.linalg.norm(cv2.perspectiveTransform(corners[None], H)[0] - pair.visible_to_thermal(corners), axis=1)
    assert err.mean() < 8.0, err

    reg = harness.output_for(stamp, "registered/image")
    assert (reg.width, reg.height, reg.encoding, reg.header.frame_id) == (w, h, "mono8", VIS_FRAME)
    dbg = harness.output_for(stamp, "debug/matches")
    assert dbg.encoding == "bgr8" and dbg.width >= w
    # homography mode publishes no pose
    assert harness.messages("relative_pose") == []


def test_pairing_respects_slop(harness):
    pair = make_planar_pair(2, size=SIZE, rotation_deg=5.0)
    far = next_stamp()
    harness.publish_pair(pair, far, thermal_offset_ns=int(3 * SLOP * 1e9))  # beyond slop
    near = next_stamp()
    harness.publish_pair(pair, near, thermal_offset_ns=-int(0.5 * SLOP * 1e9))  # within slop
    harness.output_for(near)
    stamps = {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in harness.messages("correspondences")}
    assert far not in stamps


def test_diagnostics_report_rates_latency_and_matching(harness):
    pair = make_planar_pair(3, size=SIZE, rotation_deg=5.0)
    stamp = next_stamp()
    harness.publish_pair(pair, stamp)
    harness.output_for(stamp)
    values, status = harness.diagnostics(lambda v, s: int(v.get("processed", 0)) >= 2)
    for key in ("input_rate_visible_hz", "output_rate_hz", "latency_median_ms", "inference_median_ms",
                "dropped_overload", "matches", "inlier_ratio", "model", "bad_input", "sync"):
        assert key in values, key
    assert "xfeat" in values["model"].lower()
    assert int(values["matches"]) > 0 and float(values["inference_median_ms"]) > 0
    assert values["sync"] in ("message_filters", "matchanything_ros.node.sync")
    assert status.hardware_id.endswith("matcher_node")


def test_malformed_stream_is_counted_and_node_keeps_serving(harness):
    from sensor_msgs.msg import Image

    base = next_stamp()
    bad = []
    for i, (encoding, width, height, step, size) in enumerate([
        ("yuv422_weird", 8, 8, 16, 128),  # unknown encoding
        ("mono8", 8, 8, 8, 10),  # data length != step * height
        ("mono8", 8, 8, 4, 32),  # step smaller than a row
        ("mono16", 8, 8, 16, 0),  # empty data
        ("bgr8", 0, 0, 0, 0),  # empty image
    ]):
        msg = Image(encoding=encoding, width=width, height=height, step=step, data=bytes(size))
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(base + i * MS, 10**9)
        bad.append(msg)
    # bytes that are not a whole sensor_msgs/Image: a cut-off serialized message
    from rclpy.serialization import serialize_message

    truncated = serialize_message(bad[0])[:24]
    before = int(harness.diagnostics()[0].get("bad_input", 0))
    for round_ in range(1, 5):
        for msg in bad:
            harness.pub_vis.publish(msg)
            harness.pub_th.publish(msg)
        harness.pub_vis.publish(truncated)  # rclpy publishes bytes as a serialized message
        # one round (11 messages) fits the reliable history; wait until the node has counted it
        # before the next, so a slow (loaded) node cannot lose messages to the history depth
        harness.diagnostics(lambda v, s: int(v.get("bad_input", 0)) >= before + 11 * round_)
    # a stamp going backwards on one stream: older than the median of the last five accepted
    # (three newer ones, docs/NODE.md, Stamps)
    pair = make_planar_pair(4, size=SIZE, rotation_deg=5.0)
    now = next_stamp()
    harness.pub_vis.publish(harness.image(pair.visible, "bgr8", now - 60 * MS, VIS_FRAME))
    harness.pub_vis.publish(harness.image(pair.visible, "bgr8", now - 40 * MS, VIS_FRAME))
    harness.pub_vis.publish(harness.image(pair.visible, "bgr8", now, VIS_FRAME))
    harness.pub_vis.publish(harness.image(pair.visible, "bgr8", now - 80 * MS, VIS_FRAME))
    harness.pub_th.publish(harness.image(pair.thermal, "mono16", now, "thermal_cam"))
    harness.output_for(now)

    values, status = harness.diagnostics(
        lambda v, s: int(v.get("bad_input", 0)) >= before + 44 and int(v.get("stamp_backwards", 0)) >= 1)
    assert int(values["bad_input.visible_malformed"]) >= 4
    assert int(values["bad_input.visible_unknown_encoding"]) >= 4
    assert int(values["bad_input.thermal_size_mismatch"]) >= 8
    assert int(values["bad_input.visible_empty"]) >= 8
    assert harness.proc.poll() is None
    # and it still serves
    good = next_stamp()
    harness.publish_pair(pair, good)
    harness.output_for(good)


def test_runtime_parameter_change_and_missing_camera_info(harness):
    # invalid values are rejected with a reason, read-only ones too
    res = harness.set_parameters(resolution=10)
    assert not res[0].successful and "resolution" in res[0].reason
    res = harness.set_parameters(geometry="plane")
    assert not res[0].successful
    res = harness.set_parameters(topics__visible_image="other")
    assert not res[0].successful

    # switch to the essential matrix at run time (the new resolution rebuilds the matcher
    # before the answer): pose from a stereo pair with CameraInfo
    # (min_quality 0: this pair's fit scores below the default verdict threshold; the verdict
    # is test_quality.py's, this is the node's plumbing)
    res = harness.set_parameters(
        geometry="essential", ransac_threshold=1.0, min_matches=15, max_matches=1500, min_quality=0.0
    )
    assert all(r.successful for r in res), [r.reason for r in res]
    harness.diagnostics(lambda v, s: v.get("geometry_mode") == "essential" and v.get("max_matches") == "1500",
                        timeout=2 * WAIT)
    pair = make_stereo_pair(3, size=GT_SIZE, max_rotation_deg=2.0, n_boxes=4)

    # first without CameraInfo: correspondences but no pose, counted
    harness.clear()
    stamp = next_stamp()
    harness.pub_vis.publish(harness.image(pair.visible, "bgr8", stamp, VIS_FRAME))
    harness.pub_th.publish(harness.image(pair.thermal, "mono16", stamp, "thermal_cam"))
    harness.output_for(stamp)
    values, _ = harness.diagnostics(lambda v, s: int(v.get("missing_camera_info", 0)) >= 1)
    assert harness.messages("relative_pose") == []

    # CameraInfo and images travel on separate topics: on a loaded machine the images can win
    # the race, and the pair is matched without K (counted). Then publish again, a few times.
    for _ in range(5):
        missing = int(values.get("missing_camera_info", 0))
        stamp = next_stamp()
        harness.publish_pair(pair, stamp, infos=True)
        harness.output_for(stamp)

        def pose_or_missing():
            for msg in harness.messages("relative_pose"):
                if msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamp:
                    return "pose"
            diag = harness.diagnostics()[0]
            return "missing" if int(diag.get("missing_camera_info", 0)) > missing else None

        if _wait(pose_or_missing, WAIT, "relative_pose or a missing_camera_info count") == "pose":
            break
        values, _ = harness.diagnostics()
    pose = harness.output_for(stamp, "relative_pose")
    assert pose.header.frame_id == VIS_FRAME
    tf = harness.output_for(stamp, "relative_transform")
    assert tf.child_frame_id == TH_FRAME
    p, q = pose.pose.pose.position, pose.pose.pose.orientation
    position, quat = np.array([p.x, p.y, p.z]), np.array([q.x, q.y, q.z, q.w])
    assert abs(np.linalg.norm(position) - 1.0) < 1e-6  # unit translation: scale unknown

    from matchanything_ros.geometry import camera1_pose_in_camera0
    from matchanything_ros.node.config import load_params_file
    from matchanything_ros.node.outputs import rotation_to_quaternion
    from matchanything_ros.pipeline import Pipeline

    def angle_deg(qa, qb) -> float:
        return 2 * np.degrees(np.arccos(min(1.0, abs(float(np.dot(qa, qb))))))

    # the node publishes exactly the pipeline's pose, converted to "thermal camera in the
    # visible frame": same pair and parameters in-process (deterministic on CPU)
    _, cfg = load_params_file(harness.params_file)
    cfg = dataclasses.replace(
        cfg, geometry="essential", ransac_threshold=1.0, min_matches=15, max_matches=1500, min_quality=0.0
    )
    ref = Pipeline(cfg).process(pair.visible, pair.thermal, pair.K0, pair.K1)
    R01, t01 = camera1_pose_in_camera0(ref.geometry.R, ref.geometry.t)
    np.testing.assert_allclose(position, t01, atol=1e-3)
    assert angle_deg(quat, rotation_to_quaternion(R01)) < 0.1
    # and the rotation is right against the ground truth (the translation direction of this
    # small-baseline synthetic rig is poorly observed, so it is not compared)
    rot_err = angle_deg(quat, rotation_to_quaternion(pair.R.T))
    assert rot_err < 3.0, f"rotation error {rot_err:.2f} deg"
    cov = np.asarray(pose.pose.covariance).reshape(6, 6)
    assert np.all(np.isfinite(cov)) and np.all(np.diag(cov) > 0)
    harness.set_parameters(geometry="homography", ransac_threshold=3.0, min_matches=12, max_matches=2048, min_quality=0.9)


def test_preset_applies_namespaced_and_renamed_and_unmatched_file_warns(tmp_path, monkeypatch):
    """A preset ('/**:') reaches the node under any namespace and name (checked through the
    parameter services); a params file keyed for another node name is reported at start-up."""
    from rcl_interfaces.srv import GetParameters

    stale = tmp_path / "stale.yaml"
    stale.write_text("matcher_node:\n  ros__parameters: {resolution: 320}\n")  # misses /x/y
    for key, value in _env().items():
        monkeypatch.setenv(key, value)  # this process's DDS participant too
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    log_path = tmp_path / "node.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "matchanything_ros.ros.matcher_node", "--ros-args", "-r", "__ns:=/x",
             "-r", "__node:=y", "--params-file", str(REPO / "config" / "uav_nadir.yaml"),
             "--params-file", str(stale), "-p", "model:=xfeat"],  # xfeat: fast start on CPU
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(REPO))
    ctx = rclpy.context.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("preset_checker", context=ctx)
    executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
    executor.add_node(node)
    try:
        client = node.create_client(GetParameters, "/x/y/get_parameters")
        _wait(lambda: proc.poll() is not None or client.service_is_ready(), 3 * WAIT, "/x/y/get_parameters")
        assert proc.poll() is None, log_path.read_text()
        names = ["geometry", "ransac_threshold", "min_matches", "resolution", "sync.slop",
                 "topics.use_camera_info", "publish.registered", "diagnostics.warn_inlier_ratio"]
        future = client.call_async(GetParameters.Request(names=names))
        _wait(lambda: executor.spin_once(timeout_sec=0.1) or future.done(), WAIT, "get_parameters response")
        got = dict(zip(names, (rclpy.parameter.parameter_value_to_python(v) for v in future.result().values)))
        # the uav_nadir preset's values, not the defaults (essential, 2.0, 30, ...)
        assert got == {"geometry": "homography", "ransac_threshold": 3.0, "min_matches": 15, "resolution": 640,
                       "sync.slop": 0.03, "topics.use_camera_info": False, "publish.registered": True,
                       "diagnostics.warn_inlier_ratio": 0.25}
        warning = f"params file {stale} holds no entry for this node /x/y"
        _wait(lambda: warning in log_path.read_text(), WAIT, "the unmatched params file warning")
        assert "uav_nadir.yaml holds no entry" not in log_path.read_text()
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_rig_mode_latches_the_estimate_and_reports_it(harness, tmp_path):
    """rig.enabled at run time: a fixed-H sequence gives a latched rig/homography that a late
    subscriber still receives, a rig diagnostics status and a calibration file."""
    import cv2
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Float64MultiArray

    from matchanything_ros.node.rig_outputs import read_calibration

    calib = harness.params_file.parent / "rig.yaml"  # set at start-up
    # anyone on the graph can set parameters: the output file is not one of them
    (refused,) = harness.set_parameters(output__rig_calibration_file=str(tmp_path / "elsewhere.yaml"))
    assert not refused.successful
    # polarity both: with the node's normal polarity most of these synthetic pairs fail and the
    # estimate rests on one frame, whose bootstrap spread is rightly large
    results = harness.set_parameters(rig__enabled=True, polarity="both")
    assert all(r.successful for r in results)

    def rig_status(min_updates: int):
        for arr in reversed(harness.messages("/diagnostics")):
            for st in arr.status:
                values = {kv.key: kv.value for kv in st.values}
                if st.name.endswith("rig calibration") and int(values.get("rig_updates", -1)) >= min_updates:
                    return values, st
        return None

    # accepted means applied (built before the answer): the next diagnostics report the rig
    _wait(lambda: rig_status(0), 30.0, "rig mode switched on")
    w, h = SIZE
    H = np.array([[0.97, -0.05, 9.0], [0.04, 0.98, -6.0], [1e-5, 2e-5, 1.0]])
    try:
        for seed in range(20, 28):
            pair = make_planar_pair(seed, size=SIZE, rotation_deg=5.0)
            aligned = pair.warp_thermal_to_visible()  # thermal on the visible grid
            fixed = dataclasses.replace(pair, thermal=cv2.warpPerspective(aligned, H, (w, h)))
            stamp = next_stamp()
            harness.publish_pair(fixed, stamp)
            harness.output_for(stamp, timeout=60.0)
        values, status = _wait(lambda: rig_status(8), 30.0, "rig diagnostics after 8 pairs")
        assert values["rig_mode"] == "homography" and float(values["rig_corner_sigma_px"]) < 3.0
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
        got = []
        harness.node.create_subscription(Float64MultiArray, "rig/homography", got.append, latched)
        _wait(lambda: got, 20.0, "latched rig/homography for a late subscriber")
        H_rig = np.asarray(got[-1].data).reshape(3, 3)
        corners = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], float)
        err = np.linalg.norm(cv2.perspectiveTransform(corners[None], H_rig)[0] - cv2.perspectiveTransform(corners[None], H)[0], axis=1)
        assert err.mean() < 3.0, err
        doc = _wait(lambda: calib.exists() and read_calibration(calib), 20.0, "calibration file")
        assert doc["mode"] == "homography" and doc["converged"]
    finally:
        harness.set_parameters(rig__enabled=False, polarity="normal")
    assert not (tmp_path / "elsewhere.yaml").exists()


def test_runtime_hostile_weights_never_run(harness, tmp_path):
    """Anyone on the graph can set `model` and `weights`: a pickled payload is refused in the
    answer (one clear reason naming the file; read with the safe loader only, never run), no
    parameter changes, and the running pipeline keeps serving (issue 18, item 4: it used to be
    accepted, fail on the side thread and be set back)."""
    from test_weights_security import hostile

    path, marker = hostile(tmp_path, "pickle0", "top")
    before, _ = harness.diagnostics()
    errors = int(before.get("reconfigure_errors", 0))
    (res,) = harness.set_parameters(weights=str(path))
    assert not res.successful and "not a safe checkpoint" in res.reason and str(path) in res.reason, res.reason
    res = harness.set_parameters(backend="torch", model="matchanything_eloftr")
    assert not all(r.successful for r in res)  # no weights to build it from: refused too
    assert not marker.exists()
    assert harness.get_parameters("model", "weights") == {"model": "xfeat", "weights": ""}
    stamp = next_stamp()
    harness.publish_pair(make_planar_pair(1, size=SIZE), stamp)
    harness.output_for(stamp, timeout=120.0)
    after, _ = harness.diagnostics()
    assert int(after.get("reconfigure_errors", 0)) == errors  # nothing was accepted that then failed


def test_a_change_whose_build_fails_is_refused_and_nothing_changes(harness, tmp_path):
    """Issue 18, item 4: a change that passes the quick checks (the file exists and reads)
    but whose matcher cannot be built (another network's tensors: checked when built) had been
    answered "successful", failed on a side thread and been set back after the fact. The
    node now builds before it answers: refused, every parameter as it was, still serving."""
    pytest.importorskip("kornia")
    import torch

    damaged = tmp_path / "minima_loftr.ckpt"  # a readable checkpoint, of some other network
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3, 3)}}, damaged)
    before = harness.get_parameters("model", "weights", "polarity")
    errors = int(harness.diagnostics()[0].get("reconfigure_errors", 0))
    (res,) = harness.set_parameters(_atomically=True, model="minima_loftr", weights=str(damaged), polarity="both")
    assert not res.successful and "cannot build the new pipeline, nothing changed" in res.reason, res.reason
    assert harness.get_parameters("model", "weights", "polarity") == before
    harness.diagnostics(lambda v, s: int(v.get("reconfigure_errors", 0)) == errors + 1)
    stamp = next_stamp()
    harness.publish_pair(make_planar_pair(2, size=SIZE), stamp)
    assert harness.output_for(stamp, timeout=120.0) is not None


def test_use_sim_time_is_start_up_only_and_a_clock_message_silences_nothing(harness):
    """Issue 18: `use_sim_time` set at run time, then one /clock message, had frozen the stamp
    rules and the diagnostics timer. The switch is refused; /diagnostics runs on a steady clock."""
    from rosgraph_msgs.msg import Clock

    (res,) = harness.set_parameters(use_sim_time=True)
    assert not res.successful and "start-up only" in res.reason
    clock_pub = harness.node.create_publisher(Clock, "/clock", 10)
    msg = Clock()
    msg.clock.sec = 1
    clock_pub.publish(msg)
    seen = len(harness.messages("/diagnostics"))
    pair = make_planar_pair(5, size=SIZE, rotation_deg=5.0)
    stamp = next_stamp()
    harness.publish_pair(pair, stamp)
    assert harness.output_for(stamp) is not None  # answered after the clock message
    _wait(lambda: len(harness.messages("/diagnostics")) > seen + 2, WAIT, "diagnostics keep coming")


def test_a_sync_change_keeps_its_counters_and_counts_what_it_drops(harness):
    """Issue 18, item 5: rebuilding the synchronizer (sync.* / stamps.* changed) had dropped
    its queued messages uncounted and reset sync_unpaired and time_resets to 0."""
    matching = lambda v, s: "sync_unpaired" in v  # noqa: E731 (not the rig status)
    before, _ = harness.diagnostics(matching)
    unpaired = int(before["sync_unpaired"])
    pair = make_planar_pair(6, size=SIZE)
    for _ in range(3):  # visible images that no thermal image will ever pair
        harness.pub_vis.publish(harness.image(pair.visible, "bgr8", next_stamp(), VIS_FRAME))
    harness.diagnostics(lambda v, s: matching(v, s) and int(v["received_visible"]) >= int(before["received_visible"]) + 3)
    try:
        res = harness.set_parameters(sync__slop=SLOP * 2)
        assert all(r.successful for r in res), [r.reason for r in res]
        harness.diagnostics(lambda v, s: matching(v, s) and int(v["sync_unpaired"]) >= unpaired + 3)
    finally:
        harness.set_parameters(sync__slop=SLOP)
    values, _ = harness.diagnostics(matching)
    assert int(values["sync_unpaired"]) >= unpaired + 3 and int(values["time_resets"]) >= int(before["time_resets"])
