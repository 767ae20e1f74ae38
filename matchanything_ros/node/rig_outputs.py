"""Rig-mode outputs, ROS-free: the rig estimate as messages, diagnostics and a calibration file.

Shared by ``matcher_node`` and bag replay (like :func:`~matchanything_ros.node.pair_io.output_messages`).
Outputs (see docs/NODE.md, "Rig mode"):

* ``rig/pose`` (geometry_msgs/PoseWithCovarianceStamped, latched): the thermal camera's pose in
  the visible optical frame from the pooled estimate, unit translation (two views do not see
  the baseline length; its direction carries a huge variance), essential mode;
* ``rig/homography`` (std_msgs/Float64MultiArray, latched): the rig's H, visible px -> thermal px;
* ``/tf_static`` (opt-in ``publish.rig_tf_static``): the same pose as a static transform
  visible -> thermal optical frame, sent when first converged, every :data:`RESEND_UPDATES`
  frames and after a detected change;
* a calibration YAML (``output.rig_calibration_file``), written atomically on the same schedule.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import yaml

from .outputs import DiagnosticReport, rotation_to_quaternion

#: the latched outputs carry every new estimate; /tf_static and the file only every this many
#: frames (and when the rig changed), so a static transform is not re-sent at the camera rate
RESEND_UPDATES = 30
CALIBRATION_FORMAT = "matchanything_ros/rig_calibration"


def rig_pose(estimate: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(R_01, t_01, 6x6 covariance): the thermal camera in the visible frame; None unless an
    essential-mode estimate with a covariance."""
    m = estimate.model
    if estimate.mode != "essential" or m.R is None or estimate.covariance is None:
        return None
    R01 = m.R.T
    return R01, -R01 @ m.t, estimate.covariance


class RigOutputs:
    """Builds the rig messages for one processed frame and keeps the re-send schedule."""

    def __init__(self, out: Any):
        self.out = out
        self._reset()

    def _reset(self) -> None:
        """Forget what was sent: the next converged estimate goes out as a first one."""
        self._last_version = -1
        self._last_sent_update: int | None = None
        self._last_changes = 0
        self._file_pending = False

    def file_written(self, ok: bool) -> None:
        """The caller's report on the last ``rig_calibration``: a write that failed (a frame id
        that is not one, a full disk) is tried again on the next frame, not RESEND_UPDATES later."""
        self._file_pending = not ok

    def messages(self, estimate: Any, cfg: Any, stamp_ns: int, frame: str, child: str) -> Iterator[tuple[str, Any]]:
        """``(key, message)`` for keys rig_pose, rig_homography, rig_tf_static, and
        rig_calibration (the estimate, for the caller to write); nothing until the estimate has
        converged, nothing new when it was not refitted since the last call (except a
        calibration write still owed)."""
        if estimate is not None and self._restarted(estimate):
            self._reset()  # a new estimator (rig parameters changed): send as for a first one
        if estimate is None or not estimate.converged:
            return
        file_owed = self._file_pending and bool(cfg.output.rig_calibration_file)
        if estimate.version == self._last_version:
            if file_owed:
                yield "rig_calibration", estimate
            return
        self._last_version = estimate.version
        T = self.out.types
        pose = rig_pose(estimate)
        if cfg.publish.rig and pose is not None:
            R01, t01, cov = pose
            yield "rig_pose", self._pose_msg(R01, t01, cov, stamp_ns, frame)
        if cfg.publish.rig and estimate.mode == "homography":
            dims = [T["std_msgs/msg/MultiArrayDimension"](label="rows", size=3, stride=9),
                    T["std_msgs/msg/MultiArrayDimension"](label="cols", size=3, stride=3)]
            yield "rig_homography", T["std_msgs/msg/Float64MultiArray"](
                layout=T["std_msgs/msg/MultiArrayLayout"](dim=dims, data_offset=0),
                data=T.float64_seq(np.asarray(estimate.model.H, np.float64).reshape(9)))
        if self.due(estimate):
            self._last_sent_update = estimate.updates
            self._last_changes = estimate.changes
            if cfg.publish.rig_tf_static and pose is not None:
                R01, t01, _ = pose
                yield "rig_tf_static", self._transform_msg(R01, t01, stamp_ns, frame, child)
            if cfg.output.rig_calibration_file:
                yield "rig_calibration", estimate
        elif file_owed:
            yield "rig_calibration", estimate

    def _restarted(self, estimate: Any) -> bool:
        """The estimate comes from a new estimator: its counters went back (versions, updates
        and changes only grow within one)."""
        return (estimate.version < self._last_version or estimate.changes < self._last_changes
                or (self._last_sent_update is not None and estimate.updates < self._last_sent_update))

    def due(self, estimate: Any) -> bool:
        """First converged estimate, a change since the last send, or RESEND_UPDATES frames on."""
        return (self._last_sent_update is None or estimate.changes != self._last_changes
                or estimate.updates - self._last_sent_update >= RESEND_UPDATES)

    def _pose_msg(self, R01, t01, cov, stamp_ns, frame) -> Any:
        T = self.out.types
        qx, qy, qz, qw = rotation_to_quaternion(R01)
        pose = T["geometry_msgs/msg/Pose"](
            position=T["geometry_msgs/msg/Point"](x=float(t01[0]), y=float(t01[1]), z=float(t01[2])),
            orientation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
        return T["geometry_msgs/msg/PoseWithCovarianceStamped"](
            header=self.out.header(stamp_ns, frame),
            pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=T.float64_seq(np.asarray(cov).reshape(36))))

    def _transform_msg(self, R01, t01, stamp_ns, frame, child) -> Any:
        T = self.out.types
        qx, qy, qz, qw = rotation_to_quaternion(R01)
        return T["geometry_msgs/msg/TransformStamped"](
            header=self.out.header(stamp_ns, frame), child_frame_id=str(child),
            transform=T["geometry_msgs/msg/Transform"](
                translation=T["geometry_msgs/msg/Vector3"](x=float(t01[0]), y=float(t01[1]), z=float(t01[2])),
                rotation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw)))


def rig_report(rig: Any, name: str, hardware_id: str = "") -> DiagnosticReport:
    """The rig's DiagnosticStatus: OK while tracking, WARN while converging without evidence or
    disputed, ERROR for ``rig.alarm_hold`` frames after a detected change. ``rig``: a
    RigEstimator, or a Pipeline (then the two-rate rig's refresher values are included)."""
    level, message, values = rig.rig_status() if hasattr(rig, "rig_status") else rig.status()
    return DiagnosticReport(level, name, message, hardware_id, values)


def calibration_document(estimate: Any, frame: str, child: str, stamp_ns: int) -> dict[str, Any]:
    """The calibration file's content (plain YAML types)."""

    def flat(x) -> list[float]:
        return [float(v) for v in np.asarray(x, np.float64).ravel()]

    doc: dict[str, Any] = {
        "format": CALIBRATION_FORMAT,
        "version": 1,
        "mode": estimate.mode,
        "parent_frame": frame,
        "child_frame": child,
        "stamp_ns": int(stamp_ns),
        "state": estimate.state,
        "converged": bool(estimate.converged),
        "frames_pooled": int(estimate.frames),
        "inliers_pooled": int(estimate.points),
        "frames_seen": int(estimate.updates),
        "changes_detected": int(estimate.changes),
        "image_size": [int(v) for v in estimate.image_size],
    }
    if estimate.mode == "homography":
        doc["homography"] = {
            "matrix": flat(estimate.model.H),  # row-major 3x3, visible px -> thermal px
            "corner_sigma_px": float(estimate.sigma),
            # covariance of the four visible corners mapped into the thermal image
            # (x0, y0, ..., x3, y3; corners (0,0), (w-1,0), (w-1,h-1), (0,h-1)), px^2
            "corner_covariance_px2": None if estimate.covariance is None else flat(estimate.covariance),
        }
    else:
        R01, t01, cov = rig_pose(estimate) or (estimate.model.R.T, -estimate.model.R.T @ estimate.model.t, None)
        doc["pose"] = {
            "translation": flat(t01),  # unit length: the direction of the baseline, not its length
            "rotation_xyzw": list(rotation_to_quaternion(R01)),
            "rotation_matrix": flat(R01),
            "covariance": None if cov is None else flat(cov),  # ROS order x y z rx ry rz
            "rotation_sigma_deg": float(estimate.sigma),
            "translation_sigma_deg": None if estimate.sigma_translation_deg is None else float(estimate.sigma_translation_deg),
            "translation_observable": bool(estimate.model.translation_observable),
            "opencv_R": flat(estimate.model.R),  # X1 = R X0 + t
            "opencv_t": flat(estimate.model.t),
        }
    return doc


class _QuotedDumper(yaml.SafeDumper):
    """Every string single-quoted: data to any reader, a YAML parser or a shell that runs the file."""


_QuotedDumper.add_representer(str, lambda d, v: d.represent_scalar("tag:yaml.org,2002:str", v, style="'"))


def write_calibration(path: str | Path, estimate: Any, frame: str, child: str, stamp_ns: int) -> Path:
    """Write the calibration YAML atomically (temp file in the same folder, fsync, rename), so a
    reader or a crash never sees half a file. Refused (ValueError) when the target is not a
    regular file or its folder is missing (node.config.output_file_problem: a symlink, FIFO or
    device is never replaced, no folder is created), or a frame is not a frame id."""
    from .config import output_file_problem, valid_frame_id

    path = Path(path).expanduser()
    for name in (frame, child):
        if not valid_frame_id(name):
            raise ValueError(f"not writing the rig calibration: frame {name!r} is not a frame id")
    problem = output_file_problem(str(path))
    if problem:
        raise ValueError(f"not writing the rig calibration: {problem}")
    text = "# rig calibration estimated by matchanything_ros rig mode (docs/NODE.md)\n" + yaml.dump(
        calibration_document(estimate, frame, child, stamp_ns), Dumper=_QuotedDumper, sort_keys=False)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if output_file_problem(str(path)):  # replaced by a symlink or FIFO meanwhile
            raise ValueError(f"not writing the rig calibration: {output_file_problem(str(path))}")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_calibration(path: str | Path) -> dict[str, Any]:
    """Read a calibration file written by :func:`write_calibration` (ValueError if it is not one)."""
    doc = yaml.safe_load(Path(path).read_text())
    if not isinstance(doc, dict) or doc.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"{path} is not a matchanything_ros rig calibration file")
    return doc
