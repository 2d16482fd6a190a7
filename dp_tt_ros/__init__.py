"""dp_tt_ros: Diffusion Policy and Trajectory Transformer runtime for ROS 2 robot arms.

The core (policies, sim, data, training, evaluation, control) imports no ROS; ``dp_tt_ros.ros``
holds the thin rclpy nodes.
"""

__version__ = '0.1.0'
