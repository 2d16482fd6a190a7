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
Per-dimension discretisation of continuous transitions into tokens.

Every scalar of a transition (each state dimension, each action dimension, the reward, the value)
gets its own set of ``n_bins`` bins. Edges are fitted on data, either uniformly between the
observed minimum and maximum or at the data's quantiles, and live in a registered buffer so a
checkpoint restores them bit for bit. A token decodes to the centre of its bin, so inside the
fitted range the round-trip error is at most half that bin's width.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

STRATEGIES = ('uniform', 'quantile')
# A dimension that never varies in the fitted data spans +-CONSTANT_HALF_SPAN around its value.
CONSTANT_HALF_SPAN = 1e-6


class Discretizer(nn.Module):
    """Map ``(..., n_dims)`` values to ``(..., n_dims)`` bin indices in ``0 .. n_bins - 1``."""

    edges: torch.Tensor

    def __init__(self, n_dims: int, n_bins: int = 100, strategy: str = 'uniform') -> None:
        super().__init__()
        if n_dims < 1 or n_bins < 2:
            raise ValueError(f'a discretizer needs n_dims >= 1 and n_bins >= 2, got '
                             f'n_dims={n_dims}, n_bins={n_bins}')
        if strategy not in STRATEGIES:
            raise ValueError(f'unknown discretisation strategy {strategy!r}; expected one of '
                             f'{list(STRATEGIES)}')
        self.n_dims = n_dims
        self.n_bins = n_bins
        self.strategy = strategy
        default = torch.linspace(-1.0, 1.0, n_bins + 1, dtype=torch.float64)
        self.register_buffer('edges', default.repeat(n_dims, 1))

    def config_dict(self) -> dict[str, Any]:
        return {'n_dims': self.n_dims, 'n_bins': self.n_bins, 'strategy': self.strategy}

    def fit(self, data: np.ndarray) -> 'Discretizer':
        """Fit the bin edges of every dimension on ``data`` of shape ``(n_samples, n_dims)``."""
        data = np.asarray(data, dtype=np.float64)
        if data.ndim != 2 or data.shape[1] != self.n_dims or data.shape[0] < 1:
            raise ValueError(f'fit expects data of shape (n_samples >= 1, {self.n_dims}), '
                             f'got {data.shape}')
        if not np.all(np.isfinite(data)):
            column = int(np.flatnonzero(~np.all(np.isfinite(data), axis=0))[0])
            raise ValueError(f'fit data has NaN or Inf values in dimension {column}')
        fractions = np.linspace(0.0, 1.0, self.n_bins + 1)
        if self.strategy == 'uniform':
            low, high = data.min(axis=0), data.max(axis=0)
            edges = low[:, None] + (high - low)[:, None] * fractions[None, :]
        else:
            edges = np.quantile(data, fractions, axis=0).T
        # A constant dimension gets a tiny symmetric range so every bin has a finite centre.
        constant = edges[:, -1] - edges[:, 0] <= 0.0
        if np.any(constant):
            centre = edges[constant, :1]
            edges[constant] = centre + CONSTANT_HALF_SPAN * (fractions[None, :] * 2.0 - 1.0)
        edges = np.maximum.accumulate(edges, axis=1)
        self.edges.copy_(torch.from_numpy(edges))
        return self

    @property
    def centres(self) -> torch.Tensor:
        """Bin centres ``(n_dims, n_bins)``: what every token decodes to."""
        return 0.5 * (self.edges[:, 1:] + self.edges[:, :-1])

    @property
    def constant_dims(self) -> torch.Tensor:
        """Bool ``(n_dims,)``: dimensions that held one value in the fitted data."""
        return self.edges[:, -1] - self.edges[:, 0] <= 2.0 * CONSTANT_HALF_SPAN * (1.0 + 1e-6)

    @property
    def constant_tokens(self) -> torch.Tensor:
        """Return the token every fitted value of each constant dimension encodes to."""
        return self.encode(self.centres[:, self.n_bins // 2])

    @property
    def widths(self) -> torch.Tensor:
        return self.edges[:, 1:] - self.edges[:, :-1]

    def encode(self, values: torch.Tensor | np.ndarray,
               dims: slice | None = None) -> torch.Tensor:
        """
        Return the bin index of every value, clamping values outside the fitted range.

        ``dims`` selects which dimensions the last axis of ``values`` holds (all by default).
        A value sitting on repeated quantile edges (a point mass such as a zero reward) goes to
        the zero-width bin there, so it decodes exactly.
        """
        values = torch.as_tensor(values, dtype=torch.float64, device=self.edges.device)
        edges = self.edges[dims] if dims is not None else self.edges
        if values.shape[-1] != edges.shape[0]:
            raise ValueError(f'encode expects a last axis of {edges.shape[0]} values, got shape '
                             f'{tuple(values.shape)}')
        inner = edges[:, 1:-1].contiguous()
        flat = values.reshape(-1, edges.shape[0]).T.contiguous()
        above = torch.searchsorted(inner, flat, right=True)
        below = torch.searchsorted(inner, flat, right=False)
        tokens = torch.where(above - below >= 2, below + 1, above)
        return tokens.T.reshape(values.shape).clamp_(0, self.n_bins - 1)

    def decode(self, tokens: torch.Tensor, dims: slice | None = None) -> torch.Tensor:
        """Return the bin centre of every token, as float64."""
        centres = self.centres[dims] if dims is not None else self.centres
        tokens = torch.as_tensor(tokens, device=centres.device).long()
        if tokens.shape[-1] != centres.shape[0]:
            raise ValueError(f'decode expects a last axis of {centres.shape[0]} tokens, got shape '
                             f'{tuple(tokens.shape)}')
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.n_bins):
            raise ValueError(f'tokens must lie in 0..{self.n_bins - 1}, got '
                             f'{int(tokens.min())}..{int(tokens.max())}')
        index = torch.arange(centres.shape[0], device=centres.device)
        return centres[index, tokens]
