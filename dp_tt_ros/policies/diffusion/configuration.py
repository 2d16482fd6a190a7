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

"""Everything that defines a Diffusion Policy; round-trips through ``config.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from dp_tt_ros.policies.base import config_spec, PolicySpec
from dp_tt_ros.policies.diffusion.schedulers import SAMPLERS, NoiseScheduleConfig
from dp_tt_ros.policies.diffusion.transformer_denoiser import TransformerDenoiserConfig
from dp_tt_ros.policies.diffusion.unet1d import UnetConfig
from dp_tt_ros.policies.encoders import EncoderConfig

DENOISERS = ('unet', 'transformer')
BACKENDS = ('reference', 'precomputed', 'packed', 'traced')
PRECISIONS = {'float32': torch.float32, 'bfloat16': torch.bfloat16}


@dataclass
class InferenceOptions:
    """
    Inference-time settings that need no retraining (see ``set_inference_options``).

    ``guidance_scale`` w: 1 = goal-conditioned only, 0 = unconditional only, otherwise both passes
    are combined as ``eps_u + w (eps_c - eps_u)``. ``backend`` picks how the U-Net runs each step:
    ``reference`` recomputes the condition every step (as diffusion_policy does), ``precomputed``
    evaluates all FiLM vectors once per chunk, ``packed`` adds the channels-last matmul network,
    ``traced`` (default) also freezes it into a TorchScript graph. On a CUDA device ``packed``
    runs as ``precomputed``, and ``traced`` captures the whole denoising loop as one CUDA graph.
    ``precision`` is the dtype of the packed network's matmuls (on CUDA: autocast). ``compile``
    lets TorchInductor fuse the packed U-Net inside that CUDA graph. The transformer denoiser runs
    ``reference`` on CPU; on CUDA, ``traced`` graphs it too.
    """

    num_inference_steps: int = 10
    sampler: str = 'ddim'
    eta: float = 0.0
    guidance_scale: float = 1.0
    backend: str = 'traced'
    precision: str = 'float32'
    compile: bool = True

    def validate(self, num_train_timesteps: int) -> None:
        if not 1 <= self.num_inference_steps <= num_train_timesteps:
            raise ValueError(f'num_inference_steps is {self.num_inference_steps}; expected '
                             f'1 .. {num_train_timesteps}')
        if self.sampler not in SAMPLERS:
            raise ValueError(f'sampler {self.sampler!r} is unknown; expected one of {SAMPLERS}')
        if self.eta < 0.0:
            raise ValueError(f'eta is {self.eta}; expected eta >= 0')
        if self.guidance_scale < 0.0:
            raise ValueError(f'guidance_scale is {self.guidance_scale}; expected w >= 0')
        if self.backend not in BACKENDS:
            raise ValueError(f'backend {self.backend!r} is unknown; expected one of {BACKENDS}')
        if not isinstance(self.compile, bool):
            raise ValueError(f'compile is {self.compile!r}; expected true or false')
        if self.precision not in PRECISIONS:
            raise ValueError(f'precision {self.precision!r} is unknown; expected one of '
                             f'{sorted(PRECISIONS)}')


@dataclass
class DiffusionConfig:
    """Spec, encoder, noise schedule, denoiser, goal conditioning and default inference options."""

    spec: PolicySpec
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    noise: NoiseScheduleConfig = field(default_factory=NoiseScheduleConfig)
    denoiser: str = 'unet'
    unet: UnetConfig = field(default_factory=UnetConfig)
    transformer: TransformerDenoiserConfig = field(default_factory=TransformerDenoiserConfig)
    goal_embed_dim: int = 32
    goal_dropout: float = 0.15
    inference: InferenceOptions = field(default_factory=InferenceOptions)

    def __post_init__(self) -> None:
        if self.spec.policy_type != 'diffusion':
            raise ValueError(f'spec.policy_type is {self.spec.policy_type!r}; expected '
                             "'diffusion'")
        if self.denoiser not in DENOISERS:
            raise ValueError(f'denoiser {self.denoiser!r} is unknown; expected one of '
                             f'{DENOISERS}')
        if not 0.0 <= self.goal_dropout < 1.0:
            raise ValueError(f'goal_dropout is {self.goal_dropout}; expected 0 <= p < 1')
        if self.goal_embed_dim < 1:
            raise ValueError(f'goal_embed_dim is {self.goal_embed_dim}; expected >= 1')
        self.inference.validate(self.noise.num_train_timesteps)

    def to_dict(self) -> dict[str, Any]:
        return {
            'spec': self.spec.to_dict(),
            'encoder': self.encoder.to_dict(),
            'noise': self.noise.to_dict(),
            'denoiser': self.denoiser,
            'unet': self.unet.to_dict(),
            'transformer': self.transformer.to_dict(),
            'goal_embed_dim': self.goal_embed_dim,
            'goal_dropout': self.goal_dropout,
            'inference': dict(vars(self.inference)),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'DiffusionConfig':
        """Parse a (possibly partial) config; sub-sections default when absent."""
        known = {'spec', 'encoder', 'noise', 'denoiser', 'unet', 'transformer', 'goal_embed_dim',
                 'goal_dropout', 'inference'}
        spec = config_spec(data, known, 'diffusion')
        inference = dict(data.get('inference', {}))
        unknown_inference = sorted(set(inference) - set(vars(InferenceOptions())))
        if unknown_inference:
            raise ValueError(f'unknown inference options {unknown_inference}; expected some of '
                             f'{sorted(vars(InferenceOptions()))}')
        return cls(
            spec=spec,
            encoder=EncoderConfig.from_dict(data.get('encoder', {})),
            noise=NoiseScheduleConfig.from_dict(data.get('noise', {})),
            denoiser=str(data.get('denoiser', 'unet')),
            unet=UnetConfig.from_dict(data.get('unet', {})),
            transformer=TransformerDenoiserConfig.from_dict(data.get('transformer', {})),
            goal_embed_dim=int(data.get('goal_embed_dim', 32)),
            goal_dropout=float(data.get('goal_dropout', 0.15)),
            inference=InferenceOptions(**inference),
        )
