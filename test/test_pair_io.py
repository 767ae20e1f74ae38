"""The per-pair input/output rules shared by matcher_node and bag replay (ROS-free)."""
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from matchanything_ros.imaging.encodings import numpy_to_image
from matchanything_ros.node.config import NodeConfig
from matchanything_ros.node.outputs import OutputBuilder, rosbags_types
from matchanything_ros.imaging.encodings import ImageFormatError
from matchanything_ros.node.pair_io import camera_matrix, check_image, decode_image, image_from_cdr, output_messages
from matchanything_ros.pipeline import Pipeline, PipelineConfig
from matchanything_ros.synthetic import make_planar_pair

TS = get_typestore(Stores.ROS2_HUMBLE)
Image, Header, Time = TS.types["sensor_msgs/msg/Image"], TS.types["std_msgs/msg/Header"], TS.types["builtin_interfaces/msg/Time"]


def image_msg(array, enc, frame="cam", **override):
    buf = numpy_to_image(array, enc)
    fields = dict(
        header=Header(stamp=Time(sec=1, nanosec=0), frame_id=frame), height=buf.height, width=buf.width,
        encoding=buf.encoding, is_bigendian=int(buf.is_bigendian), step=buf.step,
        data=np.frombuffer(buf.data, dtype=np.uint8),
    )
    fields.update(override)
    return Image(**fields)


@pytest.mark.parametrize(
    "override, reason",
    [({"encoding": "yuv9000"}, "unknown_encoding"), ({"width": 0}, "empty"), ({"step": 3}, "size_mismatch")],
)
def test_check_image_names_the_reason(override, reason):
    msg = image_msg(np.zeros((4, 5), np.uint8), "mono8", **override)
    problem = check_image(msg)
    assert problem is not None and problem[0] == reason and problem[1]


def test_decode_and_camera_matrix_rules():
    rgb = np.zeros((4, 5, 3), np.uint8)
    rgb[..., 0] = 200  # red in rgb8 -> third channel in BGR
    assert decode_image(image_msg(rgb, "rgb8"), "visible")[0, 0].tolist() == [0, 0, 200]
    assert decode_image(image_msg(rgb, "rgb8"), "thermal").ndim == 2  # colour thermal -> luma
    Info = TS.types["sensor_msgs/msg/CameraInfo"]
    msg = image_msg(np.zeros((4, 5), np.uint8), "mono8")
    k = np.array([100.0, 0, 2, 0, 100, 2, 0, 0, 1])
    info = Info(header=msg.header, height=4, width=5, distortion_model="", d=np.zeros(0), k=k,
                r=np.eye(3).ravel(), p=np.zeros(12), binning_x=0, binning_y=0,
                roi=TS.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))
    assert np.allclose(camera_matrix(info, msg), k.reshape(3, 3))
    assert camera_matrix(info, image_msg(np.zeros((8, 5), np.uint8), "mono8")) is None  # size mismatch
    assert camera_matrix(None, msg) is None


def test_output_messages_follow_geometry_mode_and_toggles():
    pair = make_planar_pair(0, size=(320, 256))
    vis_msg, th_msg = image_msg(pair.visible, "bgr8", "vis"), image_msg(pair.thermal, "mono16", "th")
    out = OutputBuilder(rosbags_types(TS))
    pipe = Pipeline(PipelineConfig(model="xfeat", geometry="homography", min_quality=0.0))
    result = pipe.process(pair.visible, pair.thermal)
    assert result.ok, result.geometry.message
    cfg = NodeConfig()
    keys = [k for k, _ in output_messages(result, cfg, out, vis_msg, th_msg, pair.visible, pair.thermal,
                                          pipe.config.thermal, 10)]
    assert keys == ["correspondences", "homography", "registered"]  # no pose from a homography
    cfg.publish.debug_image = True
    cfg.publish.homography = False
    msgs = dict(output_messages(result, cfg, out, vis_msg, th_msg, pair.visible, pair.thermal, pipe.config.thermal, 10))
    assert "homography" not in msgs and msgs["debug_image"].encoding == "bgr8"
    assert msgs["correspondences"].header.frame_id == "vis"


def test_image_from_cdr_round_trip_and_malformed_bytes():
    """The node's input path: serialized Image -> message with a zero-copy pixel view."""
    mono16 = (np.arange(48 * 64, dtype=np.uint16).reshape(48, 64) * 7).astype(np.uint16)
    raw = TS.serialize_cdr(image_msg(mono16, "mono16", frame="thermal_cam"), "sensor_msgs/msg/Image")
    msg = image_from_cdr(bytes(raw))
    assert (msg.header.frame_id, msg.encoding, msg.width, msg.height) == ("thermal_cam", "mono16", 64, 48)
    assert check_image(msg) is None
    thermal = decode_image(msg, "thermal")
    np.testing.assert_array_equal(thermal, mono16)
    assert not msg.data.flags.owndata  # a view of the received bytes, not a copy ...
    assert np.shares_memory(thermal, msg.data)  # ... and so is the decoded image
    for bad in (bytes(raw)[:20], b"", b"\x00\x01\x00\x00" + b"\xff" * 8):
        with pytest.raises(ImageFormatError, match="malformed sensor_msgs/Image"):
            image_from_cdr(bad)


@pytest.mark.parametrize("k, d, ok", [
    ([100.0, 0, 32, 0, 100.0, 24, 0, 0, 1], [0.0] * 5, True),
    ([float("nan"), 0, 32, 0, 100.0, 24, 0, 0, 1], [0.0] * 5, False),
    ([100.0, 0, float("inf"), 0, 100.0, 24, 0, 0, 1], [0.0] * 5, False),
    ([0.0] * 9, [0.0] * 5, False),
    ([100.0, 0, 32, 0, 100.0, 24, 0, 0, 1], [0.0, float("nan"), 0, 0, 0], False),
])
def test_camera_info_with_non_finite_or_zero_k_is_invalid(k, d, ok):
    from types import SimpleNamespace

    from matchanything_ros.node.pair_io import camera_info_problem

    info = SimpleNamespace(k=k, d=d, width=64, height=48)
    assert (camera_info_problem(info) is None) == ok
    assert (camera_matrix(info, SimpleNamespace(width=64, height=48)) is not None) == ok


def test_check_image_applies_stamp_rules_and_size_limits():
    from matchanything_ros.imaging.limits import SizeLimits

    msg = image_msg(np.zeros((48, 64), np.uint8), "mono8")
    assert check_image(msg) is None
    assert check_image(msg, SizeLimits(max_pixels=1000))[0] == "too_large"
    assert check_image(msg, SizeLimits(min_side=50))[0] == "too_small"
    # the limit holds in bytes too (issue 18, item 8): 64FC4 pixels are 32 bytes each
    wide = image_msg(np.zeros((48, 64, 4), np.float64), "64FC4")
    assert check_image(wide, SizeLimits(max_pixels=48 * 64)) is not None
    assert "bytes" in check_image(wide, SizeLimits(max_pixels=48 * 64))[1]
    assert check_image(wide, SizeLimits(max_pixels=48 * 64 * 4)) is None
    msg.header.stamp = Time(sec=1, nanosec=4294967295)
    assert check_image(msg)[0] == "stamp_invalid"
    msg.header.stamp = Time(sec=0, nanosec=0)
    assert check_image(msg)[0] == "stamp_zero"


def test_camera_info_history_gives_an_image_the_info_of_its_own_stamp():
    """A CameraInfo published after its image must not hand the next image the previous
    frame's intrinsics: the image gets the info with its own stamp, else the newest."""
    from types import SimpleNamespace as NS

    from matchanything_ros.node.pair_io import CameraInfoHistory

    def msg(sec, nsec, k=None):
        return NS(header=NS(stamp=NS(sec=sec, nanosec=nsec)), k=k)

    h = CameraInfoHistory(size=3)
    assert h.for_image(msg(1, 0)) is None
    a, b, c = msg(1, 0, "a"), msg(2, 0, "b"), msg(3, 5, "c")
    for m in (a, b, c):
        h.add(m)
    assert h.for_image(msg(2, 0)) is b
    assert h.for_image(msg(1, 0)) is a
    assert h.for_image(msg(9, 0)) is c  # no info with that stamp: the newest
    h.add(msg(4, 0, "d"))
    assert h.for_image(msg(1, 0)).k == "d"  # a is gone (size 3)

    # the image's own info still in flight (a separate topic): waited for, up to wait_s
    import threading
    import time

    late = msg(5, 0, "e")
    threading.Timer(0.2, h.add, (late,)).start()
    t = time.monotonic()
    assert h.for_image(msg(5, 0), wait_s=5.0) is late and time.monotonic() - t < 4.0
    assert h.late == 0
    assert h.for_image(msg(6, 0), wait_s=0.1) is late and h.late == 1  # never came: the newest, counted
    fresh = CameraInfoHistory()
    fresh.add(msg(1, 0, "x"))
    t = time.monotonic()
    assert fresh.for_image(msg(2, 0), wait_s=5.0).k == "x" and time.monotonic() - t < 1.0  # infos never
    assert fresh.late == 0  # stamped like images: no wait, nothing counted
