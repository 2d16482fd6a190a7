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
Scripted experts: Cartesian waypoint followers turned into joint targets by inverse kinematics.

Each expert keeps a commanded grasp-point position that moves towards the current waypoint at a
capped speed, solves IK for it (gripper pointing down) and emits the 8 absolute joint targets the
environment expects, one row per 0.1 s control step, just like a policy's action chunk.

``noise`` (metres) is the standard deviation of a slowly varying (AR(1), correlation 0.8 per step)
offset added to the commanded position, scaled to 20 % near contacts (grasping, placing,
pushing). The experts close the loop on the true object state, so noisy demos are still mostly
successful but slower and less tidy: demos of varying quality.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from dp_tt_ros.sim.scenes import PickPlaceScene, PushScene
from dp_tt_ros.sim.tasks import PandaTaskEnv
from dp_tt_ros.sim.world import PandaWorld, check_task

OPEN = 0.04
CLOSED = 0.0
NOISE_CORRELATION = 0.8
MAX_YAW_STEP = 0.3
CAREFUL = 0.2


@dataclass
class Waypoint:
    """
    Where the grasp point should go next, with what gripper yaw and opening, how fast.

    ``care`` scales the noise down near contacts, the way a demonstrator slows down and aims
    there: sloppy transit, careful grasps.
    """

    position: np.ndarray
    yaw: float
    gripper: float
    speed: float = 0.05
    care: float = 1.0


def _cube_yaw(quaternion: np.ndarray) -> float:
    x, y, z, w = quaternion
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def _wrap(angle: float, period: float) -> float:
    """Map ``angle`` into [-period/2, period/2): grippers and cubes are symmetric."""
    return float((angle + period / 2) % period - period / 2)


class Expert(ABC):
    """A scripted demonstrator: ``reset(env)`` at the start of an episode, then ``act(obs)``."""

    def __init__(self, noise: float = 0.0, seed: int | None = None) -> None:
        if not noise >= 0:
            raise ValueError(f'noise must be >= 0 metres, got {noise}')
        self.noise = float(noise)
        self.rng = np.random.default_rng(seed)
        self._world: PandaWorld | None = None

    @property
    def world(self) -> PandaWorld:
        if self._world is None:
            raise RuntimeError('call expert.reset(env) before expert.act(obs)')
        return self._world

    def reset(self, env: PandaTaskEnv) -> None:
        """Start following a new episode of ``env`` from the arm's current pose."""
        self._world = env.world
        self._point = self.world.ee_position()
        self._yaw = self.world.ee_yaw()
        self._offset = np.zeros(3)
        self._reset_plan()

    @abstractmethod
    def _reset_plan(self) -> None:
        """Forget the previous episode's plan."""

    @abstractmethod
    def _waypoint(self, obs: dict[str, np.ndarray]) -> Waypoint:
        """Choose the task-specific target for this control step."""

    def _reached(self, position: np.ndarray, tolerance: float = 0.01) -> bool:
        """Whether both the commanded and the measured grasp point are at ``position``."""
        return bool(np.linalg.norm(self._point - position) < 1e-3
                    and np.linalg.norm(self.world.ee_position() - position) < tolerance)

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Joint targets (8,) for the next control step."""
        world = self.world
        waypoint = self._waypoint(obs)
        step = waypoint.position - self._point
        distance = float(np.linalg.norm(step))
        if distance > waypoint.speed:
            step *= waypoint.speed / distance
        self._point = self._point + step
        self._yaw += float(np.clip(_wrap(waypoint.yaw - self._yaw, 2 * np.pi),
                                   -MAX_YAW_STEP, MAX_YAW_STEP))
        if self.noise > 0:
            innovation = self.rng.normal(0.0, self.noise, 3)
            self._offset = (NOISE_CORRELATION * self._offset
                            + np.sqrt(1 - NOISE_CORRELATION ** 2) * innovation)
        joints = world.inverse_kinematics(self._point + waypoint.care * self._offset, self._yaw)
        return np.append(joints, waypoint.gripper)


class ReachExpert(Expert):
    """Straight to the goal marker."""

    def _reset_plan(self) -> None:
        self._start_yaw = self._yaw

    def _waypoint(self, obs: dict[str, np.ndarray]) -> Waypoint:
        return Waypoint(obs['goal'].astype(float), self._start_yaw, OPEN, speed=0.06)


class AvoidExpert(Expert):
    """Around the pillar on a side chosen at random each episode: the demos are bimodal."""

    clearance = 0.11
    lead = 0.15

    def _reset_plan(self) -> None:
        self.side = 1.0 if self.rng.random() < 0.5 else -1.0
        self._stage = 0

    def _waypoint(self, obs: dict[str, np.ndarray]) -> Waypoint:
        pillar, size = obs['object_state'][:3].astype(float), obs['object_state'][3:6]
        goal = obs['goal'].astype(float)
        y = pillar[1] + self.side * (size[1] / 2 + self.clearance)
        x_before = pillar[0] - size[0] / 2 - self.lead
        route = [np.array([x_before, y, self._point[2]]), np.array([goal[0], y, goal[2]]), goal]
        while self._stage < 2 and self._reached(route[self._stage], tolerance=0.05):
            self._stage += 1
        return Waypoint(route[self._stage], np.pi / 2, OPEN, speed=0.05)


class PushExpert(Expert):
    """Get behind the cube on the cube-goal line, lower the closed gripper and push along it."""

    travel_height = 0.1
    push_height = 0.03
    standoff = PushScene.cube_half * np.sqrt(2) + 0.035
    contact = PushScene.cube_half + 0.012
    # Closer to the cube's centre than this along the push line means the fingers slid past it.
    slipped = 0.015

    def _reset_plan(self) -> None:
        # Taking over with the hand already down (from a policy, mid-episode): keep pushing if
        # it sits on the push line, else the push check below lifts it clear first instead of
        # sweeping it through the cube on the way to the approach point.
        low = self._point[2] < self.travel_height - 0.03
        self._phase = 'push' if low else 'approach'

    def _waypoint(self, obs: dict[str, np.ndarray]) -> Waypoint:
        cube = obs['object_state'][:2].astype(float)
        to_goal = obs['goal'][:2].astype(float) - cube
        remaining = float(np.linalg.norm(to_goal))
        direction = to_goal / max(remaining, 1e-9)
        yaw = _wrap(float(np.arctan2(direction[1], direction[0])), np.pi)
        behind = cube - direction * self.standoff
        ee = self.world.ee_position()
        if self._phase == 'push':
            relative = ee[:2] - cube
            lateral = abs(direction[0] * relative[1] - direction[1] * relative[0])
            if lateral > 0.02 or float(relative @ direction) > -self.slipped:
                self._phase = 'retreat'
                self._lifted = np.array([ee[0], ee[1], self.travel_height])
        if self._phase == 'retreat':
            if self._reached(self._lifted, tolerance=0.03):
                self._phase = 'approach'
            else:
                return Waypoint(self._lifted, yaw, CLOSED)
        if self._phase == 'approach':
            above = np.append(behind, self.travel_height)
            if self._reached(above, tolerance=0.02):
                self._phase = 'descend'
            else:
                return Waypoint(above, yaw, CLOSED)
        if self._phase == 'descend':
            low = np.append(behind, self.push_height)
            if self._reached(low, tolerance=0.015):
                self._phase = 'push'
            else:
                return Waypoint(low, yaw, CLOSED, speed=0.04, care=CAREFUL)
        advance = min(0.02, remaining)
        pusher = cube - direction * (self.contact - advance)
        return Waypoint(np.append(pusher, self.push_height), yaw, CLOSED, speed=0.02,
                        care=CAREFUL)


class PickPlaceExpert(Expert):
    """Grasp the red cube from above, carry it over the pad, set it down and let go."""

    travel_height = 0.15
    cube_half = PickPlaceScene.cube_half

    def _reset_plan(self) -> None:
        self._phase = 'above_cube'
        self._hold_steps = 0
        self._grip_offset = np.zeros(2)
        if self._holding():  # taking over a carry mid-episode: go on with it, don't drop it
            cube = self.world.scene.object_state()[:2]
            self._grip_offset = cube - self.world.ee_position()[:2]
            self._phase = 'lift'

    def _holding(self) -> bool:
        """Whether both fingers touch the red cube, which is off the table."""
        world = self.world
        cube = world.scene.cube
        touching = {contact[3] for contact in world.client.getContactPoints(
            bodyA=world.robot, bodyB=cube)}
        lifted = world.scene.object_state()[2] > self.cube_half + 0.005
        return lifted and set(world.finger_indices) <= touching

    def _waypoint(self, obs: dict[str, np.ndarray]) -> Waypoint:
        state = obs['object_state'].astype(float)
        cube, cube_yaw = state[:3], _wrap(_cube_yaw(state[3:7]), np.pi / 2)
        goal = obs['goal'].astype(float)
        ee = self.world.ee_position()
        phase = self._phase
        dropped = phase in ('lift', 'carry', 'lower') and np.linalg.norm(cube - ee) > 0.04
        missed = (phase == 'retreat'
                  and np.linalg.norm(cube[:2] - goal[:2]) > PickPlaceScene.success_tolerance)
        if dropped or missed:
            phase = 'above_cube'
        if phase == 'above_cube':
            above = np.array([cube[0], cube[1], self.travel_height])
            if self._reached(above, tolerance=0.015) and abs(
                    _wrap(self.world.ee_yaw() - cube_yaw, np.pi / 2)) < 0.05:
                phase = 'descend'
            else:
                return self._go(phase, Waypoint(above, cube_yaw, OPEN))
        if phase == 'descend':
            grasp = np.array([cube[0], cube[1], self.cube_half])
            if self._reached(grasp, tolerance=0.008):
                phase, self._hold_steps = 'close', 0
            else:
                return self._go(phase, Waypoint(grasp, cube_yaw, OPEN, speed=0.03, care=CAREFUL))
        if phase == 'close':
            self._hold_steps += 1
            if self._hold_steps <= 4:
                return self._go(phase, Waypoint(self._point.copy(), self._yaw, CLOSED,
                                                care=CAREFUL))
            self._grip_offset = cube[:2] - ee[:2]
            phase = 'lift'
        if phase == 'lift':
            lifted = np.array([self._point[0], self._point[1], self.travel_height])
            if self._reached(lifted, tolerance=0.02):
                phase = 'carry'
            else:
                return self._go(phase, Waypoint(lifted, self._yaw, CLOSED))
        if phase == 'carry':
            over = np.append(goal[:2] - self._grip_offset, self.travel_height)
            if self._reached(over, tolerance=0.01):
                phase = 'lower'
            else:
                return self._go(phase, Waypoint(over, self._yaw, CLOSED))
        if phase == 'lower':
            place = np.append(goal[:2] - self._grip_offset, self.cube_half + 0.004)
            if self._reached(place, tolerance=0.008):
                phase, self._hold_steps = 'release', 0
            else:
                return self._go(phase, Waypoint(place, self._yaw, CLOSED, speed=0.03,
                                                care=CAREFUL))
        if phase == 'release':
            self._hold_steps += 1
            if self._hold_steps <= 3:
                return self._go(phase, Waypoint(self._point.copy(), self._yaw, OPEN,
                                                care=CAREFUL))
            phase = 'retreat'
        retreat = np.array([self._point[0], self._point[1], self.travel_height])
        return self._go(phase, Waypoint(retreat, self._yaw, OPEN))

    def _go(self, phase: str, waypoint: Waypoint) -> Waypoint:
        self._phase = phase
        return waypoint


EXPERTS: dict[str, type[Expert]] = {
    'reach': ReachExpert, 'avoid': AvoidExpert, 'push': PushExpert, 'pick_place': PickPlaceExpert,
}


def make_expert(task: str, *, noise: float = 0.0, seed: int | None = None) -> Expert:
    """Build the scripted expert of ``task``; ``seed`` fixes its random choices and noise."""
    return EXPERTS[check_task(task)](noise=noise, seed=seed)
