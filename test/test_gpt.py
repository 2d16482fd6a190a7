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

"""The transition GPT: causality, value-key masking, and an exact KV cache."""

import pytest
import torch

from dp_tt_ros.policies.transformer.gpt import GPTConfig, TrajectoryGPT

TRANSITION_DIM = 5
N_BINS = 7


@pytest.fixture(autouse=True)
def single_thread() -> None:
    """Use one intra-op thread: small models run faster and the shared CPU stays usable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_model(block_transitions: int = 4, seed: int = 0) -> TrajectoryGPT:
    torch.manual_seed(seed)
    config = GPTConfig(n_bins=N_BINS, transition_dim=TRANSITION_DIM,
                       block_size=block_transitions * TRANSITION_DIM, n_layer=2, n_head=2,
                       n_embd=16, dropout=0.0)
    return TrajectoryGPT(config).eval()


def random_window(batch: int, length: int, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    bins = torch.randint(0, N_BINS, (batch, length), generator=generator)
    bins[:, 0] = torch.randint(0, N_BINS + 1, (batch,), generator=generator)
    return bins


def value_positions(length: int) -> list[int]:
    return [p for p in range(1, length) if (p - 1) % TRANSITION_DIM == TRANSITION_DIM - 1]


def test_logits_never_depend_on_later_tokens() -> None:
    model = make_model()
    bins = random_window(3, 20)
    changed = bins.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % N_BINS
    with torch.no_grad():
        assert torch.equal(model(bins)[:, :12], model(changed)[:, :12])


def test_value_tokens_are_never_attended_to() -> None:
    model = make_model()
    bins = random_window(3, 20)
    changed = bins.clone()
    values = value_positions(20)
    assert values == [5, 10, 15]
    changed[:, values] = (changed[:, values] + 3) % N_BINS
    with torch.no_grad():
        original, perturbed = model(bins), model(changed)
    others = [p for p in range(20) if p not in values]
    assert torch.allclose(original[:, others], perturbed[:, others], atol=1e-6)
    assert not torch.allclose(original[:, values], perturbed[:, values])


def test_conditioning_token_is_attended_to() -> None:
    model = make_model()
    bins = random_window(2, 12)
    changed = bins.clone()
    changed[:, 0] = (changed[:, 0] + 1) % (N_BINS + 1)
    with torch.no_grad():
        assert not torch.allclose(model(bins)[:, 3:], model(changed)[:, 3:])


def test_incremental_decoding_matches_the_full_forward() -> None:
    model = make_model()
    bins = random_window(4, 20)
    cache = model.new_cache(4)
    with torch.no_grad():
        full = model(bins)
        pieces = [model(bins[:, :6], cache, 0)]
        for position in range(6, 20):
            pieces.append(model(bins[:, position:position + 1], cache, position))
    assert cache.length == 20
    assert torch.allclose(torch.cat(pieces, dim=1), full, atol=1e-5)


def test_reordered_cache_follows_the_beams() -> None:
    model = make_model()
    bins = random_window(3, 14)
    index = torch.tensor([2, 2, 0, 1, 0])
    cache = model.new_cache(3)
    with torch.no_grad():
        model(bins[:, :9], cache, 0)
        cache.reorder(index)
        assert cache.batch == 5
        reordered = bins[index]
        tail = torch.cat([model(reordered[:, p:p + 1], cache, p) for p in range(9, 14)], dim=1)
        assert torch.allclose(tail, model(reordered)[:, 9:], atol=1e-5)


def test_decoding_past_the_block_is_refused() -> None:
    model = make_model(block_transitions=2)
    bins = random_window(1, 10)
    cache = model.new_cache(1)
    with torch.no_grad():
        model(bins, cache, 0)
        with pytest.raises(ValueError, match='exceed the block size 10'):
            model(bins[:, :1], cache, 10)
        with pytest.raises(ValueError, match='cannot write positions'):
            model(bins[:, :2], model.new_cache(2), 3)


def test_training_backpropagates_through_every_head() -> None:
    model = make_model().train()
    bins = random_window(2, 20)
    loss = torch.nn.functional.cross_entropy(model(bins[:, :-1]).reshape(-1, N_BINS),
                                             bins[:, 1:].reshape(-1))
    loss.backward()
    assert torch.all(model.head_weight.grad.abs().sum(dim=(1, 2)) > 0)


def test_bins_of_one_dimension_are_embedded_along_their_rank() -> None:
    model = make_model()
    with torch.no_grad():
        model.tok_emb.weight.zero_()
        model.pos_emb.zero_()
    dim = 2
    bins = torch.zeros(1, N_BINS, dtype=torch.long)
    x = torch.stack([model.embed(bins.index_fill(1, torch.tensor([1 + dim]), b))[0, 1 + dim]
                     for b in range(N_BINS)])
    steps = x[1:] - x[:-1]
    expected = (2.0 / (N_BINS - 1)) * model.rank_emb[dim]
    assert torch.allclose(steps, expected.expand_as(steps), atol=1e-6)
    assert torch.allclose(x[0], -model.rank_emb[dim])
    assert torch.allclose(x[-1], model.rank_emb[dim])
    null = torch.full((1, 1), N_BINS)
    assert torch.equal(model.embed(null), torch.zeros(1, 1, model.config.n_embd))
    assert 'rank_emb' not in dict(TrajectoryGPT(GPTConfig(
        n_bins=4, transition_dim=3, block_size=12, ordinal_embedding=False)).named_parameters())


def test_config_validation_names_the_bad_value() -> None:
    with pytest.raises(ValueError, match='multiple of n_head'):
        GPTConfig(n_bins=4, transition_dim=3, block_size=12, n_head=3, n_embd=16)
    with pytest.raises(ValueError, match='block_size 3'):
        GPTConfig(n_bins=4, transition_dim=3, block_size=3)
