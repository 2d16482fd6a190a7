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
Transformer denoiser: action tokens attend to themselves and cross-attend to condition tokens.

The condition tokens are the diffusion step (sinusoidal embedding through an MLP), one token per
observation step and one goal token, each with a learned position embedding. Action tokens carry
their own learned position embedding. Pre-norm decoder layers keep training stable without
warm-up tricks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import torch
from torch import nn

from dp_tt_ros.policies.diffusion.unet1d import sinusoidal_embedding


@dataclass
class TransformerDenoiserConfig:
    """Sizes of the transformer denoiser; stored in ``config.json``."""

    n_layer: int = 4
    n_head: int = 4
    n_emb: int = 128
    p_drop: float = 0.1

    def __post_init__(self) -> None:
        if self.n_layer < 1 or self.n_head < 1 or self.n_emb % self.n_head:
            raise ValueError(f'n_layer {self.n_layer}, n_head {self.n_head}, n_emb {self.n_emb}: '
                             'expected positive sizes with n_emb divisible by n_head')
        if not 0.0 <= self.p_drop < 1.0:
            raise ValueError(f'p_drop is {self.p_drop}; expected 0 <= p_drop < 1')

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'TransformerDenoiserConfig':
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown transformer settings {unknown}; expected some of '
                             f'{sorted(known)}')
        return cls(**dict(data))


class TransformerDenoiser(nn.Module):
    """``(noisy chunk (B, H, d_a), steps (B,), obs tokens (B, To, c), goal token (B, g))``."""

    def __init__(self, action_dim: int, horizon: int, obs_token_dim: int, n_obs_tokens: int,
                 goal_token_dim: int, config: TransformerDenoiserConfig) -> None:
        super().__init__()
        width = config.n_emb
        self.config = config
        self.horizon = horizon
        self.action_in = nn.Linear(action_dim, width)
        self.action_pos = nn.Parameter(torch.zeros(1, horizon, width))
        self.step_mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.Mish(),
                                      nn.Linear(4 * width, width))
        self.obs_in = nn.Linear(obs_token_dim, width)
        self.goal_in = nn.Linear(goal_token_dim, width) if goal_token_dim else None
        n_cond = 1 + n_obs_tokens + (1 if goal_token_dim else 0)
        self.cond_pos = nn.Parameter(torch.zeros(1, n_cond, width))
        layer = nn.TransformerDecoderLayer(width, config.n_head, 4 * width, config.p_drop,
                                           activation='gelu', batch_first=True, norm_first=True)
        self.decoder = nn.TransformerDecoder(layer, config.n_layer)
        self.out_norm = nn.LayerNorm(width)
        self.action_out = nn.Linear(width, action_dim)
        nn.init.normal_(self.action_pos, std=0.02)
        nn.init.normal_(self.cond_pos, std=0.02)

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor, obs_tokens: torch.Tensor,
                goal_token: torch.Tensor | None) -> torch.Tensor:
        if sample.shape[1] != self.horizon:
            raise ValueError(f'sample horizon is {sample.shape[1]}; expected {self.horizon}')
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(sample.shape[0])
        step = self.step_mlp(sinusoidal_embedding(timesteps, self.config.n_emb))[:, None, :]
        cond = [step, self.obs_in(obs_tokens)]
        if self.goal_in is not None:
            if goal_token is None:
                raise ValueError('this denoiser was built with a goal token; expected a goal')
            cond.append(self.goal_in(goal_token)[:, None, :])
        memory = torch.cat(cond, dim=1) + self.cond_pos
        tokens = self.action_in(sample) + self.action_pos
        return self.action_out(self.out_norm(self.decoder(tokens, memory)))
