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
Min-max normalisation to [-1, 1], fitted on raw data and stored as module buffers.

DDPM clips its samples to [-1, 1], so actions must live there; observations and goals get the same
treatment so every input to the networks has a comparable scale. The statistics are buffers, so a
checkpoint carries them and ``load_policy`` restores them bit for bit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:
    from dp_tt_ros.policies.base import PolicySpec

RANGE_EPS = 1e-4


class MinMaxField(nn.Module):
    """Affine map ``y = x * scale + offset`` sending one field's data range onto [-1, 1]."""

    def __init__(self, shape: Sequence[int]) -> None:
        super().__init__()
        self.shape = tuple(int(size) for size in shape)
        self.register_buffer('scale', torch.ones(self.shape))
        self.register_buffer('offset', torch.zeros(self.shape))
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self.register_load_state_dict_post_hook(_forget_arrays)

    def fit(self, data: np.ndarray, name: str, pin_constant: bool = False) -> None:
        """
        Fit on ``data`` of shape ``(N, *shape)``; dimensions that never vary map to 0.

        With ``pin_constant`` a dimension that never varied gets a tiny span, so any output in
        [-1, 1] decodes to within ``RANGE_EPS / 2`` of the constant: a predicted action cannot
        wander off a dimension the demonstrations never moved (e.g. an always-open gripper).
        """
        values = np.asarray(data, dtype=np.float64)
        if values.ndim != len(self.shape) + 1 or values.shape[1:] != self.shape:
            raise ValueError(f'normaliser data for {name!r} has shape {values.shape}; expected '
                             f'(N, {", ".join(map(str, self.shape))})')
        if values.shape[0] == 0:
            raise ValueError(f'normaliser data for {name!r} is empty; expected at least one row')
        if not np.all(np.isfinite(values)):
            raise ValueError(f'normaliser data for {name!r} contains NaN or Inf')
        low, high = values.min(axis=0), values.max(axis=0)
        span = high - low
        constant = span < RANGE_EPS
        scale = 2.0 / np.where(constant, RANGE_EPS if pin_constant else 2.0, span)
        offset = np.where(constant, -scale * low, -1.0 - scale * low)
        self.scale.copy_(torch.from_numpy(scale))
        self.offset.copy_(torch.from_numpy(offset))
        self._arrays = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """
        Return ``(scale, offset)`` as numpy arrays, kept until the next fit or state-dict load.

        The perception node encodes low-dim histories 10 times a second; there torch's tensor
        calls, cold each time, cost more than the whole affine map does in numpy.
        """
        if self._arrays is None:
            self._arrays = (self.scale.detach().cpu().numpy().copy(),
                            self.offset.detach().cpu().numpy().copy())
        return self._arrays

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale + self.offset

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        return (y - self.offset) / self.scale


def _forget_arrays(field: MinMaxField, incompatible_keys: Any) -> None:
    """Drop the numpy copies once ``load_state_dict`` has written new statistics."""
    field._arrays = None


class Normalizer(nn.Module):
    """One :class:`MinMaxField` per named field (observation keys, ``goal``, ``action``)."""

    def __init__(self, shapes: Mapping[str, Sequence[int]]) -> None:
        super().__init__()
        bad = [name for name in shapes if '.' in name or not name]
        if bad:
            raise ValueError(f'normaliser field names {bad} are invalid; expected non-empty '
                             'names without "."')
        self.fields = nn.ModuleDict({name: MinMaxField(shape) for name, shape in shapes.items()})

    @classmethod
    def fit(cls, data: Mapping[str, np.ndarray],
            pinned: tuple[str, ...] = ('action',)) -> 'Normalizer':
        """Fit every field of ``data`` (``name -> (N, *shape)`` raw values), pinning ``pinned``."""
        normalizer = cls({name: np.shape(values)[1:] for name, values in data.items()})
        for name, values in data.items():
            normalizer.fields[name].fit(values, name, pin_constant=name in pinned)
        return normalizer

    @property
    def names(self) -> list[str]:
        return list(self.fields.keys())

    def field(self, name: str) -> MinMaxField:
        if name not in self.fields:
            raise KeyError(f'normaliser has no field {name!r}; it has {self.names}')
        return self.fields[name]

    def normalize(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.field(name).normalize(x)

    def unnormalize(self, name: str, y: torch.Tensor) -> torch.Tensor:
        return self.field(name).unnormalize(y)

    def shapes(self) -> dict[str, list[int]]:
        return {name: list(module.shape) for name, module in self.fields.items()}


def policy_fields(spec: 'PolicySpec') -> dict[str, list[int]]:
    """Fields a DP/BC policy normalises: low-dim observation keys, ``goal`` and ``action``."""
    shapes = {key: list(spec.obs_shapes[key]) for key in spec.lowdim_keys}
    if spec.goal_dim:
        shapes['goal'] = [spec.goal_dim]
    shapes['action'] = [spec.action_dim]
    return shapes


def fit_policy_normalizer(data: Mapping[str, Any], spec: 'PolicySpec') -> Normalizer:
    """Fit on raw data ``key -> (N, *shape)``: an episode store or a dict of arrays both work."""
    shapes = policy_fields(spec)
    missing = [key for key in shapes if key not in data]
    if missing:
        raise KeyError(f'normaliser data lacks {missing}; expected keys {sorted(shapes)}')
    arrays = {}
    for key, shape in shapes.items():
        values = np.asarray(data[key][:], dtype=np.float64)
        if values.shape[1:] != tuple(shape):
            raise ValueError(f'data for {key!r} has shape {values.shape}; expected (N, '
                             f'{", ".join(map(str, shape))})')
        arrays[key] = values
    return Normalizer.fit(arrays)


def spec_normalizer(spec: 'PolicySpec', normalizer: Normalizer | None = None) -> Normalizer:
    """Return ``normalizer`` (a fresh, unfitted one if None) after checking it fits ``spec``."""
    fields = policy_fields(spec)
    normalizer = normalizer or Normalizer(fields)
    if normalizer.shapes() != fields:
        raise ValueError(f'normaliser fields {normalizer.shapes()} do not match the spec; '
                         f'expected {fields}')
    return normalizer
