"""ROS-free per-pair input and output handling, shared by ``matcher_node`` and bag replay.

Both entry points receive sensor_msgs-shaped messages (rclpy messages in the node, rosbags
dataclasses in replay) and must treat them identically: the same sanity check, the same decode,
the same CameraInfo rule and the same choice of output messages. This module is that one copy;
the node publishes what :func:`output_messages` returns, replay writes it to a bag.
"""
from __future__ import annotations

import collections
import threading
import time
from typing import Any, Iterator

import numpy as np

from ..imaging.encodings import ImageFormatError, encoding_info, msg_to_numpy, to_bgr8, to_mono
from ..imaging.limits import SizeLimits, size_problem
from ..imaging.thermal import ThermalConfig, normalize_thermal
from .sync import stamp_problem

VISIBLE, THERMAL = 0, 1
STREAMS = ("visible", "thermal")
#: frame ids used when neither the parameters nor the image headers name one
DEFAULT_FRAMES = ("visible_optical_frame", "thermal_optical_frame")


def check_image(msg: Any, limits: SizeLimits | None = None) -> tuple[str, str] | None:
    """Cheap O(1) sanity check of a sensor_msgs/Image: ``(reason key, message)`` or None.

    Reason keys (counted in diagnostics): ``stamp_invalid``, ``stamp_zero`` (see
    :func:`~matchanything_ros.node.sync.stamp_problem`), ``unknown_encoding``, ``empty``,
    ``size_mismatch``, ``too_large``, ``too_small`` (``limits``, default
    :class:`~matchanything_ros.imaging.limits.SizeLimits`; checked before any decoding)."""
    if (problem := stamp_problem(msg.header.stamp)) is not None:
        return problem
    try:
        dtype, channels = encoding_info(msg.encoding)
    except ImageFormatError as exc:
        return "unknown_encoding", str(exc)
    if msg.width <= 0 or msg.height <= 0 or len(msg.data) == 0:
        return "empty", f"empty image {msg.width}x{msg.height} with {len(msg.data)} bytes"
    row = msg.width * channels * np.dtype(dtype).itemsize
    if msg.step < row or len(msg.data) != msg.step * msg.height:
        return "size_mismatch", (
            f"{msg.encoding} {msg.width}x{msg.height}: step {msg.step} (row needs {row}), "
            f"data {len(msg.data)} bytes (step*height = {msg.step * msg.height})"
        )
    return size_problem(msg.width, msg.height, limits or SizeLimits(), len(msg.data))


def check_compressed(msg: Any, limits: SizeLimits | None = None) -> tuple[str, str] | None:
    """:func:`check_image` for a sensor_msgs/CompressedImage, on its header only: the stamp, a
    JPEG or PNG payload (``unknown_encoding`` otherwise: compressedDepth, theora, garbage) and its
    size read from the JPEG/PNG header (``too_large`` / ``too_small``) before any decoding."""
    from ..imaging.limits import compressed_image_size

    if (problem := stamp_problem(msg.header.stamp)) is not None:
        return problem
    data = bytes(memoryview(np.asarray(msg.data, dtype=np.uint8).reshape(-1)))
    if not data:
        return "empty", "compressed image with no data"
    size = compressed_image_size(data)
    if size is None:
        return "unknown_encoding", (f"compressed image format {msg.format!r} ({len(data)} bytes) is not a JPEG or "
                                    "PNG this node decodes (image_transport 'compressed'; not compressedDepth or theora)")
    return size_problem(*size, limits or SizeLimits())


def image_from_compressed(msg: Any) -> Any:
    """A checked sensor_msgs/CompressedImage (:func:`check_compressed`) -> the equivalent
    sensor_msgs/Image (rosbags message, same header): colour as bgr8, grey as mono8 / mono16
    (a 16-bit PNG thermal frame keeps its depth). Everything after reception then takes one
    path. Raises ImageFormatError when the payload does not decode."""
    import cv2

    from ..bags.storage import get_typestore
    from ..imaging.encodings import decode_compressed, numpy_to_image

    array = decode_compressed(msg.data)
    if array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_BGRA2BGR)
    if array.dtype not in (np.uint8, np.uint16) or (array.ndim == 3 and array.dtype != np.uint8):
        raise ImageFormatError(f"compressed image decodes to {array.dtype} with shape {array.shape}: "
                               "expected 8-bit colour or 8/16-bit grey")
    encoding = "bgr8" if array.ndim == 3 else ("mono16" if array.dtype == np.uint16 else "mono8")
    buf = numpy_to_image(array, encoding)
    Image = get_typestore("humble").types["sensor_msgs/msg/Image"]
    return Image(header=msg.header, height=buf.height, width=buf.width, encoding=encoding,
                 is_bigendian=int(buf.is_bigendian), step=buf.step, data=np.frombuffer(buf.data, dtype=np.uint8))


def compressed_from_cdr(raw: bytes) -> Any:
    """A serialized sensor_msgs/CompressedImage -> the rosbags message; ImageFormatError for
    bytes that are not one."""
    from ..bags.storage import get_typestore

    try:
        return get_typestore("humble").deserialize_cdr(raw, "sensor_msgs/msg/CompressedImage")
    except Exception as exc:
        raise ImageFormatError(f"malformed sensor_msgs/CompressedImage ({len(raw)} bytes): {exc}") from None


COMPRESSED_TYPE = "sensor_msgs/msg/CompressedImage"


def image_topic(topic: str, transport: str) -> str:
    """The topic a stream's images arrive on: image_transport puts the compressed ones on
    ``<topic>/compressed``."""
    return topic.rstrip("/") + "/compressed" if transport == "compressed" else topic


def receive_image(msg: Any, compressed: bool, limits: SizeLimits | None = None) -> tuple[Any, tuple[str, str] | None]:
    """The one check (and, for a CompressedImage, decode) every received image gets in the node
    and in replay: ``(sensor_msgs/Image, None)`` or ``(None, (reason key, message))``. A
    compressed image is checked on its JPEG/PNG header before it is decoded."""
    if not compressed:
        problem = check_image(msg, limits)
        if problem is not None:
            return None, (problem[0], f"{msg.width}x{msg.height}: {problem[1]}")
        return msg, None
    problem = check_compressed(msg, limits)
    if problem is not None:
        return None, (problem[0], f"compressed: {problem[1]}")
    try:
        return image_from_compressed(msg), None
    except ImageFormatError as exc:
        return None, ("malformed", f"compressed: {exc}")


def image_from_cdr(raw: bytes) -> Any:
    """A serialized sensor_msgs/Image (CDR, as a raw rclpy subscription or a bag delivers it) ->
    the rosbags message, its pixel data a zero-copy numpy view of ``raw``.

    The node subscribes to images raw and decodes them here, the same message type replay reads
    from bags: rclpy's own conversion of a 1 MB image into a Python message costs 0.34 ms, this
    0.05 ms (``scripts/bench_image_path.py``). Raises ImageFormatError for bytes that are not an
    Image.
    """
    from ..bags.storage import get_typestore

    try:  # sensor_msgs/Image is the same Humble to Kilted
        return get_typestore("humble").deserialize_cdr(raw, "sensor_msgs/msg/Image")
    except Exception as exc:  # rosbags raises struct/index/value errors on short or bad input
        raise ImageFormatError(f"malformed sensor_msgs/Image ({len(raw)} bytes): {exc}") from None


def camera_info_from_cdr(raw: bytes) -> Any:
    """A serialized sensor_msgs/CameraInfo -> the rosbags message; ImageFormatError for bytes
    that are not one (the node subscribes raw so that these are counted, not lost in rclpy)."""
    from ..bags.storage import get_typestore

    try:
        return get_typestore("humble").deserialize_cdr(raw, "sensor_msgs/msg/CameraInfo")
    except Exception as exc:
        raise ImageFormatError(f"malformed sensor_msgs/CameraInfo ({len(raw)} bytes): {exc}") from None


def camera_info_problem(info: Any) -> tuple[str, str] | None:
    """``("camera_info_invalid", message)`` for a CameraInfo no camera can have, else None:
    K not 9 finite numbers, fx or fy <= 0, a non-finite distortion coefficient."""
    k = np.asarray(info.k, dtype=np.float64).reshape(-1)
    d = np.asarray(info.d, dtype=np.float64).reshape(-1)
    if k.size != 9 or not np.all(np.isfinite(k)):
        return "camera_info_invalid", f"K is not 9 finite numbers: {k.tolist()}"
    if k[0] <= 0 or k[4] <= 0:
        return "camera_info_invalid", f"K has fx={k[0]:g}, fy={k[4]:g} (must be > 0)"
    if not np.all(np.isfinite(d)):
        return "camera_info_invalid", f"distortion D has non-finite values: {d.tolist()}"
    return None


def decode_image(msg: Any, stream: str) -> np.ndarray:
    """Image message -> the array the pipeline takes: 8-bit colour visible as BGR, every other
    colour image as mono keeping its depth. Raises ImageFormatError for what cannot convert.

    Where the message already holds that layout (bgr8, mono, native byte order, no row padding)
    the result is a read-only view of the message data, not a copy: the pipeline never writes
    to its inputs."""
    array = msg_to_numpy(msg, copy=False)
    if array.ndim == 3:
        if stream == "visible" and array.dtype == np.uint8:
            return to_bgr8(array, msg.encoding, copy=False)
        return to_mono(array, msg.encoding)
    return array


class CameraInfoHistory:
    """The recent CameraInfo messages of one camera. An image gets the one with its own stamp,
    as image_transport's CameraSubscriber pairs them; the newest one when none has it (a driver
    whose info stamps differ from its image stamps: its calibration does not change per frame).
    Taking the newest one blindly gave a frame its predecessor's intrinsics whenever the info
    was published after its image. Thread-safe (the node adds and reads on executor threads)."""

    def __init__(self, size: int = 16):
        self._msgs: collections.deque = collections.deque(maxlen=size)
        self._cond = threading.Condition()
        self._exact_seen = False  # this camera's infos carry its images' stamps
        self.late = 0  # images processed with the newest info because theirs had not come in time

    def add(self, msg: Any) -> None:
        with self._cond:
            self._msgs.append(msg)
            self._cond.notify_all()

    def for_image(self, image_msg: Any, wait_s: float = 0.0) -> Any | None:
        """The info with the image's stamp, else the newest. ``wait_s``: once this camera has
        shown infos stamped like its images, wait up to that long for the image's own: it is a
        separate topic, which DDS does not order with the images, so on a loaded machine it can
        arrive after the image that completes the pair."""
        stamp = _stamp(image_msg)
        deadline = time.monotonic() + wait_s
        with self._cond:
            while True:
                exact = next((m for m in reversed(self._msgs) if _stamp(m) == stamp), None)
                if exact is not None:
                    self._exact_seen = True
                    return exact
                left = deadline - time.monotonic()
                if not (self._exact_seen and left > 0):
                    break
                self._cond.wait(left)
            if self._exact_seen and wait_s > 0 and self._msgs:
                self.late += 1
            return self._msgs[-1] if self._msgs else None


def _stamp(msg: Any) -> tuple[int, int]:
    st = msg.header.stamp
    return int(st.sec), int(st.nanosec)


def decode_any(msg: Any, stream: str) -> np.ndarray:
    """:func:`decode_image` for a sensor_msgs/Image or a CompressedImage (e.g. read from a bag
    for a report's pictures)."""
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        msg = image_from_compressed(msg)
    return decode_image(msg, stream)


def camera_matrix(info: Any, image_msg: Any) -> np.ndarray | None:
    """3x3 K from a CameraInfo matching the image size; None if absent, zero or mismatched."""
    if info is None or camera_info_problem(info) is not None:
        return None
    K = np.asarray(info.k, dtype=np.float64).reshape(3, 3)
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        return None
    if info.width and info.height and (info.width, info.height) != (image_msg.width, image_msg.height):
        return None
    return K


def output_frames(cfg: Any, vis_msg: Any, th_msg: Any) -> tuple[str, str]:
    """(frame of the outputs, child frame of pose/transform): parameters, else image headers."""
    frame = cfg.frames.visible or vis_msg.header.frame_id or DEFAULT_FRAMES[VISIBLE]
    child = cfg.frames.thermal or th_msg.header.frame_id or DEFAULT_FRAMES[THERMAL]
    return frame, child


def output_messages(
    result: Any,
    cfg: Any,
    out: Any,
    vis_msg: Any,
    th_msg: Any,
    visible: np.ndarray,
    thermal: np.ndarray,
    thermal_config: ThermalConfig,
    stamp_ns: int,
) -> Iterator[tuple[str, Any]]:
    """The node's outputs for one processed pair, as ``(key, message)`` in publish order.

    ``cfg`` is the NodeConfig, ``out`` an :class:`~matchanything_ros.node.outputs.OutputBuilder`.
    Keys: correspondences, pose, transform, tf (a TransformStamped for /tf), homography,
    registered, debug_image. Outputs that do not exist for this result (no pose in homography
    mode, a failed fit) are not yielded."""
    frame, child = output_frames(cfg, vis_msg, th_msg)
    p = cfg.publish
    if p.correspondences and (result.ok or cfg.output.publish_on_failure):
        yield "correspondences", out.correspondences(result, stamp_ns, frame, cfg.output.inliers_only)
    if p.pose and (msg := out.pose(result, stamp_ns, frame)) is not None:
        yield "pose", msg
    if (p.transform or p.tf) and (tmsg := out.transform(result, stamp_ns, frame, child)) is not None:
        if p.transform:
            yield "transform", tmsg
        if p.tf:
            yield "tf", tmsg
    if p.homography and (msg := out.homography(result)) is not None:
        yield "homography", msg
    # registered image: raw thermal (one-channel encodings) or the normalized mono8 view
    raw = p.registered and not cfg.output.registered_normalized and encoding_info(th_msg.encoding)[1] == 1
    thermal8 = None
    if (p.registered and not raw) or p.debug_image:
        thermal8 = normalize_thermal(thermal, thermal_config)
    if p.registered:
        image, encoding = (thermal, th_msg.encoding) if raw else (thermal8, "mono8")
        if (msg := out.registered(result, image, encoding, visible.shape[:2], stamp_ns, frame)) is not None:
            yield "registered", msg
    if p.debug_image:
        yield "debug_image", out.debug_image(result, visible, thermal8, stamp_ns, frame, cfg.output.debug_outliers)
