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

"""Everything that defines an exported SAC actor; round-trips through ``config.json``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from dp_tt_ros.policies.base import config_spec, PolicySpec
from dp_tt_ros.policies.encoders import EncoderConfig

REFERENCE_KEY = 'joint_pos'


@dataclass
class SACConfig:
    """
    Spec, encoder (the same as DP's and BC's), actor MLP widths and the action bound.

    The actor emits ``tanh`` values in [-1, 1] for the first ``n_delta_joints`` action dimensions;
    times ``max_delta`` (rad) they are offsets from the measured ``joint_pos``. The remaining
    dimensions (the gripper) hold their measured position. SAC acts one step at a time, so the
    spec's ``horizon``, ``n_action_steps`` and ``n_obs_steps`` are all 1.
    """

    spec: PolicySpec
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    net_arch: list[int] = field(default_factory=lambda: [128, 128])
    max_delta: float = 0.1
    n_delta_joints: int = 7

    def __post_init__(self) -> None:
        spec = self.spec
        if spec.policy_type != 'sac':
            raise ValueError(f"spec.policy_type is {spec.policy_type!r}; expected 'sac'")
        steps = (spec.horizon, spec.n_action_steps, spec.n_obs_steps)
        if steps != (1, 1, 1):
            raise ValueError(f'horizon, n_action_steps and n_obs_steps are {steps}; SAC acts one '
                             'step at a time, expected (1, 1, 1)')
        if spec.image_keys:
            raise ValueError(f'image keys {spec.image_keys} are not supported; SAC here is '
                             'low-dim')
        if list(spec.obs_shapes.get(REFERENCE_KEY, [])) != [spec.action_dim]:
            raise ValueError(f'obs_shapes {spec.obs_shapes} lack {REFERENCE_KEY!r} of shape '
                             f'[{spec.action_dim}]; the actions are offsets from it')
        if not 1 <= self.n_delta_joints <= spec.action_dim:
            raise ValueError(f'n_delta_joints is {self.n_delta_joints}; expected 1 to '
                             f'{spec.action_dim}')
        if not self.max_delta > 0:
            raise ValueError(f'max_delta is {self.max_delta}; expected > 0 rad')
        if not self.net_arch or min(self.net_arch) < 1:
            raise ValueError(f'net_arch {self.net_arch} is invalid; expected positive widths')

    def to_dict(self) -> dict[str, Any]:
        return {'spec': self.spec.to_dict(), 'encoder': self.encoder.to_dict(),
                'net_arch': list(self.net_arch), 'max_delta': self.max_delta,
                'n_delta_joints': self.n_delta_joints}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'SACConfig':
        """Parse a (possibly partial) config; sections default when absent."""
        known = {'spec', 'encoder', 'net_arch', 'max_delta', 'n_delta_joints'}
        return cls(spec=config_spec(data, known, 'sac'),
                   encoder=EncoderConfig.from_dict(data.get('encoder', {})),
                   net_arch=[int(dim) for dim in data.get('net_arch', [128, 128])],
                   max_delta=float(data.get('max_delta', 0.1)),
                   n_delta_joints=int(data.get('n_delta_joints', 7)))
