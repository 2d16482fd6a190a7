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
DDPM forward process and the DDPM / DDIM reverse samplers, written out from the papers.

Forward process (Ho et al. 2020): ``q(a_k | a_{k-1}) = N(sqrt(1 - beta_k) a_{k-1}, beta_k I)``, so
``a_k = sqrt(alpha_bar_k) a_0 + sqrt(1 - alpha_bar_k) eps``. At inference any subset of the
``K_train`` training steps can be visited: between two visited steps ``t > s`` the process is again
Gaussian with ``alpha_bar_t / alpha_bar_s``, which gives the strided DDPM posterior and DDIM
(Song et al. 2021). The step after the last one has ``alpha_bar = 1`` (a clean sample).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

import numpy as np
import torch

BETA_SCHEDULES = ('linear', 'cosine', 'squaredcos_cap_v2')
PREDICTION_TYPES = ('epsilon', 'sample')
SAMPLERS = ('ddpm', 'ddim')
MAX_BETA = 0.999


@dataclass
class NoiseScheduleConfig:
    """Training-time diffusion settings; stored in ``config.json``."""

    num_train_timesteps: int = 100
    beta_schedule: str = 'squaredcos_cap_v2'
    beta_start: float = 1e-4
    beta_end: float = 0.02
    prediction_type: str = 'epsilon'
    clip_sample: bool = True
    clip_sample_range: float = 1.0

    def __post_init__(self) -> None:
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f'beta_schedule {self.beta_schedule!r} is unknown; expected one of '
                             f'{BETA_SCHEDULES}')
        if self.prediction_type not in PREDICTION_TYPES:
            raise ValueError(f'prediction_type {self.prediction_type!r} is unknown; expected one '
                             f'of {PREDICTION_TYPES}')
        if self.num_train_timesteps < 1:
            raise ValueError(f'num_train_timesteps is {self.num_train_timesteps}; expected >= 1')
        if not 0.0 < self.beta_start < self.beta_end < 1.0:
            raise ValueError(f'beta_start {self.beta_start} and beta_end {self.beta_end} must '
                             'satisfy 0 < beta_start < beta_end < 1')

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'NoiseScheduleConfig':
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown noise schedule settings {unknown}; expected some of '
                             f'{sorted(known)}')
        return cls(**dict(data))


def make_betas(schedule: str, num_steps: int, beta_start: float = 1e-4,
               beta_end: float = 0.02) -> np.ndarray:
    """Return ``beta_1 .. beta_K`` (float64) for a named schedule."""
    if schedule == 'linear':
        return np.linspace(beta_start, beta_end, num_steps, dtype=np.float64)
    if schedule == 'cosine':
        # alpha_bar(t) = cos((t + s) / (1 + s) * pi / 2): the un-squared cosine decays slower
        # early on and keeps more signal at mid-range steps.
        return _betas_from_alpha_bar(num_steps, power=1)
    if schedule == 'squaredcos_cap_v2':
        # Nichol & Dhariwal 2021: alpha_bar(t) = cos^2((t + s) / (1 + s) * pi / 2).
        return _betas_from_alpha_bar(num_steps, power=2)
    raise ValueError(f'beta schedule {schedule!r} is unknown; expected one of {BETA_SCHEDULES}')


def _betas_from_alpha_bar(num_steps: int, power: int, offset: float = 0.008) -> np.ndarray:
    """Discretise alpha_bar(t) = cos(...)^power, t in [0, 1], into betas capped at ``MAX_BETA``."""
    times = np.arange(num_steps + 1, dtype=np.float64) / num_steps
    values = np.cos((times + offset) / (1.0 + offset) * np.pi / 2) ** power
    betas = 1.0 - values[1:] / values[:-1]
    return np.clip(betas, 0.0, MAX_BETA)


class NoiseScheduler:
    """
    Noising for training and one reverse step of DDPM or DDIM for sampling.

    Timesteps are 0-based indices ``0 .. K_train - 1`` into ``alpha_bar``; the sampler's "previous"
    step of the last visited timestep is ``-1`` with ``alpha_bar = 1``.
    """

    def __init__(self, config: NoiseScheduleConfig) -> None:
        self.config = config
        betas = make_betas(config.beta_schedule, config.num_train_timesteps, config.beta_start,
                           config.beta_end)
        self.betas = torch.from_numpy(betas)
        self.alpha_bar = torch.from_numpy(np.cumprod(1.0 - betas))

    @property
    def num_train_timesteps(self) -> int:
        return self.config.num_train_timesteps

    def alpha_bar_at(self, timesteps: torch.Tensor) -> torch.Tensor:
        """``alpha_bar`` for 0-based timesteps, with ``alpha_bar(-1) = 1``; float64."""
        padded = torch.cat([torch.ones(1, dtype=torch.float64), self.alpha_bar])
        return padded[timesteps.long().cpu() + 1]

    def add_noise(self, sample: torch.Tensor, noise: torch.Tensor,
                  timesteps: torch.Tensor) -> torch.Tensor:
        """Draw ``a_k ~ q(a_k | a_0)`` for a batch of timesteps ``(B,)``."""
        alpha_bar = self._broadcast(self.alpha_bar_at(timesteps), sample)
        return alpha_bar.sqrt() * sample + (1.0 - alpha_bar).sqrt() * noise

    def training_target(self, sample: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        return noise if self.config.prediction_type == 'epsilon' else sample

    def inference_timesteps(self, num_steps: int) -> list[int]:
        """
        Evenly strided timesteps from ``K_train - 1`` down, ending at ``stride - 1``.

        The first visited step is always the noisiest one, so sampling starts from pure noise
        whatever ``num_steps`` is; ``num_steps == K_train`` visits every step.
        """
        total = self.num_train_timesteps
        if not 1 <= num_steps <= total:
            raise ValueError(f'num_inference_steps is {num_steps}; expected 1 .. {total} '
                             '(the number of training timesteps)')
        stride = total / num_steps
        steps = np.round(np.arange(total, 0.0, -stride)).astype(np.int64) - 1
        return [int(step) for step in steps]

    def split_prediction(self, sample: torch.Tensor, model_output: torch.Tensor,
                         alpha_bar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Return ``(x0, eps)`` implied by the model output at noise level ``alpha_bar``.

        With clipping on, ``x0`` is clipped to the data range and ``eps`` recomputed from the
        clipped ``x0`` so the two stay consistent.
        """
        root_ab, root_one_minus = alpha_bar.sqrt(), (1.0 - alpha_bar).sqrt()
        if self.config.prediction_type == 'epsilon':
            x0 = (sample - root_one_minus * model_output) / root_ab
        else:
            x0 = model_output
        if self.config.clip_sample:
            limit = self.config.clip_sample_range
            x0 = x0.clamp(-limit, limit)
        elif self.config.prediction_type == 'epsilon':
            return x0, model_output
        eps = (sample - root_ab * x0) / root_one_minus.clamp_min(1e-12)
        return x0, eps

    def step(self, sample: torch.Tensor, model_output: torch.Tensor, timestep: int,
             prev_timestep: int, sampler: str = 'ddim', eta: float = 0.0,
             noise: torch.Tensor | None = None) -> torch.Tensor:
        """
        Go from ``timestep`` to ``prev_timestep`` (< timestep, -1 = clean) with one sampler.

        ``ddpm`` uses the exact Gaussian posterior ``q(a_s | a_t, a_0)`` with its variance
        (``fixed_small``); ``ddim`` uses Song et al.'s update with noise scale ``eta`` (``eta=1``
        gives the same variance as ``ddpm``). ``noise`` is the standard normal draw for the
        stochastic part; it is drawn here when needed and not given.
        """
        if sampler not in SAMPLERS:
            raise ValueError(f'sampler {sampler!r} is unknown; expected one of {SAMPLERS}')
        coefficients = self.step_coefficients(timestep, prev_timestep, sampler, eta)
        return self.apply_step(sample, model_output, coefficients, noise)

    def step_coefficients(self, timestep: int, prev_timestep: int, sampler: str,
                          eta: float) -> dict[str, float]:
        """Scalars of one reverse step; depend only on (t, s), so samplers precompute them."""
        if not -1 <= prev_timestep < timestep < self.num_train_timesteps:
            raise ValueError(f'reverse step {timestep} -> {prev_timestep} is invalid; expected '
                             f'-1 <= prev < t < {self.num_train_timesteps}')
        pair = self.alpha_bar_at(torch.tensor([timestep, prev_timestep]))
        ab_t, ab_s = float(pair[0]), float(pair[1])
        alpha_ts = ab_t / ab_s
        if sampler == 'ddpm':
            beta_ts = 1.0 - alpha_ts
            coef_x0 = math.sqrt(ab_s) * beta_ts / (1.0 - ab_t)
            coef_xt = math.sqrt(alpha_ts) * (1.0 - ab_s) / (1.0 - ab_t)
            sigma = math.sqrt(max((1.0 - ab_s) / (1.0 - ab_t) * beta_ts, 0.0))
            return {'ab_t': ab_t, 'x0': coef_x0, 'xt': coef_xt, 'eps': 0.0, 'sigma': sigma}
        if eta < 0.0:
            raise ValueError(f'eta is {eta}; expected eta >= 0')
        sigma = eta * math.sqrt(max((1.0 - ab_s) / (1.0 - ab_t) * (1.0 - alpha_ts), 0.0))
        coef_eps = math.sqrt(max(1.0 - ab_s - sigma ** 2, 0.0))
        return {'ab_t': ab_t, 'x0': math.sqrt(ab_s), 'xt': 0.0, 'eps': coef_eps, 'sigma': sigma}

    def apply_step(self, sample: torch.Tensor, model_output: torch.Tensor,
                   coefficients: Mapping[str, float],
                   noise: torch.Tensor | None = None) -> torch.Tensor:
        """Apply precomputed step coefficients to one sample and model output."""
        alpha_bar = torch.tensor(coefficients['ab_t'], dtype=sample.dtype)
        x0, eps = self.split_prediction(sample, model_output, alpha_bar)
        result = coefficients['x0'] * x0
        if coefficients['xt']:
            result = result + coefficients['xt'] * sample
        if coefficients['eps']:
            result = result + coefficients['eps'] * eps
        if coefficients['sigma'] > 0.0:
            if noise is None:
                noise = torch.randn_like(sample)
            result = result + coefficients['sigma'] * noise
        return result

    @staticmethod
    def _broadcast(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(device=like.device, dtype=like.dtype).reshape(
            -1, *([1] * (like.dim() - 1)))
