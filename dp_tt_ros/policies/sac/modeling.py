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
The SAC actor as a :class:`Policy`: our encoder, SB3's actor MLP and mean head, no SB3 needed.

Training (``dp_tt_ros.policies.sac.training``) runs stable-baselines3, whose ``.zip`` files are
pickles; the deterministic part of its actor (features extractor, ``latent_pi`` MLP, ``mu``
head, ``tanh``) is copied into this module and saved like every other policy, so loading it
executes no code. Its output is ``tanh(mu(...))`` scaled to joint offsets from the measured
position: absolute joint targets, like DP and BC.

The context of one step is ``[encoder features | raw joint_pos]``: the policy node only sees the
context, and the absolute target needs the measured position the offsets apply to.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from dp_tt_ros.policies.base import Policy
from dp_tt_ros.policies.encoders import ObservationEncoder, prepare_observations
from dp_tt_ros.policies.normalizer import Normalizer
from dp_tt_ros.policies.sac.configuration import REFERENCE_KEY, SACConfig


def normalizer_fields(config: SACConfig) -> dict[str, list[int]]:
    """Fields the SAC features normalise: the low-dim observation keys and ``goal``."""
    spec = config.spec
    shapes = {key: list(spec.obs_shapes[key]) for key in spec.lowdim_keys}
    if spec.goal_dim:
        shapes['goal'] = [spec.goal_dim]
    return shapes


def absolute_targets(reference: torch.Tensor, unit_delta: torch.Tensor,
                     max_delta: float) -> torch.Tensor:
    """
    Joint targets ``(B, d_a)``: ``reference + max_delta * unit_delta`` on the leading joints.

    The trailing ``d_a - unit_delta.shape[-1]`` joints (the gripper) keep ``reference``. The
    training environment and the exported policy both call this, so they agree bit for bit.
    """
    count = unit_delta.shape[-1]
    moved = reference[:, :count] + max_delta * unit_delta
    return torch.cat([moved, reference[:, count:]], dim=-1)


class SACFeatures(nn.Module):
    """
    Normalised observations through :class:`ObservationEncoder`, plus the normalised goal.

    Also the body of the stable-baselines3 features extractor, so actor and export share it.
    """

    def __init__(self, config: SACConfig, normalizer: Normalizer | None = None) -> None:
        super().__init__()
        self.spec = config.spec
        fields = normalizer_fields(config)
        self.normalizer = normalizer or Normalizer(fields)
        if self.normalizer.shapes() != fields:
            raise ValueError(f'normaliser fields {self.normalizer.shapes()} do not match the '
                             f'spec; expected {fields}')
        self.encoder = ObservationEncoder(config.spec, config.encoder)
        self.context_dim = self.encoder.output_dim + self.spec.action_dim
        self.output_dim = self.spec.n_obs_steps * self.encoder.output_dim + self.spec.goal_dim

    def context(self, obs: Mapping[str, Any]) -> torch.Tensor:
        """Raw history ``key -> (B, To', *shape)`` to ``(B, To, context_dim)``."""
        device = self.normalizer.fields[REFERENCE_KEY].scale.device
        prepared = prepare_observations(obs, self.spec, self.normalizer, device)
        steps = self.spec.n_obs_steps
        reference = torch.as_tensor(obs[REFERENCE_KEY], device=device).float()
        return torch.cat([self.encoder(prepared), reference[:, -steps:]], dim=-1)

    def forward(self, context: torch.Tensor, goal: torch.Tensor | None) -> torch.Tensor:
        """Actor input ``(B, output_dim)`` from a context and a raw goal."""
        features = context[..., :self.encoder.output_dim].flatten(1)
        if self.spec.goal_dim:
            if goal is None:
                raise ValueError(f'this SAC policy is goal-conditioned; expected a goal of '
                                 f'shape (B, {self.spec.goal_dim})')
            features = torch.cat([features, self.normalizer.normalize('goal', goal.float())],
                                 dim=-1)
        return features


def actor_mlp(in_dim: int, net_arch: list[int]) -> nn.Sequential:
    """Linear + ReLU per width: the layout of stable-baselines3's ``create_mlp`` (its names)."""
    layers: list[nn.Module] = []
    for width in net_arch:
        layers += [nn.Linear(in_dim, width), nn.ReLU()]
        in_dim = width
    return nn.Sequential(*layers)


class SACPolicy(Policy):
    """Deterministic SAC actor: context (+ goal) -> one absolute joint target per env."""

    def __init__(self, config: SACConfig, normalizer: Normalizer | None = None) -> None:
        super().__init__()
        self.config = config
        self.spec = config.spec
        self.features = SACFeatures(config, normalizer)
        self.latent_pi = actor_mlp(self.features.output_dim, config.net_arch)
        self.mu = nn.Linear(config.net_arch[-1], config.n_delta_joints)

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> 'SACPolicy':
        return cls(SACConfig.from_dict(config))

    @property
    def context_dim(self) -> int:
        return self.features.context_dim

    def unit_action(self, context: torch.Tensor, goal: torch.Tensor | None) -> torch.Tensor:
        """SB3's deterministic action: ``tanh`` of the Gaussian mean, ``(B, n_delta_joints)``."""
        return torch.tanh(self.mu(self.latent_pi(self.features(context, goal))))

    def encode_observations(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        with torch.inference_mode():
            return self.features.context(obs).float().cpu().numpy()

    def act(self, context: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        with torch.inference_mode():
            context_t = torch.as_tensor(np.asarray(context, dtype=np.float32),
                                        device=self.device)
            expected = (self.n_obs_steps, self.context_dim)
            if context_t.dim() != 3 or tuple(context_t.shape[1:]) != expected:
                raise ValueError(f'context has shape {tuple(context_t.shape)}; expected (B, '
                                 f'{expected[0]}, {expected[1]})')
            goal_t = None
            if goal is not None and self.spec.goal_dim:
                goal_t = torch.as_tensor(np.asarray(goal, dtype=np.float32), device=self.device)
                if tuple(goal_t.shape) != (context_t.shape[0], self.spec.goal_dim):
                    raise ValueError(f'goal has shape {tuple(goal_t.shape)}; expected '
                                     f'({context_t.shape[0]}, {self.spec.goal_dim})')
            reference = context_t[:, -1, self.features.encoder.output_dim:]
            targets = absolute_targets(reference, self.unit_action(context_t, goal_t),
                                       self.config.max_delta)
            return targets[:, None, :].cpu().numpy()

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError('SAC learns online from its own rollouts, not from an episode '
                                  'store: dp-tt-ros train --policy sac --task reach --out DIR')
