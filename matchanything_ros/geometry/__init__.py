"""Robust two-view geometry between the visible (0) and thermal (1) images."""
from .estimate import GEOMETRY_MODES, MIN_IN_FRONT_FRACTION, MINIMAL_SAMPLE, estimate_geometry
from .pose import (
    UNKNOWN_SCALE_VARIANCE,
    camera1_pose_in_camera0,
    pose_covariance,
    rotation_parallax,
    sampson_distances,
)
from .result import GeometryResult, GeometryStatus
from .warp import apply_homography, warp_thermal_to_visible

__all__ = [
    "GEOMETRY_MODES",
    "MINIMAL_SAMPLE",
    "MIN_IN_FRONT_FRACTION",
    "UNKNOWN_SCALE_VARIANCE",
    "apply_homography",
    "GeometryResult",
    "GeometryStatus",
    "camera1_pose_in_camera0",
    "estimate_geometry",
    "pose_covariance",
    "rotation_parallax",
    "sampson_distances",
    "warp_thermal_to_visible",
]
