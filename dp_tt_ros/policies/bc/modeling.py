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
Behaviour cloning: the Diffusion Policy encoders and a deterministic MLP head, MSE loss.

The baseline shares everything with Diffusion Policy except the action head, so a gap between
the two measures what the generative head buys. Regressing with MSE averages the demonstrations'
modes (left and right around an obstacle become "straight through it"), which is the behaviour the
comparison is meant to expose.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dp_tt_ros.policies.base import Policy, PolicySpec
from dp_tt_ros.policies.bc.configuration import BCConfig
from dp_tt_ros.policies.encoders import (encode_history, ObservationEncoder,
                                         prepare_observations)
from dp_tt_ros.policies.normalizer import fit_policy_normalizer, Normalizer, spec_normalizer


class BCPolicy(Policy):
    """Observation history (+ goal) -> normalised action chunk through an MLP."""

    def __init__(self, config: BCConfig, normalizer: Normalizer | None = None) -> None:
        super().__init__()
        self.config = config
        self.spec = config.spec
        spec = config.spec
        self.normalizer = spec_normalizer(spec, normalizer)
        self.encoder = ObservationEncoder(spec, config.encoder)
        self.goal_project = (nn.Linear(spec.goal_dim, config.goal_embed_dim)
                             if spec.goal_dim else None)
        width = spec.n_obs_steps * self.encoder.output_dim + (
            config.goal_embed_dim if spec.goal_dim else 0)
        layers: list[nn.Module] = []
        for hidden in config.hidden_dims:
            layers += [nn.Linear(width, hidden), nn.Mish(), nn.Dropout(config.dropout)]
            width = hidden
        layers.append(nn.Linear(width, spec.horizon * spec.action_dim))
        self.head = nn.Sequential(*layers)

    @classmethod
    def build(cls, store_or_stats: Mapping[str, Any], spec: PolicySpec,
              **config: Any) -> 'BCPolicy':
        """Create an untrained policy whose normaliser is fitted on raw data."""
        return cls(BCConfig.from_dict({'spec': spec, **config}),
                   fit_policy_normalizer(store_or_stats, spec))

    def config_dict(self) -> dict[str, Any]:
        return self.config.to_dict()

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> 'BCPolicy':
        return cls(BCConfig.from_dict(config))

    @property
    def context_dim(self) -> int:
        return self.encoder.output_dim

    def predict_normalized(self, context: torch.Tensor, goal: torch.Tensor | None) -> torch.Tensor:
        """Normalised chunk ``(B, H, d_a)`` from a context and a normalised goal."""
        features = context.flatten(1)
        if self.goal_project is not None:
            if goal is None:
                raise ValueError(f'this BC policy is goal-conditioned; expected a goal of '
                                 f'shape (B, {self.spec.goal_dim})')
            features = torch.cat([features, self.goal_project(goal)], dim=-1)
        return self.head(features).reshape(-1, self.horizon, self.action_dim)

    def encode_observations(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return encode_history(obs, self.spec, self.normalizer, self.encoder, self.device)

    def act(self, context: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        with torch.inference_mode():
            context_t = torch.as_tensor(np.asarray(context, dtype=np.float32),
                                        device=self.device)
            expected = (self.n_obs_steps, self.context_dim)
            if context_t.dim() != 3 or tuple(context_t.shape[1:]) != expected:
                raise ValueError(f'context has shape {tuple(context_t.shape)}; expected (B, '
                                 f'{expected[0]}, {expected[1]})')
            goal_t = None
            if goal is not None and self.goal_project is not None:
                goal_t = torch.as_tensor(np.asarray(goal, dtype=np.float32), device=self.device)
                if tuple(goal_t.shape) != (context_t.shape[0], self.spec.goal_dim):
                    raise ValueError(f'goal has shape {tuple(goal_t.shape)}; expected '
                                     f'({context_t.shape[0]}, {self.spec.goal_dim})')
                goal_t = self.normalizer.normalize('goal', goal_t)
            # Like DP's clipped samples, stay inside the demonstrated action range: a regression
            # overshooting it (gripper wider than fully open) gets whole chunks rejected.
            chunk = self.predict_normalized(context_t, goal_t).clamp(-1.0, 1.0)
            return self.normalizer.unnormalize('action', chunk).cpu().numpy()

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        device = self.device
        obs = prepare_observations(batch, self.spec, self.normalizer, device, prefix='obs.')
        goal = None
        if self.goal_project is not None:
            goal = self.normalizer.normalize('goal', batch['goal'].to(device).float())
        target = self.normalizer.normalize('action', batch['action'].to(device).float())
        if target.shape[1:] != (self.horizon, self.action_dim):
            raise ValueError(f'batch action has shape {tuple(target.shape)}; expected '
                             f'(B, {self.horizon}, {self.action_dim})')
        return F.mse_loss(self.predict_normalized(self.encoder(obs), goal), target)
