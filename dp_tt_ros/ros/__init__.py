"""Thin rclpy nodes over the ROS-free core. Only this sub-package imports ROS."""
