"""Build the matcher node's output messages from a PipelineResult, for rclpy AND rosbags.

One :class:`OutputBuilder` builds every message the node publishes (correspondences cloud,
relative pose, transform, homography, registered thermal image, debug image, diagnostics).
It only touches message classes through a :class:`MessageTypes` namespace, so the same code
makes rclpy messages in the node (:func:`rclpy_types`) and rosbags typestore dataclasses in bag
replay (:func:`rosbags_types`). Every field is passed by keyword (rosbags dataclasses have no
defaults); the array conventions that differ between the two live in the namespace.

Conventions (see docs/NODE.md): header = the visible image's stamp and frame; image 0 is the
visible camera, image 1 the thermal camera; the pose/transform is the thermal camera's pose in
the visible camera frame (``child_frame_id`` = thermal frame); with unknown scale (essential /
fundamental from one pair) the translation has unit length; the homography maps visible pixels
to thermal pixels (``x_t ~ H x_v``), row-major 3x3.
"""
from __future__ import annotations

import array
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .sync import NS_PER_S

# diagnostic_msgs/DiagnosticStatus levels
OK, WARN, ERROR, STALE = 0, 1, 2, 3

#: PointCloud2 fields of the correspondences cloud, all float32, in this order.
CORRESPONDENCE_FIELDS = ("visible_x", "visible_y", "thermal_x", "thermal_y", "score", "inlier")
_FLOAT32 = 7  # sensor_msgs/PointField.FLOAT32

_TYPE_NAMES = (
    "builtin_interfaces/msg/Time",
    "std_msgs/msg/Header",
    "std_msgs/msg/Float64MultiArray",
    "std_msgs/msg/MultiArrayLayout",
    "std_msgs/msg/MultiArrayDimension",
    "sensor_msgs/msg/Image",
    "sensor_msgs/msg/PointCloud2",
    "sensor_msgs/msg/PointField",
    "geometry_msgs/msg/Point",
    "geometry_msgs/msg/Quaternion",
    "geometry_msgs/msg/Pose",
    "geometry_msgs/msg/PoseWithCovariance",
    "geometry_msgs/msg/PoseWithCovarianceStamped",
    "geometry_msgs/msg/Vector3",
    "geometry_msgs/msg/Transform",
    "geometry_msgs/msg/TransformStamped",
    "diagnostic_msgs/msg/DiagnosticArray",
    "diagnostic_msgs/msg/DiagnosticStatus",
    "diagnostic_msgs/msg/KeyValue",
    "tf2_msgs/msg/TFMessage",  # optional: not in the PyPI wheels
)


@dataclass
class MessageTypes:
    """Message classes by full name plus the array conversions the target library wants.

    ``uint8_array(bytes|ndarray)`` -> value for ``uint8[]`` fields; ``float64_seq(values)`` ->
    value for ``float64[]`` / ``float64[36]`` fields; ``byte(int)`` -> value for ``byte`` fields.
    """

    classes: dict[str, Any]
    uint8_array: Callable[[Any], Any]
    float64_seq: Callable[[Any], Any]
    byte: Callable[[int], Any]
    flavor: str = "custom"

    def __getitem__(self, name: str) -> Any:
        cls = self.classes.get(name)
        if cls is None:
            raise KeyError(f"message type {name} is not available ({self.flavor})")
        return cls

    def has(self, name: str) -> bool:
        return self.classes.get(name) is not None


def _rclpy_uint8(data: Any) -> array.array:
    # array.array('B') is what rclpy stores; frombytes is a memcpy on every distro (Humble's
    # setter checks a bytes object element by element, ~30 ms for a 640x512 image).
    out = array.array("B")
    out.frombytes(data.tobytes() if isinstance(data, np.ndarray) else bytes(data))
    return out


def rclpy_types() -> MessageTypes:
    """Namespace of the installed rclpy message packages (tf2_msgs optional)."""
    classes: dict[str, Any] = {}
    for name in _TYPE_NAMES:
        pkg, _, msg = name.split("/")
        try:
            classes[name] = getattr(importlib.import_module(f"{pkg}.msg"), msg)
        except ImportError:
            if pkg != "tf2_msgs":
                raise
            classes[name] = None
    return MessageTypes(
        classes=classes,
        uint8_array=_rclpy_uint8,
        float64_seq=lambda v: array.array("d", np.asarray(v, dtype=np.float64).ravel().tolist()),
        byte=lambda n: bytes([int(n)]),
        flavor="rclpy",
    )


def rosbags_types(typestore: Any = None) -> MessageTypes:
    """Namespace of a rosbags typestore (default: ROS 2 Humble's message definitions)."""
    if typestore is None:
        from ..bags.storage import get_typestore

        typestore = get_typestore("humble")
    return MessageTypes(
        classes={name: typestore.types.get(name) for name in _TYPE_NAMES},
        uint8_array=lambda d: np.frombuffer(d.tobytes() if isinstance(d, np.ndarray) else bytes(d), dtype=np.uint8),
        float64_seq=lambda v: np.asarray(v, dtype=np.float64).ravel().copy(),
        byte=int,
        flavor="rosbags",
    )


@dataclass
class DiagnosticReport:
    """One diagnostic_msgs/DiagnosticStatus, ROS-free."""

    level: int
    name: str
    message: str
    hardware_id: str = ""
    values: dict[str, Any] = field(default_factory=dict)


def rotation_to_quaternion(R: np.ndarray) -> tuple[float, float, float, float]:
    """3x3 rotation matrix -> unit quaternion (x, y, z, w), w >= 0."""
    R = np.asarray(R, dtype=np.float64)
    # Largest-component method: numerically safe for every rotation angle.
    trace = R[0, 0] + R[1, 1] + R[2, 2]
    diag = (trace, R[0, 0], R[1, 1], R[2, 2])
    k = int(np.argmax(diag))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + trace)
        q = (
            (R[2, 1] - R[1, 2]) / s,
            (R[0, 2] - R[2, 0]) / s,
            (R[1, 0] - R[0, 1]) / s,
            0.25 * s,
        )
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + R[0, 0] - R[1, 1] - R[2, 2])
        q = (0.25 * s, (R[0, 1] + R[1, 0]) / s, (R[0, 2] + R[2, 0]) / s, (R[2, 1] - R[1, 2]) / s)
    elif k == 2:
        s = 2.0 * np.sqrt(1.0 + R[1, 1] - R[0, 0] - R[2, 2])
        q = ((R[0, 1] + R[1, 0]) / s, 0.25 * s, (R[1, 2] + R[2, 1]) / s, (R[0, 2] - R[2, 0]) / s)
    else:
        s = 2.0 * np.sqrt(1.0 + R[2, 2] - R[0, 0] - R[1, 1])
        q = ((R[0, 2] + R[2, 0]) / s, (R[1, 2] + R[2, 1]) / s, 0.25 * s, (R[1, 0] - R[0, 1]) / s)
    qa = np.asarray(q)
    qa /= np.linalg.norm(qa)
    if qa[3] < 0:
        qa = -qa
    return tuple(float(v) for v in qa)  # type: ignore[return-value]


class OutputBuilder:
    """Builds each output message; methods return None when the result has nothing to say
    (e.g. no pose in homography mode, no homography when the fit failed)."""

    def __init__(self, types: MessageTypes):
        self.types = types

    # -- basics ---------------------------------------------------------------------------
    def header(self, stamp_ns: int, frame_id: str) -> Any:
        T = self.types
        sec, nanosec = divmod(int(stamp_ns), NS_PER_S)
        stamp = T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)
        return T["std_msgs/msg/Header"](stamp=stamp, frame_id=str(frame_id))

    def image(self, array_: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Any:
        """A sensor_msgs/Image from a numpy array (see imaging.encodings for encodings)."""
        from ..imaging.encodings import numpy_to_image

        buf = numpy_to_image(array_, encoding)
        return self.types["sensor_msgs/msg/Image"](
            header=self.header(stamp_ns, frame_id),
            height=int(buf.height),
            width=int(buf.width),
            encoding=buf.encoding,
            is_bigendian=int(buf.is_bigendian),
            step=int(buf.step),
            data=self.types.uint8_array(buf.data),
        )

    # -- outputs --------------------------------------------------------------------------
    def correspondences(self, result: Any, stamp_ns: int, frame_id: str, inliers_only: bool = False) -> Any:
        """sensor_msgs/PointCloud2, one point per match with the float32 fields
        :data:`CORRESPONDENCE_FIELDS` (``inlier`` is 1.0 or 0.0; all 0.0 unless the geometry
        status is OK)."""
        T = self.types
        m = result.matches
        inliers = np.asarray(result.geometry.inliers, dtype=bool).reshape(-1)
        if len(inliers) != len(m) or not result.ok:
            # a rejected fit's inliers (too few, LOW_INLIER_RATIO, degenerate) support no model a
            # consumer could use: flag none, so the cloud alone never suggests a trusted fit
            inliers = np.zeros(len(m), dtype=bool)
        table = np.empty((len(m), len(CORRESPONDENCE_FIELDS)), dtype="<f4")
        table[:, 0:2] = m.kpts0
        table[:, 2:4] = m.kpts1
        table[:, 4] = m.scores
        table[:, 5] = inliers
        if inliers_only:
            table = table[inliers]
        n = len(table)
        point_step = 4 * len(CORRESPONDENCE_FIELDS)
        fields = [
            T["sensor_msgs/msg/PointField"](name=name, offset=4 * i, datatype=_FLOAT32, count=1)
            for i, name in enumerate(CORRESPONDENCE_FIELDS)
        ]
        return T["sensor_msgs/msg/PointCloud2"](
            header=self.header(stamp_ns, frame_id),
            height=1,
            width=n,
            fields=fields,
            is_bigendian=False,
            point_step=point_step,
            row_step=point_step * n,
            data=T.uint8_array(np.ascontiguousarray(table)),
            is_dense=True,
        )

    def _relative_pose(self, result: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(R_01, t_01, covariance 6x6): the thermal camera's pose in the visible frame."""
        g = result.geometry
        if not result.ok or g.R is None or g.t is None:
            return None
        from ..geometry import camera1_pose_in_camera0

        R01, t01 = camera1_pose_in_camera0(np.asarray(g.R), np.asarray(g.t).reshape(3))
        cov = np.asarray(g.covariance, dtype=np.float64) if g.covariance is not None else None
        if cov is None or cov.shape != (6, 6):
            # Unknown uncertainty: large variances, so no consumer treats the pose as exact.
            cov = np.diag([1e3] * 6)
        return np.asarray(R01, dtype=np.float64), np.asarray(t01, dtype=np.float64).reshape(3), cov

    def pose(self, result: Any, stamp_ns: int, frame_id: str) -> Any:
        """geometry_msgs/PoseWithCovarianceStamped of the thermal camera in ``frame_id`` (the
        visible camera frame); None without a successful essential/fundamental pose."""
        rel = self._relative_pose(result)
        if rel is None:
            return None
        R01, t01, cov = rel
        T = self.types
        qx, qy, qz, qw = rotation_to_quaternion(R01)
        pose = T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=float(t01[0]), y=float(t01[1]), z=float(t01[2])),
            orientation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
        )
        return T["geometry_msgs/msg/PoseWithCovarianceStamped"](
            header=self.header(stamp_ns, frame_id),
            pose=T["geometry_msgs/msg/PoseWithCovariance"](
                pose=pose, covariance=T.float64_seq(cov.reshape(36))
            ),
        )

    def transform(self, result: Any, stamp_ns: int, frame_id: str, child_frame_id: str) -> Any:
        """geometry_msgs/TransformStamped frame_id -> child_frame_id (visible -> thermal camera);
        None without a pose."""
        rel = self._relative_pose(result)
        if rel is None:
            return None
        R01, t01, _ = rel
        T = self.types
        qx, qy, qz, qw = rotation_to_quaternion(R01)
        return T["geometry_msgs/msg/TransformStamped"](
            header=self.header(stamp_ns, frame_id),
            child_frame_id=str(child_frame_id),
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=float(t01[0]), y=float(t01[1]), z=float(t01[2])),
                rotation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw),
            ),
        )

    def tf_message(self, transforms: list[Any]) -> Any:
        """tf2_msgs/TFMessage (for /tf without tf2_ros); None when tf2_msgs is missing."""
        if not self.types.has("tf2_msgs/msg/TFMessage"):
            return None
        return self.types["tf2_msgs/msg/TFMessage"](transforms=list(transforms))

    def homography(self, result: Any) -> Any:
        """std_msgs/Float64MultiArray, 3x3 row-major, visible px -> thermal px; None unless a
        homography/affine fit succeeded. (The message has no header: it is published in the
        same cycle as the correspondences cloud, which carries the stamp.)"""
        g = result.geometry
        if not result.ok or g.mode not in ("homography", "affine") or g.matrix is None:
            return None
        T = self.types
        dims = [
            T["std_msgs/msg/MultiArrayDimension"](label="rows", size=3, stride=9),
            T["std_msgs/msg/MultiArrayDimension"](label="cols", size=3, stride=3),
        ]
        return T["std_msgs/msg/Float64MultiArray"](
            layout=T["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0),
            data=T.float64_seq(np.asarray(g.matrix, dtype=np.float64).reshape(9)),
        )

    def registered(
        self,
        result: Any,
        thermal: np.ndarray,
        encoding: str,
        visible_shape: tuple[int, int],
        stamp_ns: int,
        frame_id: str,
    ) -> Any:
        """The thermal image (array with its ROS ``encoding``) warped into the visible image
        (same size, visible stamp and frame); None unless a homography/affine fit succeeded."""
        g = result.geometry
        if not result.ok or g.mode not in ("homography", "affine") or g.matrix is None:
            return None
        from ..geometry import warp_thermal_to_visible

        warped = warp_thermal_to_visible(thermal, g.matrix, visible_shape)
        return self.image(warped, encoding, stamp_ns, frame_id)

    def debug_image(self, result: Any, visible: np.ndarray, thermal: np.ndarray, stamp_ns: int, frame_id: str,
                    outliers: bool = False) -> Any:
        """bgr8 image with the matches drawn (inliers; outliers too if asked), via viz.draw_matches."""
        from ..viz import draw_matches

        inliers = np.asarray(result.geometry.inliers, dtype=bool).reshape(-1)
        canvas = draw_matches(visible, thermal, result.matches, inliers if len(inliers) == len(result.matches) else None,
                              outliers=outliers)
        return self.image(canvas, "bgr8", stamp_ns, frame_id)

    def diagnostics(self, stamp_ns: int, reports: list[DiagnosticReport]) -> Any:
        """diagnostic_msgs/DiagnosticArray; values are stringified (floats with 4 significant
        digits)."""
        T = self.types

        def text(v: Any) -> str:
            return f"{v:.4g}" if isinstance(v, float) else str(v)

        statuses = [
            T["diagnostic_msgs/msg/DiagnosticStatus"](
                level=T.byte(r.level),
                name=r.name,
                message=r.message,
                hardware_id=r.hardware_id,
                values=[T["diagnostic_msgs/msg/KeyValue"](key=str(k), value=text(v)) for k, v in r.values.items()],
            )
            for r in reports
        ]
        return T["diagnostic_msgs/msg/DiagnosticArray"](header=self.header(stamp_ns, ""), status=statuses)
