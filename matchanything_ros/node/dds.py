"""Which environment variable the running Fast DDS reads its XML profile from (ROS-free).

Fast DDS 2.x (Humble: 2.6, Jazzy: 2.14) reads only ``FASTRTPS_DEFAULT_PROFILES_FILE``. Fast DDS
3.x (Kilted and newer, and the PyPI rclpy wheels, which ship Fast DDS 3.2) reads
``FASTDDS_DEFAULT_PROFILES_FILE``; there rmw_fastrtps still honours the old name but warns
"deprecated" at every start (ros2/rmw_fastrtps#806). Setting exactly one variable avoids both
the warning and a profile that is silently not loaded.
"""
from __future__ import annotations

import os

FASTDDS_2_DISTROS = ("foxy", "galactic", "humble", "iron", "jazzy")
FASTRTPS_VAR = "FASTRTPS_DEFAULT_PROFILES_FILE"
FASTDDS_VAR = "FASTDDS_DEFAULT_PROFILES_FILE"


def profile_variable(distro: str | None = None) -> str:
    """The variable for ``distro`` (default: ``$ROS_DISTRO``; unset = the PyPI wheels, Fast DDS 3)."""
    distro = os.environ.get("ROS_DISTRO", "") if distro is None else distro
    return FASTRTPS_VAR if distro.strip().lower() in FASTDDS_2_DISTROS else FASTDDS_VAR


def profile_env(profile: str, distro: str | None = None) -> dict[str, str]:
    """``{variable: profile}`` for the running Fast DDS."""
    return {profile_variable(distro): profile}
