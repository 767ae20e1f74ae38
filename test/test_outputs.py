"""OutputBuilder: the same code builds rclpy messages and rosbags messages, byte-identical."""
import numpy as np
import pytest

from matchanything_ros.geometry import GeometryResult, GeometryStatus, camera1_pose_in_camera0
from matchanything_ros.matching import Matches
from matchanything_ros.node.outputs import (
    CORRESPONDENCE_FIELDS,
    ERROR,
    WARN,
    DiagnosticReport,
    OutputBuilder,
    rclpy_types,
    rosbags_types,
    rotation_to_quaternion,
)
from matchanything_ros.pipeline import PipelineResult

rosbags_typesys = pytest.importorskip("rosbags.typesys")
STAMP = 1_700_000_123_456_789_012


def _typestore():
    return rosbags_typesys.get_typestore(rosbags_typesys.Stores.ROS2_HUMBLE)


def _flavors():
    flavors = [("rosbags", lambda: rosbags_types(_typestore()))]
    try:
        import sensor_msgs.msg  # noqa: F401

        flavors.append(("rclpy", rclpy_types))
    except ImportError:
        pass
    return flavors


FLAVORS = _flavors()


def _result(geometry: GeometryResult, n: int = 40, seed: int = 0) -> PipelineResult:
    rng = np.random.default_rng(seed)
    k0 = rng.uniform(0, 600, (n, 2))
    k1 = k0 + rng.normal(0, 1, (n, 2))
    return PipelineResult(
        matches=Matches(k0, k1, rng.uniform(0, 1, n)),
        geometry=geometry,
        polarity="normal",
        model="test",
        timings={"total": 0.01},
        visible_shape=(512, 640),
        thermal_shape=(512, 640),
    )


def _homography_result() -> PipelineResult:
    H = np.array([[1.02, 0.05, 12.0], [-0.03, 0.98, -7.5], [1e-5, 2e-5, 1.0]])
    inliers = np.arange(40) % 3 != 0
    return _result(GeometryResult("homography", GeometryStatus.OK, "", H, inliers))


def _pose_result() -> PipelineResult:
    import cv2

    R, _ = cv2.Rodrigues(np.array([0.02, -0.15, 0.05]))
    t = np.array([-0.9, 0.1, 0.05])
    t /= np.linalg.norm(t)
    cov = np.diag([1e6, 0.01, 0.01, 1e-4, 2e-4, 3e-4])
    g = GeometryResult("essential", GeometryStatus.OK, "", np.eye(3), np.ones(40, bool), R=R, t=t, covariance=cov)
    return _result(g)


@pytest.mark.parametrize("flavor,make", FLAVORS)
def test_correspondences_cloud_fields_and_data(flavor, make):
    res = _homography_result()
    out = OutputBuilder(make())
    msg = out.correspondences(res, STAMP, "visible_optical_frame")
    assert msg.header.stamp.sec == STAMP // 10**9 and msg.header.stamp.nanosec == STAMP % 10**9
    assert msg.header.frame_id == "visible_optical_frame"
    assert [f.name for f in msg.fields] == list(CORRESPONDENCE_FIELDS)
    assert [f.offset for f in msg.fields] == [0, 4, 8, 12, 16, 20]
    assert all(f.datatype == 7 and f.count == 1 for f in msg.fields)
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 40, 24, 24 * 40)
    table = np.frombuffer(bytes(msg.data), dtype="<f4").reshape(-1, 6)
    np.testing.assert_array_equal(table[:, 0:2], res.matches.kpts0)
    np.testing.assert_array_equal(table[:, 2:4], res.matches.kpts1)
    np.testing.assert_array_equal(table[:, 4], res.matches.scores)
    np.testing.assert_array_equal(table[:, 5], res.geometry.inliers.astype(np.float32))

    only = out.correspondences(res, STAMP, "v", inliers_only=True)
    assert only.width == res.num_inliers
    assert np.all(np.frombuffer(bytes(only.data), dtype="<f4").reshape(-1, 6)[:, 5] == 1.0)


@pytest.mark.parametrize("status", [GeometryStatus.LOW_INLIER_RATIO, GeometryStatus.TOO_FEW_MATCHES])
def test_rejected_fit_flags_no_inliers(status):
    """A fit that was made but rejected keeps its mask in the result, yet the cloud flags none."""
    inliers = np.arange(40) % 3 != 0
    res = _result(GeometryResult("homography", status, "rejected", None, inliers))
    msg = OutputBuilder(rosbags_types(_typestore())).correspondences(res, STAMP, "v")
    table = np.frombuffer(bytes(msg.data), dtype="<f4").reshape(-1, 6)
    assert msg.width == 40 and not table[:, 5].any()


@pytest.mark.parametrize("flavor,make", FLAVORS)
def test_pose_and_transform_are_thermal_camera_in_visible_frame(flavor, make):
    res = _pose_result()
    out = OutputBuilder(make())
    R01, t01 = camera1_pose_in_camera0(res.geometry.R, res.geometry.t)
    pose = out.pose(res, STAMP, "vis")
    p = pose.pose.pose.position
    np.testing.assert_allclose([p.x, p.y, p.z], t01, atol=1e-12)
    assert abs(np.linalg.norm([p.x, p.y, p.z]) - 1.0) < 1e-9  # unknown scale: unit translation
    q = pose.pose.pose.orientation
    np.testing.assert_allclose([q.x, q.y, q.z, q.w], rotation_to_quaternion(R01), atol=1e-12)
    np.testing.assert_allclose(np.asarray(pose.pose.covariance).reshape(6, 6), res.geometry.covariance)
    tf = out.transform(res, STAMP, "vis", "thermal_optical_frame")
    assert tf.header.frame_id == "vis" and tf.child_frame_id == "thermal_optical_frame"
    tr = tf.transform.translation
    np.testing.assert_allclose([tr.x, tr.y, tr.z], t01, atol=1e-12)
    # no pose from a homography, nor from a failed fit
    assert out.pose(_homography_result(), STAMP, "vis") is None
    failed = _result(GeometryResult("essential", GeometryStatus.NO_INTRINSICS, "no K", None, np.zeros(40, bool)))
    assert out.pose(failed, STAMP, "vis") is None and out.transform(failed, STAMP, "v", "t") is None


def test_quaternion_roundtrip():
    import cv2

    rng = np.random.default_rng(3)
    for rvec in [np.zeros(3), np.array([np.pi, 0, 0]), np.array([0, np.pi - 1e-9, 0])] + list(rng.normal(0, 1.5, (20, 3))):
        R, _ = cv2.Rodrigues(np.asarray(rvec, dtype=np.float64))
        x, y, z, w = rotation_to_quaternion(R)
        R2 = np.array(
            [
                [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
            ]
        )
        np.testing.assert_allclose(R2, R, atol=1e-9)
        assert w >= 0


@pytest.mark.parametrize("flavor,make", FLAVORS)
def test_homography_and_registered_image(flavor, make):
    res = _homography_result()
    out = OutputBuilder(make())
    h = out.homography(res)
    np.testing.assert_array_equal(np.asarray(h.data), res.geometry.matrix.reshape(9))
    assert [(d.label, d.size, d.stride) for d in h.layout.dim] == [("rows", 3, 9), ("cols", 3, 3)]
    assert out.homography(_pose_result()) is None

    # a thermal ramp, registered into a visible image of another size: each visible pixel x
    # must hold thermal(H x)
    thermal = (np.arange(480)[:, None] * 100 + np.arange(600)[None, :]).astype(np.uint16)
    img = out.registered(res, thermal, "mono16", (512, 640), STAMP, "vis")
    assert (img.height, img.width, img.encoding, img.step) == (512, 640, "mono16", 1280)
    warped = np.frombuffer(bytes(img.data), dtype="<u2").reshape(512, 640)
    x, y = 100, 200
    u, v, s = res.geometry.matrix @ [x, y, 1.0]
    expected = thermal[int(round(v / s)), int(round(u / s))]
    assert abs(int(warped[y, x]) - int(expected)) <= 101  # bilinear: within one row step
    assert out.registered(_pose_result(), thermal, "mono16", (512, 640), STAMP, "vis") is None


@pytest.mark.parametrize("flavor,make", FLAVORS)
def test_diagnostics(flavor, make):
    out = OutputBuilder(make())
    msg = out.diagnostics(STAMP, [DiagnosticReport(WARN, "matcher", "latency high", "hw", {"a": 1.234567, "n": 3})])
    st = msg.status[0]
    assert st.level in (WARN, bytes([WARN]))
    assert (st.name, st.message, st.hardware_id) == ("matcher", "latency high", "hw")
    assert [(kv.key, kv.value) for kv in st.values] == [("a", "1.235"), ("n", "3")]
    err = out.diagnostics(STAMP, [DiagnosticReport(ERROR, "m", "x")]).status[0].level
    assert err in (ERROR, bytes([ERROR]))


def test_rclpy_and_rosbags_messages_serialize_identically():
    """The point of the shared builder: a bag written by replay holds exactly what the node
    publishes."""
    pytest.importorskip("sensor_msgs.msg")
    from rclpy.serialization import serialize_message

    ts = _typestore()
    ros, bag = OutputBuilder(rclpy_types()), OutputBuilder(rosbags_types(ts))
    hom, pose = _homography_result(), _pose_result()
    thermal = np.random.default_rng(1).integers(0, 65535, (64, 80), dtype=np.uint16)
    cases = [
        ("sensor_msgs/msg/PointCloud2", lambda b: b.correspondences(hom, STAMP, "vis")),
        ("geometry_msgs/msg/PoseWithCovarianceStamped", lambda b: b.pose(pose, STAMP, "vis")),
        ("geometry_msgs/msg/TransformStamped", lambda b: b.transform(pose, STAMP, "vis", "th")),
        ("std_msgs/msg/Float64MultiArray", lambda b: b.homography(hom)),
        ("sensor_msgs/msg/Image", lambda b: b.registered(hom, thermal, "mono16", (48, 64), STAMP, "vis")),
        ("diagnostic_msgs/msg/DiagnosticArray", lambda b: b.diagnostics(STAMP, [DiagnosticReport(WARN, "n", "m", "h", {"k": 0.5})])),
    ]
    for typename, build in cases:
        # CDR padding bytes are unspecified (Fast CDR leaves them as they were), so compare the
        # rclpy bytes decoded by rosbags with the rosbags message, field by field
        decoded = ts.deserialize_cdr(serialize_message(build(ros)), typename)
        _assert_same(decoded, build(bag), typename)


def _assert_same(a, b, path):
    import dataclasses

    if dataclasses.is_dataclass(a):
        assert type(a).__name__ == type(b).__name__, path
        for f in dataclasses.fields(a):
            _assert_same(getattr(a, f.name), getattr(b, f.name), f"{path}.{f.name}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, path
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b, path


def test_tf_message_only_when_tf2_msgs_is_available():
    bag = OutputBuilder(rosbags_types(_typestore()))
    tf = bag.transform(_pose_result(), STAMP, "vis", "th")
    assert bag.tf_message([tf]).transforms[0].child_frame_id == "th"
