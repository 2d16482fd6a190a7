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
The one policy interface shared by Diffusion Policy, the Trajectory Transformer and BC.

The evaluator, the benchmarks and the ROS policy node only ever talk to :class:`Policy`.
Inference is split in two so that the perception node can run the encoders and the policy node
the action head: ``predict_action(obs, goal) == act(encode_observations(obs), goal)``.

Shapes (B = batch, To = ``n_obs_steps``, H = ``horizon``, d_a = ``action_dim``):

* ``obs``: mapping ``key -> array (B, To, *shape)``; low-dim keys are float32, image keys are
  uint8 ``(B, To, height, width, 3)`` RGB.
* ``goal``: ``(B, goal_dim)`` float32, or ``None`` for an unconditional prediction.
* context (encoder output): ``(B, To, context_dim)`` float32.
* action chunk: ``(B, H, d_a)`` float32 in robot units (radians, gripper metres). Row ``i`` is the
  joint target for time ``t_obs + (i + 1) * dt``, where ``t_obs`` is the capture time of the
  newest observation.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from dp_tt_ros.robot import COMMAND_JOINTS


@dataclass
class PolicySpec:
    """What a policy consumes and produces; stored in every checkpoint's ``config.json``."""

    policy_type: str
    obs_shapes: dict[str, list[int]]
    image_keys: list[str] = field(default_factory=list)
    goal_dim: int = 0
    action_dim: int = len(COMMAND_JOINTS)
    horizon: int = 16
    n_action_steps: int = 8
    n_obs_steps: int = 2
    dt: float = 0.1
    joint_names: list[str] = field(default_factory=lambda: list(COMMAND_JOINTS))

    @property
    def lowdim_keys(self) -> list[str]:
        return [key for key in self.obs_shapes if key not in self.image_keys]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'PolicySpec':
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown policy spec fields {unknown}; '
                             f'expected some of {sorted(known)}')
        return cls(**dict(data))


def config_spec(data: Mapping[str, Any], known: set[str], family: str) -> PolicySpec:
    """Check a policy config's top-level keys and return its spec (a PolicySpec or its dict)."""
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f'unknown {family} settings {unknown}; expected some of {sorted(known)}')
    if 'spec' not in data:
        raise ValueError(f'{family} config lacks "spec"')
    spec = data['spec']
    return spec if isinstance(spec, PolicySpec) else PolicySpec.from_dict(spec)


class Policy(nn.Module, ABC):
    """Observation history (+ goal) in, action chunk (H x d_a) out. Batched, numpy at the edges."""

    spec: PolicySpec

    @property
    def horizon(self) -> int:
        return self.spec.horizon

    @property
    def n_action_steps(self) -> int:
        return self.spec.n_action_steps

    @property
    def n_obs_steps(self) -> int:
        return self.spec.n_obs_steps

    @property
    def dt(self) -> float:
        return self.spec.dt

    @property
    def action_dim(self) -> int:
        return self.spec.action_dim

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    @abstractmethod
    def context_dim(self) -> int:
        """Width of one observation step's encoded features."""

    @abstractmethod
    def encode_observations(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Normalise and encode an observation history into a ``(B, To, context_dim)`` context."""

    @abstractmethod
    def act(self, context: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        """Produce an action chunk ``(B, H, d_a)`` in robot units from an encoded context."""

    @abstractmethod
    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Training loss on one batch from the policy's training dataset."""

    @abstractmethod
    def config_dict(self) -> dict[str, Any]:
        """Everything needed to rebuild this policy's modules (written to ``config.json``)."""

    @classmethod
    @abstractmethod
    def from_config(cls, config: Mapping[str, Any]) -> 'Policy':
        """Rebuild an untrained policy with the same architecture as ``config_dict`` described."""

    def predict_action(self, obs: Mapping[str, np.ndarray],
                       goal: np.ndarray | None = None) -> np.ndarray:
        return self.act(self.encode_observations(obs), goal)

    def set_inference_options(self, **options: Any) -> None:
        """Change inference-time settings (K, sampler, guidance, beam width...) by name."""
        if options:
            raise ValueError(f'{type(self).__name__} has no inference options {sorted(options)}')

    def reset(self) -> None:
        """Forget per-episode state; stateless policies need nothing."""

    def track_rows(self, episode_ids: Sequence[int]) -> None:
        """Name the episode of each row of the next ``act``; stateless policies ignore it."""
