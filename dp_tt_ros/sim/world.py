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
The PyBullet world: a Franka Panda on a table, one task scene, fixed-step physics.

Everything ROS-free that touches PyBullet lives here, so the Gymnasium tasks, the scripted experts,
the ROS bridge and the benchmarks all drive the same physics. The robot is position controlled:
``set_command`` takes the 8 numbers of :data:`dp_tt_ros.robot.COMMAND_JOINTS` (7 arm joint targets
and one gripper opening applied to both fingers), like ros2_control's forward position controller.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import pybullet
import pybullet_data
from pybullet_utils.bullet_client import BulletClient

from dp_tt_ros.robot import (ARM_JOINTS, COMMAND_JOINTS, FINGER_JOINTS, HOME_POSITION,
                             PANDA_LIMITS, VELOCITY_LIMIT)
from dp_tt_ros.sim.scenes import GRIPPER_DOWN_ROLL, SCENES, Scene

TASKS: tuple[str, ...] = ('reach', 'avoid', 'push', 'pick_place')

EE_LINK_NAME = 'panda_grasptarget'
# A gain of 0.3 lets a target 0.1 rad away settle within one 0.1 s control step (0.1 undershoots).
POSITION_GAIN = 0.3
FINGER_FORCE = 40.0
# PyBullet has no gravity compensation, so with the URDF torque limits (87 Nm) the shoulder
# saturates holding an outstretched arm; a real Panda compensates gravity in its controller.
# Twice the limit leaves the same headroom for motion as on hardware.
ARM_FORCE_SCALE = 2.0
COLLISION_PENALTY = 0.5
TABLE_HALF_EXTENTS = (0.6, 0.75, 0.025)
TABLE_CENTRE = (0.35, 0.0, -0.025)
IK_ITERATIONS = 60
IK_POSITION_TOLERANCE = 1e-4
IK_ROTATION_TOLERANCE = 1e-3
IK_DAMPING = 0.02
IK_POSTURE_GAIN = 0.05
CAMERA_EYE = (1.15, 0.45, 0.8)
CAMERA_TARGET = (0.45, 0.0, 0.18)
CAMERA_FOV_DEG = 55.0


@dataclass
class TaskStatus:
    """How the current episode is going; success and time-to-goal latch at the first success."""

    success: bool
    n_collisions: int
    collision_time: float
    elapsed: float
    time_to_goal: float | None
    reward: float
    collision: bool


def check_task(task: str) -> str:
    """Return ``task`` if it is known, else raise a ValueError listing the known tasks."""
    if task not in TASKS:
        raise ValueError(f'unknown task {task!r}; expected one of {", ".join(TASKS)}')
    return task


class PandaWorld:
    """A Panda on a table with one task's objects; seeded, headless unless ``gui``."""

    def __init__(self, task: str, *, gui: bool = False, physics_hz: float = 240.0,
                 seed: int | None = None) -> None:
        check_task(task)
        if not physics_hz > 0:
            raise ValueError(f'physics_hz must be positive, got {physics_hz}')
        self.task = task
        self.physics_dt = 1.0 / physics_hz
        self.client = BulletClient(pybullet.GUI if gui else pybullet.DIRECT)
        self._closed = False
        self.client.setAdditionalSearchPath(pybullet_data.getDataPath())
        self.client.setGravity(0, 0, -9.81)
        self.client.setTimeStep(self.physics_dt)
        self.client.setPhysicsEngineParameter(deterministicOverlappingPairs=1)
        if gui:
            self.client.configureDebugVisualizer(pybullet.COV_ENABLE_GUI, 0)
            self.client.resetDebugVisualizerCamera(1.3, 60, -30, CAMERA_TARGET)
        self.table = self._make_table()
        self.robot = self.client.loadURDF('franka_panda/panda.urdf', [0, 0, 0],
                                          useFixedBase=True,
                                          flags=pybullet.URDF_ENABLE_CACHED_GRAPHICS_SHAPES)
        joints = {self.client.getJointInfo(self.robot, index)[1].decode(): index
                  for index in range(self.client.getNumJoints(self.robot))}
        links = {self.client.getJointInfo(self.robot, index)[12].decode(): index
                 for index in range(self.client.getNumJoints(self.robot))}
        self.arm_indices = [joints[name] for name in ARM_JOINTS]
        self.finger_indices = [joints[name] for name in FINGER_JOINTS]
        self.ee_link = links[EE_LINK_NAME]
        self.arm_max_force = [ARM_FORCE_SCALE * self.client.getJointInfo(self.robot, index)[10]
                              for index in self.arm_indices]
        for index in self.finger_indices:
            self.client.changeDynamics(self.robot, index, lateralFriction=1.5)
        self.scene: Scene = SCENES[task](self.client)
        self._kinematics = BulletClient(pybullet.DIRECT)
        self._kinematic_arm = self._kinematics.loadURDF(
            os.path.join(pybullet_data.getDataPath(), 'franka_panda/panda.urdf'),
            useFixedBase=True)
        self._rng = np.random.default_rng(seed)
        self._physics_steps = 0
        self.command = HOME_POSITION.copy()
        self._view_matrix = self.client.computeViewMatrix(CAMERA_EYE, CAMERA_TARGET, (0, 0, 1))
        self.reset(seed)

    def _make_table(self) -> int:
        collision = self.client.createCollisionShape(pybullet.GEOM_BOX,
                                                     halfExtents=TABLE_HALF_EXTENTS)
        visual = self.client.createVisualShape(pybullet.GEOM_BOX, halfExtents=TABLE_HALF_EXTENTS,
                                               rgbaColor=(0.75, 0.65, 0.5, 1.0))
        table = self.client.createMultiBody(baseMass=0, baseCollisionShapeIndex=collision,
                                            baseVisualShapeIndex=visual,
                                            basePosition=TABLE_CENTRE)
        self.client.changeDynamics(table, -1, lateralFriction=0.6)
        return table

    # --- episode control -------------------------------------------------------------------

    def reset(self, seed: int | None = None) -> None:
        """Re-randomise the scene and the arm's start; the same seed gives the same scene."""
        rng = np.random.default_rng(seed) if seed is not None else self._rng
        self._forget_contacts()
        start = self.scene.reset(rng)
        self.set_joint_positions(HOME_POSITION)
        start_joints = self.inverse_kinematics(start.ee_position, start.ee_yaw)
        self.set_joint_positions(np.append(start_joints, HOME_POSITION[7]))
        self.set_command(self._command_state())
        self._physics_steps = 0
        self._success = False
        self._time_to_goal: float | None = None
        self._n_collisions = 0
        self._collision_time = 0.0
        self._in_contact = False
        self._collided_last_call = False

    def _forget_contacts(self) -> None:
        """
        Drop the solver's cached contacts by pulling every object apart for a moment.

        Cached contacts warm-start the next solve, so without this a seeded episode would
        depend (slightly) on whatever ran before it.
        """
        for index in range(self.client.getNumBodies()):
            body = self.client.getBodyUniqueId(index)
            if body not in (self.robot, self.table):
                self.client.resetBasePositionAndOrientation(body, (100.0 + 10 * index, 0, 50),
                                                            (0, 0, 0, 1))
        self.client.performCollisionDetection()

    def set_joint_positions(self, command: np.ndarray) -> None:
        """Teleport the arm and fingers to an 8-d command layout, at rest, without physics."""
        for index, position in zip(self.arm_indices, command[:7]):
            self.client.resetJointState(self.robot, index, float(position), 0.0)
        for index in self.finger_indices:
            self.client.resetJointState(self.robot, index, float(command[7]), 0.0)

    def set_command(self, command: np.ndarray) -> None:
        """Hold these 8 joint targets (clamped to the joint limits) until the next command."""
        command = np.asarray(command, dtype=float)
        if command.shape != (len(COMMAND_JOINTS),):
            raise ValueError(f'command must have shape ({len(COMMAND_JOINTS)},) in the order '
                             f'{COMMAND_JOINTS}, got shape {command.shape}')
        if not np.all(np.isfinite(command)):
            raise ValueError(f'command must be finite, got {command.tolist()}')
        self.command = PANDA_LIMITS.clamp(command)
        for index, target, force, speed in zip(self.arm_indices, self.command[:7],
                                               self.arm_max_force, VELOCITY_LIMIT[:7]):
            self.client.setJointMotorControl2(self.robot, index, pybullet.POSITION_CONTROL,
                                              targetPosition=float(target), force=force,
                                              positionGain=POSITION_GAIN, maxVelocity=speed)
        for index in self.finger_indices:
            self.client.setJointMotorControl2(self.robot, index, pybullet.POSITION_CONTROL,
                                              targetPosition=float(self.command[7]),
                                              force=FINGER_FORCE, positionGain=POSITION_GAIN,
                                              maxVelocity=float(VELOCITY_LIMIT[7]))

    def step_physics(self, n: int = 1) -> None:
        """Advance ``n`` fixed steps, tracking collisions and the first success after each."""
        if n < 1:
            raise ValueError(f'step_physics needs n >= 1, got {n}')
        allowed = self.scene.allowed_contacts()
        self._collided_last_call = False
        for _ in range(n):
            self.client.stepSimulation()
            self._physics_steps += 1
            in_contact = self._arm_in_collision(allowed)
            if in_contact:
                self._collision_time += self.physics_dt
                self._collided_last_call = True
                if not self._in_contact:
                    self._n_collisions += 1
            self._in_contact = in_contact
            if not self._success and self.scene.is_success(self.ee_position(), self.robot):
                self._success = True
                self._time_to_goal = self.time

    def _arm_in_collision(self, allowed: set[int]) -> bool:
        """Touching anything but the task's target, ignoring the base resting on the table."""
        for contact in self.client.getContactPoints(bodyA=self.robot):
            other, link, distance = contact[2], contact[3], contact[8]
            if link != -1 and other != self.robot and other not in allowed and distance <= 0:
                return True
        return False

    @property
    def time(self) -> float:
        """Return the simulated seconds since the last reset."""
        return self._physics_steps * self.physics_dt

    # --- state ------------------------------------------------------------------------------

    def joint_state(self) -> tuple[list[str], np.ndarray, np.ndarray]:
        """Names, positions and velocities of the 7 arm joints and the 2 finger joints."""
        indices = self.arm_indices + self.finger_indices
        states = self.client.getJointStates(self.robot, indices)
        positions = np.array([state[0] for state in states])
        velocities = np.array([state[1] for state in states])
        return list(ARM_JOINTS + FINGER_JOINTS), positions, velocities

    def _command_state(self) -> np.ndarray:
        _, positions, _ = self.joint_state()
        return np.append(positions[:7], positions[7:].mean())

    def ee_position(self) -> np.ndarray:
        """World position of the grasp point between the fingertips."""
        state = self.client.getLinkState(self.robot, self.ee_link, computeForwardKinematics=True)
        return np.array(state[4])

    def ee_yaw(self) -> float:
        """Yaw of the gripper about the world z axis (fingers close along its y axis)."""
        state = self.client.getLinkState(self.robot, self.ee_link, computeForwardKinematics=True)
        rotation = np.reshape(self.client.getMatrixFromQuaternion(state[5]), (3, 3))
        return float(np.arctan2(rotation[1, 0], rotation[0, 0]))

    def inverse_kinematics(self, position: np.ndarray, yaw: float = 0.0) -> np.ndarray:
        """
        Arm joint positions (7,) that put the grasp point at ``position``, pointing down.

        Damped least squares on a kinematic copy of the arm (a separate physics client, so the
        simulation is untouched), started from the current joints: consecutive targets give
        consecutive solutions. PyBullet's own null-space solver is off by millimetres to
        centimetres on longer moves. A null-space pull towards the home posture keeps the
        elbow up and the redundant joint away from its limits.
        """
        target = np.asarray(position, dtype=float)
        rotation = np.reshape(self.client.getMatrixFromQuaternion(
            self.client.getQuaternionFromEuler((GRIPPER_DOWN_ROLL, 0.0, float(yaw)))), (3, 3))
        joints = self.joint_state()[1][:7].copy()
        fingers = [0.04, 0.04]
        for _ in range(IK_ITERATIONS):
            for index, value in zip(self.arm_indices, joints):
                self._kinematics.resetJointState(self._kinematic_arm, index, float(value))
            state = self._kinematics.getLinkState(self._kinematic_arm, self.ee_link,
                                                  computeForwardKinematics=True)
            current = np.reshape(self._kinematics.getMatrixFromQuaternion(state[5]), (3, 3))
            position_error = target - np.asarray(state[4])
            rotation_error = 0.5 * sum(np.cross(current[:, axis], rotation[:, axis])
                                       for axis in range(3))
            if (np.linalg.norm(position_error) < IK_POSITION_TOLERANCE
                    and np.linalg.norm(rotation_error) < IK_ROTATION_TOLERANCE):
                break
            linear, angular = self._kinematics.calculateJacobian(
                self._kinematic_arm, self.ee_link, [0.0, 0.0, 0.0],
                joints.tolist() + fingers, [0.0] * 9, [0.0] * 9)
            jacobian = np.vstack([np.asarray(linear)[:, :7], np.asarray(angular)[:, :7]])
            error = np.concatenate([position_error, rotation_error])
            damped = jacobian @ jacobian.T + IK_DAMPING ** 2 * np.eye(6)
            step = jacobian.T @ np.linalg.solve(damped, error)
            projector = np.eye(7) - np.linalg.pinv(jacobian) @ jacobian
            step += projector @ (IK_POSTURE_GAIN * (HOME_POSITION[:7] - joints))
            joints = np.clip(joints + step, PANDA_LIMITS.lower[:7], PANDA_LIMITS.upper[:7])
        return joints

    def observation(self, image_size: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """Joint state, object state, goal and, if ``image_size`` = (height, width), an image."""
        _, positions, velocities = self.joint_state()
        obs = {
            'joint_pos': np.append(positions[:7], positions[7:].mean()).astype(np.float32),
            'joint_vel': np.append(velocities[:7], velocities[7:].mean()).astype(np.float32),
            'object_state': self.scene.object_state().astype(np.float32),
            'goal': self.scene.goal.astype(np.float32),
        }
        if image_size is not None:
            height, width = image_size
            obs['image'] = self.render(width, height)
        return obs

    def status(self) -> TaskStatus:
        distance = self.scene.task_distance(self.ee_position())
        return TaskStatus(
            success=self._success, n_collisions=self._n_collisions,
            collision_time=self._collision_time, elapsed=self.time,
            time_to_goal=self._time_to_goal,
            reward=-distance - COLLISION_PENALTY * self._collided_last_call,
            collision=self._collided_last_call)

    # --- camera -----------------------------------------------------------------------------

    @staticmethod
    def _check_size(width: int, height: int) -> None:
        if int(width) != width or int(height) != height or width < 1 or height < 1:
            raise ValueError(f'image size must be positive integers, got {width}x{height}')

    def render(self, width: int, height: int) -> np.ndarray:
        """RGB image (height, width, 3) uint8 from the fixed scene camera (TinyRenderer)."""
        self._check_size(width, height)
        projection = self.client.computeProjectionMatrixFOV(CAMERA_FOV_DEG, width / height,
                                                            0.05, 4.0)
        _, _, rgba, _, _ = self.client.getCameraImage(
            int(width), int(height), self._view_matrix, projection,
            renderer=pybullet.ER_TINY_RENDERER, flags=pybullet.ER_NO_SEGMENTATION_MASK)
        return np.asarray(rgba, dtype=np.uint8).reshape(int(height), int(width), 4)[..., :3]

    def camera_info(self, width: int, height: int) -> dict:
        """
        Describe the render camera: pinhole intrinsics and its pose.

        PyBullet's field of view is vertical, so fx = fy for square pixels. ``world_to_camera``
        is the 4x4 view matrix in OpenGL convention (x right, y up, looking along -z).
        """
        self._check_size(width, height)
        focal = (height / 2.0) / np.tan(np.radians(CAMERA_FOV_DEG) / 2.0)
        view = np.array(self._view_matrix).reshape(4, 4).T
        return {'width': int(width), 'height': int(height), 'fx': float(focal),
                'fy': float(focal), 'cx': width / 2.0, 'cy': height / 2.0,
                'world_to_camera': view.tolist()}

    def close(self) -> None:
        """Disconnect from the physics server; safe to call twice."""
        if not self._closed:
            self.client.disconnect()
            self._kinematics.disconnect()
            self._closed = True
