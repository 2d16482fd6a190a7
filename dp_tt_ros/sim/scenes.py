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
Task scenes: the objects of each task, how they are randomised, scored and what may be touched.

A scene owns everything that differs between tasks; :class:`dp_tt_ros.sim.world.PandaWorld`
owns the robot, the table, physics and bookkeeping. All positions are in the world frame: the
robot base sits at the origin on the table top (``z = 0``), +x points away from the robot.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np
from pybullet_utils.bullet_client import BulletClient

GOAL_COLOUR = (0.9, 0.1, 0.1, 1.0)
DISTRACTOR_COLOURS = ((0.15, 0.3, 0.9, 1.0), (0.9, 0.8, 0.1, 1.0), (0.6, 0.2, 0.8, 1.0))
TARGET_PAD_COLOUR = (0.1, 0.75, 0.3, 1.0)
OBSTACLE_COLOUR = (0.5, 0.5, 0.55, 1.0)

# Downward gripper orientation (roll = pi); the yaw decides which way the fingers close.
GRIPPER_DOWN_ROLL = np.pi


@dataclass(frozen=True)
class StartPose:
    """Where the end effector starts; the world solves inverse kinematics for it."""

    ee_position: np.ndarray
    ee_yaw: float = 0.0


def _sample_separated(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, count: int,
                      avoid: list[np.ndarray], min_distance: float) -> list[np.ndarray]:
    """Draw ``count`` points in a box, each ``min_distance`` (xy) from ``avoid`` and each other."""
    points: list[np.ndarray] = []
    for _ in range(1000 * count):
        if len(points) == count:
            return points
        candidate = rng.uniform(low, high)
        if all(np.linalg.norm(candidate[:2] - other[:2]) >= min_distance
               for other in avoid + points):
            points.append(candidate)
    raise RuntimeError(f'could not place {count} points {min_distance} m apart in {low}..{high}')


def _yaw_quaternion(client: BulletClient, yaw: float) -> tuple[float, ...]:
    return client.getQuaternionFromEuler((0.0, 0.0, yaw))


class Scene(ABC):
    """Objects, randomisation, reward and success of one task."""

    name: str
    object_state_dim: int
    success_tolerance = 0.03

    def __init__(self, client: BulletClient) -> None:
        self.client = client
        self.goal = np.zeros(3)

    def _visual_sphere(self, radius: float, colour: tuple[float, ...]) -> int:
        shape = self.client.createVisualShape(self.client.GEOM_SPHERE, radius=radius,
                                              rgbaColor=colour)
        return self.client.createMultiBody(baseMass=0, baseVisualShapeIndex=shape)

    def _target_pad(self, radius: float) -> int:
        shape = self.client.createVisualShape(self.client.GEOM_CYLINDER, radius=radius,
                                              length=0.002, rgbaColor=TARGET_PAD_COLOUR)
        return self.client.createMultiBody(baseMass=0, baseVisualShapeIndex=shape)

    def _cube(self, half: float, colour: tuple[float, ...], mass: float) -> int:
        collision = self.client.createCollisionShape(self.client.GEOM_BOX,
                                                     halfExtents=[half] * 3)
        visual = self.client.createVisualShape(self.client.GEOM_BOX, halfExtents=[half] * 3,
                                               rgbaColor=colour)
        body = self.client.createMultiBody(baseMass=mass, baseCollisionShapeIndex=collision,
                                           baseVisualShapeIndex=visual)
        self.client.changeDynamics(body, -1, lateralFriction=1.0, spinningFriction=0.001,
                                   rollingFriction=0.0001,
                                   activationState=self.client.ACTIVATION_STATE_DISABLE_SLEEPING)
        return body

    def _place(self, body: int, position: np.ndarray, yaw: float = 0.0) -> None:
        self.client.resetBasePositionAndOrientation(body, position.tolist(),
                                                    _yaw_quaternion(self.client, yaw))
        self.client.resetBaseVelocity(body, [0, 0, 0], [0, 0, 0])

    def _pose(self, body: int) -> np.ndarray:
        position, orientation = self.client.getBasePositionAndOrientation(body)
        return np.array(position + orientation)

    @abstractmethod
    def reset(self, rng: np.random.Generator) -> StartPose:
        """Re-randomise objects and goal; return where the arm should start."""

    @abstractmethod
    def object_state(self) -> np.ndarray:
        """Task-specific state vector of fixed length ``object_state_dim``."""

    @abstractmethod
    def task_distance(self, ee_position: np.ndarray) -> float:
        """Distance still to cover (m); the dense reward is its negative."""

    @abstractmethod
    def is_success(self, ee_position: np.ndarray, robot: int) -> bool:
        """Whether the task is solved in the current physics state."""

    def allowed_contacts(self) -> set[int]:
        """Bodies the arm is meant to touch: contact with them is not a collision."""
        return set()


class ReachScene(Scene):
    """A red goal marker among three differently coloured distractor markers (visual only)."""

    name = 'reach'
    object_state_dim = 9
    low = np.array([0.35, -0.3, 0.1])
    high = np.array([0.65, 0.3, 0.4])

    def __init__(self, client: BulletClient) -> None:
        super().__init__(client)
        self.goal_marker = self._visual_sphere(0.025, GOAL_COLOUR)
        self.distractors = [self._visual_sphere(0.025, colour) for colour in DISTRACTOR_COLOURS]
        self.distractor_positions = np.zeros((len(self.distractors), 3))

    def reset(self, rng: np.random.Generator) -> StartPose:
        self.goal = rng.uniform(self.low, self.high)
        others = _sample_separated(rng, self.low, self.high, len(self.distractors),
                                   [self.goal], 0.1)
        self.distractor_positions = np.array(others)
        self._place(self.goal_marker, self.goal)
        for body, position in zip(self.distractors, others):
            self._place(body, position)
        return StartPose(ee_position=rng.uniform([0.35, -0.15, 0.3], [0.5, 0.15, 0.45]))

    def object_state(self) -> np.ndarray:
        return self.distractor_positions.reshape(-1)

    def task_distance(self, ee_position: np.ndarray) -> float:
        return float(np.linalg.norm(ee_position - self.goal))

    def is_success(self, ee_position: np.ndarray, robot: int) -> bool:
        return self.task_distance(ee_position) < self.success_tolerance


class AvoidScene(Scene):
    """A pillar between the start and the goal: the arm has to go around it, left or right."""

    name = 'avoid'
    object_state_dim = 6
    # Low enough that the forearm clears it when the hand is behind it, high enough that going
    # over would mean a large detour upwards from the travel height.
    pillar_half = np.array([0.04, 0.06, 0.11])
    travel_height = 0.12

    def __init__(self, client: BulletClient) -> None:
        super().__init__(client)
        collision = client.createCollisionShape(client.GEOM_BOX,
                                                halfExtents=self.pillar_half.tolist())
        visual = client.createVisualShape(client.GEOM_BOX, halfExtents=self.pillar_half.tolist(),
                                          rgbaColor=OBSTACLE_COLOUR)
        self.pillar = client.createMultiBody(baseMass=0, baseCollisionShapeIndex=collision,
                                             baseVisualShapeIndex=visual)
        self.goal_marker = self._visual_sphere(0.025, GOAL_COLOUR)
        self.pillar_position = np.zeros(3)

    def reset(self, rng: np.random.Generator) -> StartPose:
        self.pillar_position = np.array([rng.uniform(0.48, 0.52), rng.uniform(-0.03, 0.03),
                                         self.pillar_half[2]])
        self.goal = np.array([rng.uniform(0.70, 0.74), rng.uniform(-0.04, 0.04),
                              self.travel_height + rng.uniform(-0.02, 0.02)])
        self._place(self.pillar, self.pillar_position)
        self._place(self.goal_marker, self.goal)
        start = np.array([rng.uniform(0.28, 0.31), rng.uniform(-0.04, 0.04),
                          self.travel_height + rng.uniform(-0.02, 0.02)])
        return StartPose(ee_position=start, ee_yaw=np.pi / 2)

    def object_state(self) -> np.ndarray:
        return np.concatenate([self.pillar_position, self.pillar_half * 2])

    def task_distance(self, ee_position: np.ndarray) -> float:
        return float(np.linalg.norm(ee_position - self.goal))

    def is_success(self, ee_position: np.ndarray, robot: int) -> bool:
        return self.task_distance(ee_position) < self.success_tolerance


class PushScene(Scene):
    """A cube on the table to be pushed onto a green target pad; object state is the cube pose."""

    name = 'push'
    object_state_dim = 7
    cube_half = 0.025

    def __init__(self, client: BulletClient) -> None:
        super().__init__(client)
        self.cube = self._cube(self.cube_half, GOAL_COLOUR, mass=0.1)
        self.pad = self._target_pad(self.success_tolerance)

    def reset(self, rng: np.random.Generator) -> StartPose:
        cube = np.array([rng.uniform(0.42, 0.58), rng.uniform(-0.12, 0.12), self.cube_half])
        for _ in range(1000):
            angle = rng.uniform(-np.pi, np.pi)
            distance = rng.uniform(0.12, 0.2)
            goal = cube + distance * np.array([np.cos(angle), np.sin(angle), 0.0])
            if 0.38 <= goal[0] <= 0.65 and abs(goal[1]) <= 0.2:
                break
        else:
            raise RuntimeError(f'no push target on the table around the cube at {cube}')
        self.goal = np.array([goal[0], goal[1], self.cube_half])
        self._place(self.cube, cube, rng.uniform(-np.pi / 4, np.pi / 4))
        self._place(self.pad, np.array([goal[0], goal[1], 0.001]))
        return StartPose(ee_position=rng.uniform([0.4, -0.1, 0.2], [0.5, 0.1, 0.3]))

    def object_state(self) -> np.ndarray:
        return self._pose(self.cube)

    def task_distance(self, ee_position: np.ndarray) -> float:
        cube = self._pose(self.cube)[:3]
        return float(np.linalg.norm(cube[:2] - self.goal[:2])
                     + 0.2 * np.linalg.norm(ee_position - cube))

    def is_success(self, ee_position: np.ndarray, robot: int) -> bool:
        cube = self._pose(self.cube)[:3]
        return bool(np.linalg.norm(cube[:2] - self.goal[:2]) < self.success_tolerance)

    def allowed_contacts(self) -> set[int]:
        return {self.cube}


class PickPlaceScene(Scene):
    """Pick the red cube and set it down on the green pad; two other cubes are in the way."""

    name = 'pick_place'
    object_state_dim = 13
    cube_half = 0.02
    low = np.array([0.4, -0.2, 0.02])
    high = np.array([0.62, 0.2, 0.02])

    def __init__(self, client: BulletClient) -> None:
        super().__init__(client)
        self.cube = self._cube(self.cube_half, GOAL_COLOUR, mass=0.05)
        self.distractors = [self._cube(self.cube_half, colour, mass=0.05)
                            for colour in DISTRACTOR_COLOURS[:2]]
        for body in [self.cube, *self.distractors]:
            client.changeDynamics(body, -1, lateralFriction=1.5)
        self.pad = self._target_pad(self.success_tolerance)

    def reset(self, rng: np.random.Generator) -> StartPose:
        cube, goal = _sample_separated(rng, self.low, self.high, 2, [], 0.15)
        others = _sample_separated(rng, self.low, self.high, len(self.distractors),
                                   [cube, goal], 0.1)
        self.goal = goal
        self._place(self.cube, cube, rng.uniform(-np.pi / 4, np.pi / 4))
        for body, position in zip(self.distractors, others):
            self._place(body, position, rng.uniform(-np.pi / 4, np.pi / 4))
        self._place(self.pad, np.array([goal[0], goal[1], 0.001]))
        return StartPose(ee_position=rng.uniform([0.4, -0.1, 0.25], [0.5, 0.1, 0.35]))

    def object_state(self) -> np.ndarray:
        distractors = [self._pose(body)[:3] for body in self.distractors]
        return np.concatenate([self._pose(self.cube), *distractors])

    def task_distance(self, ee_position: np.ndarray) -> float:
        cube = self._pose(self.cube)[:3]
        return float(np.linalg.norm(cube - self.goal) + 0.2 * np.linalg.norm(ee_position - cube))

    def is_success(self, ee_position: np.ndarray, robot: int) -> bool:
        cube = self._pose(self.cube)[:3]
        on_pad = np.linalg.norm(cube[:2] - self.goal[:2]) < self.success_tolerance
        resting = cube[2] < self.cube_half + 0.005
        released = not self.client.getContactPoints(bodyA=robot, bodyB=self.cube)
        return bool(on_pad and resting and released)

    def allowed_contacts(self) -> set[int]:
        return {self.cube}


SCENES: dict[str, type[Scene]] = {
    scene.name: scene for scene in (ReachScene, AvoidScene, PushScene, PickPlaceScene)
}
