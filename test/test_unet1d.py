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

"""Conditional U-Net: shapes, FiLM precomputation and the packed network equal the reference."""

import pytest
import torch

from dp_tt_ros.policies.diffusion.unet1d import (ConditionalUnet1D, PackedUnet, UnetConfig,
                                                 sinusoidal_embedding)

torch.set_num_threads(1)


def make_unet(down_dims=(16, 32, 64), cond_dim=12, kernel_size=5) -> ConditionalUnet1D:
    torch.manual_seed(0)
    config = UnetConfig(down_dims=list(down_dims), kernel_size=kernel_size, step_embed_dim=16)
    return ConditionalUnet1D(action_dim=8, global_cond_dim=cond_dim, config=config).eval()


@pytest.mark.parametrize('down_dims, horizon', [((16, 32, 64), 16), ((16, 32), 8), ((16,), 5)])
def test_output_has_the_input_shape_and_dtype(down_dims, horizon):
    unet = make_unet(down_dims)
    sample = torch.randn(3, horizon, 8)
    out = unet(sample, torch.tensor([0, 5, 99]), torch.randn(3, 12))
    assert out.shape == sample.shape and out.dtype == torch.float32


def test_output_depends_on_step_and_condition():
    unet = make_unet()
    sample, cond = torch.randn(1, 16, 8), torch.randn(1, 12)
    base = unet(sample, torch.tensor([3]), cond)
    assert not torch.allclose(base, unet(sample, torch.tensor([60]), cond))
    assert not torch.allclose(base, unet(sample, torch.tensor([3]), cond + 1))


def test_film_table_equals_per_step_conditioning():
    unet = make_unet()
    sample, cond = torch.randn(2, 16, 8), torch.randn(2, 12)
    steps = torch.tensor([90, 40, 0])
    table = unet.film_table(steps, cond)
    assert table.shape == (3, 2, unet.core.film_width)
    for index, step in enumerate(steps):
        reference = unet(sample, step.expand(2), cond)
        assert torch.allclose(unet.core(sample, table[index]), reference, atol=1e-5)


@pytest.mark.parametrize('down_dims, kernel_size', [((16, 32, 64), 5), ((16, 32), 3)])
def test_packed_network_equals_the_module_network(down_dims, kernel_size):
    unet = make_unet(down_dims, kernel_size=kernel_size)
    sample = torch.randn(2, 16, 8)
    film = unet.film_table(torch.tensor([7]), torch.randn(2, 12))[0]
    packed = PackedUnet(unet.core).eval()
    with torch.inference_mode():
        assert torch.allclose(packed(sample, film), unet.core(sample, film), atol=1e-5)
        low = PackedUnet(unet.core, torch.bfloat16)(sample, film)
        assert low.dtype == torch.float32
        assert torch.allclose(low, unet.core(sample, film), atol=0.1)


def test_training_gradients_reach_every_parameter():
    unet = make_unet().train()
    loss = unet(torch.randn(2, 16, 8), torch.tensor([1, 2]), torch.randn(2, 12)).square().mean()
    loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in unet.parameters())


def test_sinusoidal_embedding_is_distinct_per_step():
    embedding = sinusoidal_embedding(torch.arange(100), 32)
    assert embedding.shape == (100, 32)
    assert torch.cdist(embedding, embedding).add(torch.eye(100)).min() > 1e-3


@pytest.mark.parametrize('settings, message', [
    ({'down_dims': [12, 24]}, 'not divisible by n_groups 8'),
    ({'kernel_size': 4}, 'odd positive'),
    ({'down_dims': []}, 'positive widths'),
    ({'step_embed_dim': 7}, 'even size'),
])
def test_bad_settings_are_named(settings, message):
    with pytest.raises(ValueError, match=message):
        UnetConfig(**settings)
