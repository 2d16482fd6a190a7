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
Exponential moving average of a model's weights, with diffusion_policy's warm-up schedule.

Early in training the weights move fast, so a fixed 0.9999 decay would average mostly the random
initialisation; ``decay = 1 - (1 + step / inv_gamma) ** -power`` starts at 0 (a plain copy) and
rises towards ``max_decay``. The averaged copy is what gets saved as the inference weights.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Keep ``averaged``, an eval-mode copy of a model whose parameters track an EMA."""

    def __init__(self, model: nn.Module, inv_gamma: float = 1.0, power: float = 0.75,
                 min_decay: float = 0.0, max_decay: float = 0.9999) -> None:
        if inv_gamma <= 0 or power <= 0 or not 0.0 <= min_decay <= max_decay <= 1.0:
            raise ValueError(f'EMA settings inv_gamma={inv_gamma}, power={power}, '
                             f'min_decay={min_decay}, max_decay={max_decay} are invalid; expected '
                             'inv_gamma > 0, power > 0 and 0 <= min_decay <= max_decay <= 1')
        self.averaged = copy.deepcopy(model).eval().requires_grad_(False)
        self.inv_gamma = inv_gamma
        self.power = power
        self.min_decay = min_decay
        self.max_decay = max_decay
        self.decay = 0.0

    def decay_at(self, step: int) -> float:
        """EMA decay after ``step`` optimisation steps (0 at the first step: a plain copy)."""
        if step <= 0:
            return 0.0
        value = 1.0 - (1.0 + step / self.inv_gamma) ** -self.power
        return min(self.max_decay, max(self.min_decay, value))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Blend ``model``'s current weights in; buffers (normaliser statistics) are copied."""
        self.decay = self.decay_at(step)
        averaged_params = dict(self.averaged.named_parameters())
        for name, param in model.named_parameters():
            target = averaged_params[name]
            if param.dtype.is_floating_point:
                target.lerp_(param.detach(), 1.0 - self.decay)
            else:
                target.copy_(param)
        averaged_buffers = dict(self.averaged.named_buffers())
        for name, buffer in model.named_buffers():
            averaged_buffers[name].copy_(buffer)
