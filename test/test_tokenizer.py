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

"""Per-dimension discretisation: round-trip bounds, clamping, quantile balance, bad input."""

import numpy as np
import pytest
import torch

from dp_tt_ros.policies.transformer.tokenizer import Discretizer


def sample_data(seed: int, rows: int = 2000) -> np.ndarray:
    """Return columns with different shapes: normal, skewed, bounded, a point mass, constant."""
    rng = np.random.default_rng(seed)
    return np.stack([
        rng.normal(0.0, 3.0, rows),
        rng.exponential(0.5, rows),
        rng.uniform(-2.8973, 2.8973, rows),
        np.where(rng.random(rows) < 0.7, 0.0, rng.uniform(0.5, 1.0, rows)),
        np.full(rows, 0.04),
    ], axis=1)


@pytest.mark.parametrize('strategy', ['uniform', 'quantile'])
@pytest.mark.parametrize('seed', [0, 1, 2])
def test_round_trip_error_is_at_most_half_a_bin(strategy: str, seed: int) -> None:
    data = sample_data(seed)
    tokenizer = Discretizer(data.shape[1], n_bins=37, strategy=strategy).fit(data)
    probe = sample_data(seed + 100, rows=500)
    low = tokenizer.edges[:, 0].numpy()
    high = tokenizer.edges[:, -1].numpy()
    inside = (probe >= low) & (probe <= high)
    tokens = tokenizer.encode(probe)
    assert tokens.dtype == torch.int64
    assert int(tokens.min()) >= 0 and int(tokens.max()) < 37
    decoded = tokenizer.decode(tokens).numpy()
    widths = tokenizer.widths.numpy()[np.arange(data.shape[1]), tokens.numpy()]
    error = np.abs(decoded - probe)
    assert np.all(error[inside] <= widths[inside] / 2 + 1e-12)
    assert inside.mean() > 0.9


def test_point_masses_decode_exactly_with_quantile_bins() -> None:
    data = sample_data(3)
    tokenizer = Discretizer(data.shape[1], n_bins=20, strategy='quantile').fit(data)
    zeros = np.zeros((4, data.shape[1]))
    zeros[:, 4] = 0.04
    decoded = tokenizer.decode(tokenizer.encode(zeros)).numpy()
    assert np.all(decoded[:, 3] == 0.0)
    assert np.allclose(decoded[:, 4], 0.04, atol=1e-6)


def test_quantile_bins_hold_similar_counts() -> None:
    data = np.random.default_rng(4).lognormal(size=(5000, 1))
    tokenizer = Discretizer(1, n_bins=10, strategy='quantile').fit(data)
    counts = np.bincount(tokenizer.encode(data)[:, 0].numpy(), minlength=10)
    assert counts.min() >= 450 and counts.max() <= 550
    uniform = Discretizer(1, n_bins=10, strategy='uniform').fit(data)
    uniform_counts = np.bincount(uniform.encode(data)[:, 0].numpy(), minlength=10)
    assert uniform_counts.max() > 2000


def test_values_outside_the_range_clamp_to_the_end_bins() -> None:
    tokenizer = Discretizer(2, n_bins=5).fit(np.array([[0.0, -1.0], [1.0, 1.0]]))
    tokens = tokenizer.encode(np.array([[-10.0, 10.0], [10.0, -10.0]]))
    assert tokens.tolist() == [[0, 4], [4, 0]]


def test_encode_and_decode_a_slice_of_dimensions() -> None:
    data = sample_data(5)
    tokenizer = Discretizer(data.shape[1], n_bins=16).fit(data)
    full = tokenizer.encode(data[:10])
    part = tokenizer.encode(data[:10, 1:3], slice(1, 3))
    assert torch.equal(full[:, 1:3], part)
    assert torch.equal(tokenizer.decode(full)[:, 1:3], tokenizer.decode(part, slice(1, 3)))


def test_fitted_edges_live_in_the_state_dict() -> None:
    data = sample_data(6)
    tokenizer = Discretizer(data.shape[1], n_bins=8, strategy='quantile').fit(data)
    restored = Discretizer(data.shape[1], n_bins=8, strategy='quantile')
    restored.load_state_dict(tokenizer.state_dict())
    assert torch.equal(restored.edges, tokenizer.edges)
    assert restored.edges.dtype == torch.float64


def test_bad_input_is_rejected_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match='strategy'):
        Discretizer(2, strategy='kmeans')
    with pytest.raises(ValueError, match='n_bins'):
        Discretizer(2, n_bins=1)
    tokenizer = Discretizer(2, n_bins=4)
    with pytest.raises(ValueError, match=r'\(n_samples >= 1, 2\)'):
        tokenizer.fit(np.zeros((5, 3)))
    with pytest.raises(ValueError, match='NaN or Inf values in dimension 1'):
        tokenizer.fit(np.array([[0.0, np.nan], [1.0, 2.0]]))
    with pytest.raises(ValueError, match='last axis of 2'):
        tokenizer.encode(np.zeros((3, 5)))
    with pytest.raises(ValueError, match='tokens must lie in 0..3'):
        tokenizer.decode(torch.tensor([[0, 4]]))
