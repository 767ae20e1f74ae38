"""The result of a robust geometry fit: status, model matrix, inliers, pose and covariance."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


class GeometryStatus(str, Enum):
    """Why a fit did or did not produce a model. Only OK means the matrix / pose can be used."""

    OK = "OK"
    TOO_FEW_MATCHES = "TOO_FEW_MATCHES"  # fewer matches (or inliers) than min_matches
    LOW_INLIER_RATIO = "LOW_INLIER_RATIO"  # inliers / matches below min_inlier_ratio (likely a wrong fit)
    LOW_QUALITY = "LOW_QUALITY"  # a model was fitted but its verdict score is below min_quality
    DEGENERATE = "DEGENERATE"  # points identical / collinear, or OpenCV found no model
    NO_INTRINSICS = "NO_INTRINSICS"  # essential mode without valid K0 and K1
    FAILED = "FAILED"  # OpenCV raised an error


@dataclass
class GeometryResult:
    """A robust fit between visible (0) and thermal (1) keypoints.

    mode: "homography", "affine", "fundamental", "essential" or "none".
    status: LOW_QUALITY is set by the pipeline (not here) when the verdict's score of an
        otherwise OK fit is below ``min_quality`` (matchanything_ros.geometry.quality).
    matrix: 3x3 float64 (H with x1 ~ H x0 in pixels; affine as 3x3 with last row 0 0 1; F with
        x1^T F x0 = 0 in pixels; E with x1^T E x0 = 0 in normalised coordinates), None unless OK.
    inliers: bool (N,), aligned with the input keypoints (all False when no fit was attempted).
    R, t: essential mode only; OpenCV convention X1 = R X0 + t with |t| = 1 (see
        :func:`camera1_pose_in_camera0` for the thermal camera's pose in the visible frame).
    covariance: essential mode only; 6x6 for the pose of camera 1 in camera 0, ROS order
        (x, y, z, rot_x, rot_y, rot_z); see :mod:`matchanything_ros.geometry.pose`.
    rms_residual_px: RMS residual of the inliers in pixels (transfer error for H / affine,
        Sampson distance for F / E), None when not computed.
    translation_observable: essential mode only; False when the scene has too little parallax
        to determine the translation direction (R is still valid, t is not; the covariance
        then gives the whole translation a huge variance).
    """

    mode: str
    status: GeometryStatus
    message: str
    matrix: np.ndarray | None
    inliers: np.ndarray
    R: np.ndarray | None = None
    t: np.ndarray | None = None
    covariance: np.ndarray | None = None
    rms_residual_px: float | None = None
    translation_observable: bool | None = None
    #: LOW_QUALITY only: the model the verdict withheld, for evaluation (its accuracy is still
    #: measured); never publish it
    rejected_matrix: np.ndarray | None = None

    @property
    def num_inliers(self) -> int:
        return int(np.count_nonzero(self.inliers))

    @property
    def ok(self) -> bool:
        return self.status == GeometryStatus.OK
