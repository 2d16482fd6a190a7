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
Where the in-process evaluator gets its action chunks: a trained policy or the scripted expert.

Both answer the same small protocol, so the evaluator's time alignment, safety filtering and
metrics are exercised identically for a learned policy and for the expert reference.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from dp_tt_ros.control.joints import reorder_joints
from dp_tt_ros.policies.base import Policy
from dp_tt_ros.robot import COMMAND_JOINTS


class ChunkSource(Protocol):
    """Produce ``(B, H, 8)`` chunks in ``robot.COMMAND_JOINTS`` order from observations."""

    obs_keys: list[str]
    image_size: tuple[int, int] | None
    uses_goal: bool
    horizon: int
    n_action_steps: int
    n_obs_steps: int
    dt: float

    def start_episodes(self, envs: Sequence[Any], seeds: Sequence[int]) -> None:
        """Forget per-episode state; ``envs[i]`` was just reset with ``seeds[i]``."""

    def predict(self, obs: dict[str, np.ndarray], goal: np.ndarray | None,
                env_indices: Sequence[int]) -> np.ndarray:
        """Return chunks for the envs ``env_indices`` (rows of ``obs`` and ``goal``)."""


class PolicySource:
    """A trained :class:`Policy`; its chunk columns are reordered to the command layout."""

    def __init__(self, policy: Policy) -> None:
        spec = policy.spec
        self.policy = policy
        self.obs_keys = list(spec.obs_shapes)
        self.image_size = None
        if spec.image_keys:
            height, width = spec.obs_shapes[spec.image_keys[0]][:2]
            self.image_size = (int(height), int(width))
        self.uses_goal = spec.goal_dim > 0
        self.horizon = spec.horizon
        self.n_action_steps = spec.n_action_steps
        self.n_obs_steps = spec.n_obs_steps
        self.dt = spec.dt
        self.joint_names = list(spec.joint_names)

    def start_episodes(self, envs: Sequence[Any], seeds: Sequence[int]) -> None:
        self.policy.reset()

    def predict(self, obs: dict[str, np.ndarray], goal: np.ndarray | None,
                env_indices: Sequence[int]) -> np.ndarray:
        self.policy.track_rows(env_indices)
        chunks = np.asarray(self.policy.predict_action(obs, goal if self.uses_goal else None))
        return np.stack([reorder_joints(self.joint_names, chunk, COMMAND_JOINTS)
                         for chunk in chunks])


class ExpertSource:
    """
    The task's scripted expert as a chunk source: a reference run of the whole evaluator.

    The expert answers one action per observation, so its chunk repeats that action ``horizon``
    times and it replans every tick (``n_action_steps = 1``): without injected latency the env
    then receives exactly the expert's action, and with latency the same stale-row dropping
    applies as for a learned policy.
    """

    def __init__(self, task: str, noise: float = 0.0, seed: int = 0, horizon: int = 16,
                 dt: float = 0.1) -> None:
        from dp_tt_ros.sim.experts import make_expert
        self._make_expert = make_expert
        self.task = task
        self.noise = noise
        self.seed = seed
        self.obs_keys = ['joint_pos', 'joint_vel', 'object_state', 'goal']
        self.image_size = None
        self.uses_goal = True
        self.horizon = horizon
        self.n_action_steps = 1
        self.n_obs_steps = 1
        self.dt = dt
        self._experts: list[Any] = []

    def start_episodes(self, envs: Sequence[Any], seeds: Sequence[int]) -> None:
        self._experts = []
        for env, seed in zip(envs, seeds):
            expert = self._make_expert(self.task, noise=self.noise, seed=self.seed + seed)
            expert.reset(env)
            self._experts.append(expert)

    def predict(self, obs: dict[str, np.ndarray], goal: np.ndarray | None,
                env_indices: Sequence[int]) -> np.ndarray:
        chunks = []
        for row, env_index in enumerate(env_indices):
            latest = {key: values[row, -1] for key, values in obs.items()}
            action = np.asarray(self._experts[env_index].act(latest), dtype=float)
            chunks.append(np.repeat(action[None, :], self.horizon, axis=0))
        return np.stack(chunks)
