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
Training windows of tokenised transitions for the Trajectory Transformer.

Each step ``t`` of an episode becomes the transition ``[s_t, a_t, r_t, V_t]`` with the value
``V_t = sum_k>=1 gamma^(k-1) r_(t+k)`` (the discounted rewards *after* step ``t``, as in the
trajectory-transformer) and a return-to-go ``G_t = r_t + gamma V_t`` that conditions the window
starting at ``t``. A sample is ``[token(G_t), transitions t .. t+W-1]``; windows that run past the
episode end repeat its last step and those tokens carry no loss.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from dp_tt_ros.data.sequence import episode_bounds, make_windows, WindowDataset
from dp_tt_ros.policies.transformer.tokenizer import Discretizer


def discounted_values(rewards: np.ndarray, episode_ends: Sequence[int] | np.ndarray,
                      discount: float) -> tuple[np.ndarray, np.ndarray]:
    """Return per-step values ``V_t`` and returns-to-go ``G_t``, episode by episode."""
    rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
    values = np.zeros_like(rewards)
    starts, ends = episode_bounds(episode_ends)
    if ends.size and ends[-1] > rewards.size:
        raise ValueError(f'episode_ends[-1] = {ends[-1]} exceeds the {rewards.size} reward rows')
    for start, end in zip(starts, ends):
        following = 0.0
        for row in range(end - 1, start - 1, -1):
            values[row] = following
            following = rewards[row] + discount * following
    return values, rewards + discount * values


class TransitionDataset(WindowDataset):
    """Token windows ``bins (1 + W * T,)`` and their per-target ``loss_mask (W * T,)``."""

    def __init__(self, states: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                 episode_ends: Sequence[int] | np.ndarray, tokenizer: Discretizer,
                 window_transitions: int, discount: float) -> None:
        states = np.asarray(states, dtype=np.float64)
        actions = np.asarray(actions, dtype=np.float64)
        rewards = np.asarray(rewards, dtype=np.float64).reshape(-1)
        rows = int(np.asarray(episode_ends)[-1]) if len(episode_ends) else 0
        if not len(states) >= rows or not len(actions) >= rows or not len(rewards) >= rows:
            raise ValueError(f'states, actions and rewards need >= {rows} rows (episode_ends), '
                             f'got {len(states)}, {len(actions)} and {len(rewards)}')
        if window_transitions < 1:
            raise ValueError(f'window_transitions must be >= 1, got {window_transitions}')
        states, actions, rewards = states[:rows], actions[:rows], rewards[:rows]
        values, returns = discounted_values(rewards, episode_ends, discount)
        transitions = np.concatenate([states, actions, rewards[:, None], values[:, None]], axis=1)
        if transitions.shape[1] + 1 != tokenizer.n_dims:
            raise ValueError(f'transitions have {transitions.shape[1]} scalars but the tokenizer '
                             f'has {tokenizer.n_dims} dims (expected transitions + 1)')
        width = transitions.shape[1]
        self.transition_dim = width
        self.tokens = tokenizer.encode(transitions, slice(0, width)).cpu()
        returns_column = slice(width, width + 1)
        self.return_tokens = tokenizer.encode(returns[:, None], returns_column)[:, 0].cpu()
        self.windows = make_windows(episode_ends, 0, window_transitions - 1)

    def get_batch(self, indices: np.ndarray | Sequence[int]) -> dict[str, torch.Tensor]:
        """Gather a batch of windows by number (the trainer's vectorised path)."""
        rows, is_pad = self.windows.gather(indices)
        rows_t = torch.from_numpy(rows)
        body = self.tokens[rows_t].reshape(rows.shape[0], -1)
        first = self.return_tokens[rows_t[:, 0]]
        bins = torch.cat([first[:, None], body], dim=1)
        pad = torch.from_numpy(is_pad).repeat_interleave(self.transition_dim, dim=1)
        return {'bins': bins, 'loss_mask': (~pad).float()}
