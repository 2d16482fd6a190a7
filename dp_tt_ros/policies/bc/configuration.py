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

"""Everything that defines a BC policy; round-trips through ``config.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from dp_tt_ros.policies.base import config_spec, PolicySpec
from dp_tt_ros.policies.encoders import EncoderConfig


@dataclass
class BCConfig:
    """Spec, encoder (the same as Diffusion Policy's) and the MLP head's widths."""

    spec: PolicySpec
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    hidden_dims: list[int] = field(default_factory=lambda: [256, 256])
    goal_embed_dim: int = 32
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.spec.policy_type != 'bc':
            raise ValueError(f"spec.policy_type is {self.spec.policy_type!r}; expected 'bc'")
        if not self.hidden_dims or min(self.hidden_dims) < 1:
            raise ValueError(f'hidden_dims {self.hidden_dims} is invalid; expected positive '
                             'widths')
        if self.goal_embed_dim < 1:
            raise ValueError(f'goal_embed_dim is {self.goal_embed_dim}; expected >= 1')
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f'dropout is {self.dropout}; expected 0 <= p < 1')

    def to_dict(self) -> dict[str, Any]:
        return {'spec': self.spec.to_dict(), 'encoder': self.encoder.to_dict(),
                'hidden_dims': list(self.hidden_dims), 'goal_embed_dim': self.goal_embed_dim,
                'dropout': self.dropout}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'BCConfig':
        """Parse a (possibly partial) config; sections default when absent."""
        known = {'spec', 'encoder', 'hidden_dims', 'goal_embed_dim', 'dropout'}
        return cls(spec=config_spec(data, known, 'bc'),
                   encoder=EncoderConfig.from_dict(data.get('encoder', {})),
                   hidden_dims=[int(dim) for dim in data.get('hidden_dims', [256, 256])],
                   goal_embed_dim=int(data.get('goal_embed_dim', 32)),
                   dropout=float(data.get('dropout', 0.0)))
