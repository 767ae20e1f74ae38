"""Test tooling shipped with the package: the hostile-input fuzz generator (ROS-free) and its
live-node driver (rclpy), used by the CI fuzz test and ``scripts/fuzz_node.py``."""
