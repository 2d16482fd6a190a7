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

"""Transformer denoiser: shapes, conditioning on step, observation and goal tokens, bad input."""

import pytest
import torch

from dp_tt_ros.policies.diffusion.transformer_denoiser import (TransformerDenoiser,
                                                               TransformerDenoiserConfig)

torch.set_num_threads(1)


def make_denoiser(goal_dim: int = 4) -> TransformerDenoiser:
    torch.manual_seed(0)
    config = TransformerDenoiserConfig(n_layer=2, n_head=2, n_emb=32, p_drop=0.0)
    return TransformerDenoiser(action_dim=8, horizon=16, obs_token_dim=10, n_obs_tokens=2,
                               goal_token_dim=goal_dim, config=config).eval()


def test_output_shape_and_dependence_on_every_condition():
    denoiser = make_denoiser()
    sample, obs, goal = torch.randn(3, 16, 8), torch.randn(3, 2, 10), torch.randn(3, 4)
    steps = torch.tensor([1, 50, 99])
    out = denoiser(sample, steps, obs, goal)
    assert out.shape == (3, 16, 8) and out.dtype == torch.float32
    assert not torch.allclose(out, denoiser(sample, steps.flip(0), obs, goal))
    assert not torch.allclose(out, denoiser(sample, steps, obs + 1, goal))
    assert not torch.allclose(out, denoiser(sample, steps, obs, goal + 1))


def test_goal_free_denoiser_and_gradients():
    denoiser = make_denoiser(goal_dim=0).train()
    out = denoiser(torch.randn(2, 16, 8), torch.tensor(5), torch.randn(2, 2, 10), None)
    out.square().mean().backward()
    assert all(p.grad is not None for p in denoiser.parameters())


def test_bad_input_is_named():
    denoiser = make_denoiser()
    with pytest.raises(ValueError, match='sample horizon is 8; expected 16'):
        denoiser(torch.randn(1, 8, 8), torch.tensor([0]), torch.randn(1, 2, 10), torch.randn(1, 4))
    with pytest.raises(ValueError, match='expected a goal'):
        denoiser(torch.randn(1, 16, 8), torch.tensor([0]), torch.randn(1, 2, 10), None)
    with pytest.raises(ValueError, match='n_emb divisible by n_head'):
        TransformerDenoiserConfig(n_head=3, n_emb=32)
