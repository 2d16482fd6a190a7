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

"""Settings that define a Trajectory Transformer policy; stored flat in ``config.json``."""

from __future__ import annotations

from typing import Any, Mapping

from dp_tt_ros.policies.transformer.tokenizer import STRATEGIES

# Loss defaults follow trajectory-transformer's offline config (100 bins, action loss weight 5).
# The GPT is smaller than its 4 layers x 128 wide, and the window holds 5 transitions: the shipped
# reach and avoid models have this size, which plans within one 10 Hz control period.
MODEL_DEFAULTS: dict[str, Any] = {
    'n_bins': 100,
    'strategy': 'uniform',
    'window_transitions': 5,
    'n_layer': 3,
    'n_head': 4,
    'n_embd': 64,
    'dropout': 0.1,
    'discount': 0.99,
    'action_weight': 5.0,
    'reward_weight': 1.0,
    'value_weight': 1.0,
    'condition_dropout': 0.25,
    'relative_actions': False,
    'relative_goal': False,
    'ordinal_embedding': True,
}
GOAL_KEY = 'goal'
# With ``relative_actions`` the action tokens encode joint targets minus this key's values.
JOINT_KEY = 'joint_pos'


def model_settings(config: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``config`` over the defaults and reject unknown names or out-of-range values."""
    unknown = sorted(set(config) - set(MODEL_DEFAULTS))
    if unknown:
        raise ValueError(f'unknown transformer settings {unknown}; expected some of '
                         f'{sorted(MODEL_DEFAULTS) + ["planning"]}')
    settings = {**MODEL_DEFAULTS, **config}
    for name in ('n_bins', 'window_transitions', 'n_layer', 'n_head', 'n_embd'):
        if int(settings[name]) != settings[name] or settings[name] < 1:
            raise ValueError(f'{name} must be a positive integer, got {settings[name]!r}')
    if settings['n_bins'] < 2:
        raise ValueError(f'n_bins must be >= 2, got {settings["n_bins"]}')
    if settings['strategy'] not in STRATEGIES:
        raise ValueError(f'strategy must be one of {list(STRATEGIES)}, got '
                         f'{settings["strategy"]!r}')
    if not 0.0 < settings['discount'] <= 1.0:
        raise ValueError(f'discount must lie in (0, 1], got {settings["discount"]!r}')
    for name in ('dropout', 'condition_dropout'):
        if not 0.0 <= settings[name] < 1.0:
            raise ValueError(f'{name} must lie in [0, 1), got {settings[name]!r}')
    for name in ('relative_actions', 'relative_goal', 'ordinal_embedding'):
        if not isinstance(settings[name], bool):
            raise ValueError(f'{name} must be true or false, got {settings[name]!r}')
    for name in ('action_weight', 'reward_weight', 'value_weight'):
        if settings[name] < 0:
            raise ValueError(f'{name} must be >= 0, got {settings[name]!r}')
    return settings
