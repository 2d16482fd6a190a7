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
Training windows cut from an episode store, padded at episode edges like diffusion_policy.

Two layers, so that every policy family can share the index arithmetic:

* :func:`make_windows` computes, once, every window position of a store (anchor step plus the
  bounds of its episode). :meth:`Windows.gather` turns a batch of window numbers into global row
  indices and a padding mask. Nothing here knows about keys, shapes or policies, so the Trajectory
  Transformer's transition windows reuse it unchanged.
* :class:`SequenceDataset` selects keys for Diffusion Policy and BC: the observation history
  ``obs.<key>`` of ``n_obs_steps`` rows ending at the anchor ``t``, the ``goal`` at ``t`` and the
  action chunk ``actions[t : t + horizon]`` with its ``action_is_pad`` mask.

Padding follows diffusion_policy's ``SequenceSampler``: a window that reaches before its episode's
first step repeats that step, one that reaches past the last step repeats the last step, and no
window ever mixes two episodes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dp_tt_ros.policies.base import PolicySpec


def episode_bounds(episode_ends: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Return each episode's first row and one-past-last row, checking ``episode_ends``."""
    ends = np.asarray(episode_ends, dtype=np.int64).reshape(-1)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    if ends.size and (np.any(ends <= starts)):
        bad = int(np.flatnonzero(ends <= starts)[0])
        raise ValueError(f'episode_ends must be strictly increasing and positive; episode {bad} '
                         f'ends at {int(ends[bad])} but starts at {int(starts[bad])}')
    return starts, ends


@dataclass(frozen=True)
class Windows:
    """
    Every window position of a store; a window covers ``anchor + offsets``.

    ``anchors``, ``starts`` and ``ends`` have one entry per window: the anchor's global row and
    the global row bounds ``[start, end)`` of the episode it lies in.
    """

    anchors: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    offsets: np.ndarray

    def __len__(self) -> int:
        return int(self.anchors.size)

    @property
    def width(self) -> int:
        return int(self.offsets.size)

    def gather(self, windows: np.ndarray | Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """
        Map window numbers to ``(rows, is_pad)``, both ``(n, width)``.

        ``rows`` are global row indices clamped into the window's episode, so indexing a data
        array with them repeats the first / last step where the window sticks out; ``is_pad``
        marks exactly those repeated entries.
        """
        windows = np.asarray(windows, dtype=np.int64)
        if windows.size and (windows.min() < 0 or windows.max() >= len(self)):
            raise IndexError(f'window index out of range: got {windows.min()}..{windows.max()}, '
                             f'expected 0..{len(self) - 1}')
        wanted = self.anchors[windows, None] + self.offsets[None, :]
        start = self.starts[windows, None]
        last = self.ends[windows, None] - 1
        rows = np.clip(wanted, start, last)
        return rows, rows != wanted


def make_windows(episode_ends: Sequence[int] | np.ndarray, before: int, after: int, *,
                 pad_before: int | None = None, pad_after: int | None = None) -> Windows:
    """
    Enumerate windows of ``before + 1 + after`` rows around an anchor, episode by episode.

    A window is anchored at row ``t`` and covers rows ``t - before ... t + after``. It may stick
    out of its episode by at most ``pad_before`` rows at the start and ``pad_after`` rows at the
    end (defaults: ``before`` and ``after``, so every step of every episode is an anchor; pass 0
    to keep only windows that lie fully inside their episode). This is diffusion_policy's
    ``create_indices`` with the anchor made explicit.
    """
    if before < 0 or after < 0:
        raise ValueError(f'before and after must be >= 0, got before={before}, after={after}')
    pad_before = before if pad_before is None else pad_before
    pad_after = after if pad_after is None else pad_after
    if not 0 <= pad_before <= before or not 0 <= pad_after <= after:
        raise ValueError(f'pad_before must lie in 0..{before} and pad_after in 0..{after}, got '
                         f'pad_before={pad_before}, pad_after={pad_after}')
    starts, ends = episode_bounds(episode_ends)
    anchor_parts, start_parts, end_parts = [], [], []
    for start, end in zip(starts, ends):
        first = start + before - pad_before
        last = end - 1 - after + pad_after
        if last < first:
            continue
        anchors = np.arange(first, last + 1, dtype=np.int64)
        anchor_parts.append(anchors)
        start_parts.append(np.full_like(anchors, start))
        end_parts.append(np.full_like(anchors, end))
    empty = np.zeros(0, dtype=np.int64)
    return Windows(
        anchors=np.concatenate(anchor_parts) if anchor_parts else empty,
        starts=np.concatenate(start_parts) if start_parts else empty,
        ends=np.concatenate(end_parts) if end_parts else empty,
        offsets=np.arange(-before, after + 1, dtype=np.int64),
    )


class WindowDataset(Dataset, ABC):
    """
    A dataset of episode windows that gathers whole batches at once.

    Single samples are batches of one, so the trainer's vectorised ``get_batch`` path and plain
    indexing always agree.
    """

    windows: Windows

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.get_batch([index]).items()}

    @abstractmethod
    def get_batch(self, indices: np.ndarray | Sequence[int]) -> dict[str, torch.Tensor]:
        """Gather the samples of windows ``indices`` as batched tensors."""


class SequenceDataset(WindowDataset):
    """
    Diffusion Policy / BC samples: observation history, goal and padded action chunk.

    Arrays are held in memory as raw float32 (images stay uint8); the policy normalises. Besides
    the usual ``__getitem__`` the dataset offers :meth:`get_batch`, a vectorised gather that the
    trainer uses instead of collating one sample at a time.
    """

    def __init__(self, data: Mapping[str, np.ndarray], episode_ends: Sequence[int] | np.ndarray,
                 *, obs_keys: Sequence[str], n_obs_steps: int, horizon: int,
                 goal_key: str | None = 'goal', action_key: str = 'action',
                 pad_after: int | None = None) -> None:
        if n_obs_steps < 1 or horizon < 1:
            raise ValueError(f'n_obs_steps and horizon must be >= 1, got n_obs_steps='
                             f'{n_obs_steps}, horizon={horizon}')
        wanted = [*obs_keys, action_key] + ([goal_key] if goal_key else [])
        missing = [key for key in wanted if key not in data]
        if missing:
            raise KeyError(f'the data lacks keys {missing}; it has {sorted(data)}')
        ends = np.asarray(episode_ends, dtype=np.int64)
        n_rows = int(ends[-1]) if ends.size else 0
        short = [key for key in wanted if len(data[key]) < n_rows]
        if short:
            raise ValueError(f'keys {short} have fewer rows than episode_ends[-1] = {n_rows}')
        self.obs_keys = list(obs_keys)
        self.goal_key = goal_key
        self.action_key = action_key
        self.n_obs_steps = n_obs_steps
        self.horizon = horizon
        self.arrays = {key: _as_training_array(data[key][:n_rows]) for key in wanted}
        self.windows = make_windows(ends, n_obs_steps - 1, horizon - 1,
                                    pad_after=horizon - 1 if pad_after is None else pad_after)

    @classmethod
    def from_spec(cls, data: Mapping[str, np.ndarray], episode_ends: Sequence[int] | np.ndarray,
                  spec: PolicySpec) -> 'SequenceDataset':
        """Build the dataset a policy with ``spec`` trains on."""
        return cls(data, episode_ends, obs_keys=list(spec.obs_shapes),
                   n_obs_steps=spec.n_obs_steps, horizon=spec.horizon,
                   goal_key='goal' if spec.goal_dim > 0 else None)

    def get_batch(self, indices: np.ndarray | Sequence[int]) -> dict[str, torch.Tensor]:
        """Gather a batch of samples by window number (the trainer's fast path)."""
        rows, is_pad = self.windows.gather(indices)
        newest = self.n_obs_steps - 1
        obs_rows = rows[:, :self.n_obs_steps]
        action_rows = rows[:, newest:]
        batch = {f'obs.{key}': torch.from_numpy(self.arrays[key][obs_rows])
                 for key in self.obs_keys}
        if self.goal_key:
            batch['goal'] = torch.from_numpy(self.arrays[self.goal_key][rows[:, newest]])
        batch['action'] = torch.from_numpy(self.arrays[self.action_key][action_rows])
        batch['action_is_pad'] = torch.from_numpy(is_pad[:, newest:].copy())
        return batch


def _as_training_array(array: np.ndarray) -> np.ndarray:
    """Load into memory: uint8 stays uint8 (images), everything else becomes float32."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    return np.ascontiguousarray(array, dtype=np.float32)
