"""sensor_msgs/Image buffer <-> numpy conversion (no cv_bridge)."""
import array

import cv2
import numpy as np
import pytest

from matchanything_ros.imaging import (
    ImageFormatError,
    decode_compressed,
    encoding_info,
    image_to_numpy,
    numpy_to_image,
    supported_encodings,
    to_bgr8,
    to_mono,
)

REQUIRED = ["rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16", "8UC1", "8UC3", "16UC1", "32FC1",
            "16SC1", "32FC3", "rgb16", "8SC1", "32SC1", "64FC1", "16UC4"]


def _random_image(encoding, h=5, w=7, seed=0):
    dtype, channels = encoding_info(encoding)
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    if np.issubdtype(dtype, np.floating):
        return rng.normal(0, 1000, shape).astype(dtype)
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max, shape, endpoint=True).astype(dtype)


def test_required_encodings_are_supported():
    assert set(REQUIRED) <= set(supported_encodings())
    assert encoding_info("16UC1") == (np.dtype(np.uint16), 1)  # the cv-bridge (ROS 1) bug
    assert encoding_info("mono16") == (np.dtype(np.uint16), 1)
    assert encoding_info("32FC1") == (np.dtype(np.float32), 1)


@pytest.mark.parametrize("encoding", supported_encodings())
@pytest.mark.parametrize("bigendian", [False, True])
@pytest.mark.parametrize("padding", [0, 5])
def test_round_trip_with_padding_and_endianness(encoding, bigendian, padding):
    img = _random_image(encoding)
    dtype, channels = encoding_info(encoding)
    row = img.shape[1] * channels * dtype.itemsize
    buf = numpy_to_image(img, encoding, is_bigendian=bigendian, step=row + padding)
    assert (buf.width, buf.height, buf.step, buf.is_bigendian) == (7, 5, row + padding, bigendian)
    assert len(buf.data) == buf.step * buf.height
    out = image_to_numpy(buf.encoding, buf.width, buf.height, buf.step, buf.is_bigendian, buf.data)
    assert out.dtype == img.dtype and out.dtype.isnative
    assert out.shape == img.shape
    np.testing.assert_array_equal(out, img)
    assert out.flags.writeable and out.flags.c_contiguous


def test_big_endian_bytes_are_really_big_endian():
    img = np.array([[0x0102, 0x0304]], dtype=np.uint16)
    assert numpy_to_image(img, "mono16", is_bigendian=True).data == b"\x01\x02\x03\x04"
    assert numpy_to_image(img, "mono16", is_bigendian=False).data == b"\x02\x01\x04\x03"
    # a foreign big-endian buffer decodes to native values
    out = image_to_numpy("16UC1", 2, 1, 4, True, b"\x01\x02\x03\x04")
    assert out.tolist() == [[0x0102, 0x0304]]


def test_padding_bytes_are_ignored():
    # 2x2 mono8 with step 4: padding bytes 99 must not leak into the image
    data = bytes([1, 2, 99, 99, 3, 4, 99, 99])
    assert image_to_numpy("mono8", 2, 2, 4, False, data).tolist() == [[1, 2], [3, 4]]


@pytest.mark.parametrize(
    "data_type",
    [bytes, bytearray, lambda b: memoryview(b), lambda b: array.array("B", b), list,
     lambda b: np.frombuffer(b, np.uint8)],
)
def test_accepts_rclpy_and_rosbags_data_types(data_type):
    img = _random_image("bgr8")
    buf = numpy_to_image(img, "bgr8")
    out = image_to_numpy("bgr8", buf.width, buf.height, buf.step, False, data_type(buf.data))
    np.testing.assert_array_equal(out, img)


@pytest.mark.parametrize(
    "args, message",
    [
        (("yuv422", 2, 2, 4, False, bytes(8)), "unsupported image encoding 'yuv422'"),
        (("bayer_rggb8", 2, 2, 2, False, bytes(4)), "unsupported image encoding"),
        (("mono8", 2, 2, 2, False, b""), "has no data"),
        (("mono8", 0, 2, 0, False, bytes(4)), "empty size"),
        (("mono16", 4, 2, 4, False, bytes(8)), "step 4 is smaller than"),
        (("mono8", 2, 2, 2, False, bytes(5)), "data has 5 bytes but step\\*height"),
        (("rgb8", 2, 2, 6, False, bytes(11)), "data has 11 bytes"),
    ],
)
def test_bad_buffers_raise_clear_errors(args, message):
    with pytest.raises(ImageFormatError, match=message):
        image_to_numpy(*args)


def test_image_format_error_is_a_value_error():
    assert issubclass(ImageFormatError, ValueError)


@pytest.mark.parametrize(
    "array, encoding, message",
    [
        (np.zeros((2, 2), np.uint8), "mono16", "needs dtype uint16"),
        (np.zeros((2, 2, 3), np.uint8), "mono8", "needs an array of shape"),
        (np.zeros((2, 2), np.uint8), "rgb8", "needs an array of shape"),
        (np.zeros((0, 2), np.uint8), "mono8", "empty image"),
        (np.zeros((2, 2), np.uint8), "nonsense", "unsupported image encoding"),
    ],
)
def test_numpy_to_image_rejects_mismatches(array, encoding, message):
    with pytest.raises(ImageFormatError, match=message):
        numpy_to_image(array, encoding)


def test_numpy_to_image_rejects_short_step():
    with pytest.raises(ImageFormatError, match="smaller than the packed row size"):
        numpy_to_image(np.zeros((2, 3), np.uint8), "mono8", step=2)


def test_to_bgr8_channel_orders():
    bgr = np.zeros((2, 3, 3), np.uint8)
    bgr[..., 0], bgr[..., 1], bgr[..., 2] = 10, 20, 30
    rgb = bgr[..., ::-1].copy()
    alpha = np.full((2, 3, 1), 255, np.uint8)
    np.testing.assert_array_equal(to_bgr8(bgr, "bgr8"), bgr)
    np.testing.assert_array_equal(to_bgr8(bgr, "8UC3"), bgr)
    np.testing.assert_array_equal(to_bgr8(rgb, "rgb8"), bgr)
    np.testing.assert_array_equal(to_bgr8(np.concatenate([rgb, alpha], 2), "rgba8"), bgr)
    np.testing.assert_array_equal(to_bgr8(np.concatenate([bgr, alpha], 2), "bgra8"), bgr)
    gray = np.arange(6, dtype=np.uint8).reshape(2, 3)
    for enc in ("mono8", "8UC1"):
        out = to_bgr8(gray, enc)
        assert out.shape == (2, 3, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out[..., 1], gray)
    assert to_bgr8(bgr, "bgr8") is not bgr  # a copy, safe to draw on


def test_to_bgr8_refuses_high_bit_depth_with_a_hint():
    with pytest.raises(ImageFormatError, match="normalize_thermal"):
        to_bgr8(np.zeros((2, 2), np.uint16), "mono16")
    with pytest.raises(ImageFormatError, match="normalize_thermal"):
        to_bgr8(np.zeros((2, 2), np.float32), "32FC1")
    with pytest.raises(ImageFormatError, match="does not match encoding"):
        to_bgr8(np.zeros((2, 2), np.uint8), "rgb8")


def test_to_mono_keeps_depth_and_uses_luma():
    m16 = np.full((2, 3), 40000, np.uint16)
    assert to_mono(m16, "mono16").dtype == np.uint16
    assert to_mono(m16, "16UC1") is m16
    f = np.full((2, 3), 300.5, np.float32)
    assert to_mono(f, "32FC1").dtype == np.float32
    red_rgb = np.zeros((2, 3, 3), np.uint8)
    red_rgb[..., 0] = 200
    red_bgr = red_rgb[..., ::-1].copy()
    expected = round(0.299 * 200)
    assert to_mono(red_rgb, "rgb8")[0, 0] == pytest.approx(expected, abs=1)
    assert to_mono(red_bgr, "bgr8")[0, 0] == pytest.approx(expected, abs=1)
    assert to_mono(np.concatenate([red_rgb, red_rgb[..., :1]], 2), "rgba8")[0, 0] == pytest.approx(expected, abs=1)
    rgb16 = (red_rgb.astype(np.uint16) * 256)
    assert to_mono(rgb16, "rgb16").dtype == np.uint16
    assert to_mono(rgb16, "rgb16")[0, 0] == pytest.approx(expected * 256, abs=256)
    with pytest.raises(ImageFormatError, match="two-channel"):
        to_mono(np.zeros((2, 2, 2), np.uint8), "8UC2")


def test_decode_compressed_png16_and_errors():
    img = np.arange(12, dtype=np.uint16).reshape(3, 4) * 5000
    ok, png = cv2.imencode(".png", img)
    assert ok
    np.testing.assert_array_equal(decode_compressed(png.tobytes()), img)
    with pytest.raises(ImageFormatError, match="could not decode"):
        decode_compressed(b"not an image")
    with pytest.raises(ImageFormatError, match="no data"):
        decode_compressed(b"")


@pytest.mark.ros
def test_real_rclpy_image_message_round_trip():
    msg_mod = pytest.importorskip("sensor_msgs.msg")
    img = _random_image("16UC1")
    buf = numpy_to_image(img, "16UC1", is_bigendian=True, step=20)
    msg = msg_mod.Image(encoding=buf.encoding, width=buf.width, height=buf.height, step=buf.step,
                        is_bigendian=int(buf.is_bigendian), data=buf.data)
    from matchanything_ros.imaging import msg_to_numpy

    np.testing.assert_array_equal(msg_to_numpy(msg), img)


def test_rosbags_image_message_round_trip():
    typestore_mod = pytest.importorskip("rosbags.typesys")
    store = typestore_mod.get_typestore(typestore_mod.Stores.ROS2_HUMBLE)
    Image = store.types["sensor_msgs/msg/Image"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    img = _random_image("32FC1")
    buf = numpy_to_image(img, "32FC1", step=32)
    msg = Image(header=Header(stamp=Time(sec=1, nanosec=2), frame_id="thermal"), height=buf.height,
                width=buf.width, encoding=buf.encoding, is_bigendian=0, step=buf.step,
                data=np.frombuffer(buf.data, np.uint8))
    raw = store.serialize_cdr(msg, "sensor_msgs/msg/Image")
    back = store.deserialize_cdr(raw, "sensor_msgs/msg/Image")
    from matchanything_ros.imaging import msg_to_numpy

    np.testing.assert_array_equal(msg_to_numpy(back), img)
