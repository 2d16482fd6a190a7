# Copyright 2026 dp_tt_ros developers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
The Franka Panda as every layer sees it: joint names, order and limits.

One definition serves the simulator, the bridge, the executor's safety clamps and the policies'
action layout. An action or command is 8 numbers: the 7 arm joint positions in ``ARM_JOINTS``
order, then one gripper opening (metres per finger) that is applied to both fingers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ARM_JOINTS: tuple[str, ...] = tuple(f'panda_joint{i}' for i in range(1, 8))
FINGER_JOINTS: tuple[str, ...] = ('panda_finger_joint1', 'panda_finger_joint2')
GRIPPER_COMMAND_NAME = 'panda_gripper'
COMMAND_JOINTS: tuple[str, ...] = ARM_JOINTS + (GRIPPER_COMMAND_NAME,)
ACTION_DIM = len(COMMAND_JOINTS)

# Limits of the franka_panda URDF shipped in pybullet_data (rad, rad/s; metres for the gripper).
POSITION_LOWER = np.array([-2.8973, -1.7628, -2.8973, -3.0718, -2.8973, -0.0175, -2.8973, 0.0])
POSITION_UPPER = np.array([2.8973, 1.7628, 2.8973, -0.0698, 2.8973, 3.7525, 2.8973, 0.04])
VELOCITY_LIMIT = np.array([2.175, 2.175, 2.175, 2.175, 2.61, 2.61, 2.61, 0.2])

# Home configuration: elbow up, gripper pointing down, fingers open.
HOME_POSITION = np.array([0.0, -0.3, 0.0, -2.2, 0.0, 2.0, 0.785, 0.04])


@dataclass(frozen=True)
class JointLimits:
    """Position and velocity limits for a list of command joints (order matters)."""

    names: tuple[str, ...]
    lower: np.ndarray
    upper: np.ndarray
    max_velocity: np.ndarray

    def clamp(self, position: np.ndarray) -> np.ndarray:
        return np.clip(position, self.lower, self.upper)


PANDA_LIMITS = JointLimits(COMMAND_JOINTS, POSITION_LOWER, POSITION_UPPER, VELOCITY_LIMIT)
