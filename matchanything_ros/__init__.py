"""matchanything_ros: universal cross-modality (visible/thermal) image matching for ROS 2.

The core (models, engines, imaging, geometry, pipeline, evaluation) imports no ROS; the
``matchanything_ros.ros`` subpackage holds the thin rclpy adapters.
"""

__version__ = "0.1.0"
