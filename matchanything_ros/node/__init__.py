"""The node's logic without ROS: configuration, pairing, per-pair input checks, output messages,
health and the worker thread. ``matchanything_ros.ros`` wraps it in rclpy; ``bags.replay`` runs
the same code on recorded messages.
"""
