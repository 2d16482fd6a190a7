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
Gymnasium environments over :class:`PandaWorld`: one control step = 0.1 s of physics.

Actions are absolute joint targets (7 arm joints + gripper opening, ``robot.COMMAND_JOINTS``)
held for one control period, exactly what the policies emit row by row from their chunks.

``object_state`` per task (float32): ``reach`` (9) the three distractor marker positions;
``avoid`` (6) pillar centre and size; ``push`` (7) cube position + quaternion (x, y, z, w);
``pick_place`` (13) red cube position + quaternion, then the two distractor cube positions.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import gymnasium
import numpy as np
from gymnasium import spaces

from dp_tt_ros.robot import ACTION_DIM, PANDA_LIMITS
from dp_tt_ros.sim.scenes import SCENES
from dp_tt_ros.sim.world import PandaWorld, check_task

CONTROL_DT = 0.1
PHYSICS_HZ = 240.0
PHYSICS_STEPS_PER_CONTROL = round(CONTROL_DT * PHYSICS_HZ)
DEFAULT_MAX_STEPS: dict[str, int] = {'reach': 60, 'avoid': 80, 'push': 150, 'pick_place': 200}


class PandaTaskEnv(gymnasium.Env):
    """One task as a Gymnasium environment; ``env.world`` is the underlying :class:`PandaWorld`."""

    metadata = {'render_modes': ['rgb_array'], 'render_fps': round(1 / CONTROL_DT)}

    def __init__(self, task: str, *, seed: int | None = None,
                 image_size: tuple[int, int] | None = None, gui: bool = False,
                 max_steps: int | None = None) -> None:
        check_task(task)
        if image_size is not None:
            image_size = (int(image_size[0]), int(image_size[1]))
            if min(image_size) < 1:
                raise ValueError(f'image_size must be (height, width) > 0, got {image_size}')
        if max_steps is not None and max_steps < 1:
            raise ValueError(f'max_steps must be >= 1, got {max_steps}')
        self.task = task
        self.image_size = image_size
        self.max_steps = max_steps or DEFAULT_MAX_STEPS[task]
        self.control_dt = CONTROL_DT
        self.render_mode = 'rgb_array'
        self.world = PandaWorld(task, gui=gui, physics_hz=PHYSICS_HZ, seed=seed)
        self.observation_space = self._make_observation_space()
        self.action_space = spaces.Box(PANDA_LIMITS.lower.astype(np.float32),
                                       PANDA_LIMITS.upper.astype(np.float32), dtype=np.float32)
        self._steps = 0

    def _make_observation_space(self) -> spaces.Dict:
        inf = np.inf
        k = SCENES[self.task].object_state_dim
        entries: dict[str, spaces.Space] = {
            'joint_pos': spaces.Box(PANDA_LIMITS.lower.astype(np.float32),
                                    PANDA_LIMITS.upper.astype(np.float32), dtype=np.float32),
            'joint_vel': spaces.Box(-inf, inf, (ACTION_DIM,), np.float32),
            'object_state': spaces.Box(-inf, inf, (k,), np.float32),
            'goal': spaces.Box(-inf, inf, (3,), np.float32),
        }
        if self.image_size is not None:
            entries['image'] = spaces.Box(0, 255, (*self.image_size, 3), np.uint8)
        return spaces.Dict(entries)

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[dict[str, np.ndarray], dict]:
        """Start a new episode; with ``seed`` the scene is exactly reproducible."""
        super().reset(seed=seed)
        self.world.reset(seed)
        self._steps = 0
        return self._observation(), asdict(self.world.status())

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        """Hold the joint targets for one control period; terminate on success."""
        action = np.asarray(action, dtype=float)
        if action.shape != (ACTION_DIM,):
            raise ValueError(f'action must have shape ({ACTION_DIM},), got {action.shape}')
        self.world.set_command(action)
        self.world.step_physics(PHYSICS_STEPS_PER_CONTROL)
        self._steps += 1
        status = self.world.status()
        truncated = self._steps >= self.max_steps and not status.success
        return (self._observation(), float(status.reward), status.success, truncated,
                asdict(status))

    def _observation(self) -> dict[str, np.ndarray]:
        return self.world.observation(self.image_size)

    def render(self) -> np.ndarray:
        height, width = self.image_size or (480, 640)
        return self.world.render(width, height)

    def close(self) -> None:
        self.world.close()


def make_env(task: str, *, seed: int | None = None, image_size: tuple[int, int] | None = None,
             gui: bool = False, max_steps: int | None = None) -> PandaTaskEnv:
    """Build the environment for ``task`` (one of ``world.TASKS``)."""
    return PandaTaskEnv(task, seed=seed, image_size=image_size, gui=gui, max_steps=max_steps)
