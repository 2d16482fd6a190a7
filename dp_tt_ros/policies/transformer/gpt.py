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
GPT over transition tokens, with an exact key/value cache for planning.

A training window is ``[c, s_0 .. s_S-1, a_0 .. a_A-1, r, V, s_0, ...]``: one return-to-go
conditioning token ``c`` (or the null token for unconditioned use), then whole transitions of
``transition_dim`` scalars, one token per scalar. Each scalar dimension has its own vocabulary
(token id = bin + dim * n_bins) and its own output head. Value tokens are never attended to as
keys, in training and in decoding alike, because a value summarises the future the model is
asked to predict.

Besides its own embedding, every token adds its dimension's learned direction scaled by the
token's rank among that dimension's bins (in [-1, 1]). Bins are ordered values, and without this
the model would have to learn from data alone that neighbouring bins mean nearly the same state,
for every bin of every dimension; with few demonstrations it generalises poorly between them.

The cache preallocates keys and values for the whole block. Positions are absolute within the
window, so when a planner's window slides the cache must be rebuilt from the new window
(``prefill``); appending past the block is refused rather than silently drifting.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class GPTConfig:
    """Architecture; ``block_size`` counts input tokens, conditioning token included."""

    n_bins: int
    transition_dim: int
    block_size: int
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.1
    ordinal_embedding: bool = True

    def __post_init__(self) -> None:
        if self.n_embd % self.n_head:
            raise ValueError(f'n_embd ({self.n_embd}) must be a multiple of n_head '
                             f'({self.n_head})')
        if self.block_size < self.transition_dim + 1:
            raise ValueError(f'block_size {self.block_size} must hold the conditioning token '
                             f'and one transition ({self.transition_dim + 1} tokens)')

    @property
    def null_return(self) -> int:
        """Conditioning bin that means "no return target"."""
        return self.n_bins

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'GPTConfig':
        return cls(**dict(data))


class KVCache:
    """Per-layer keys and values for a batch of beams, preallocated over the whole block."""

    def __init__(self, config: GPTConfig, batch: int, device: torch.device,
                 dtype: torch.dtype) -> None:
        head_dim = config.n_embd // config.n_head
        shape = (config.n_layer, batch, config.n_head, config.block_size, head_dim)
        self.keys = torch.zeros(shape, device=device, dtype=dtype)
        self.values = torch.zeros(shape, device=device, dtype=dtype)
        self.length = 0

    @property
    def batch(self) -> int:
        return self.keys.shape[1]

    def reorder(self, index: torch.Tensor) -> None:
        """
        Follow the beams: row ``i`` of the cache becomes old row ``index[i]``.

        Only the filled positions are copied; the rest of the block stays preallocated.
        """
        shape = (self.keys.shape[0], index.numel(), *self.keys.shape[2:])
        keys = self.keys.new_empty(shape)
        values = self.values.new_empty(shape)
        keys[:, :, :, :self.length] = self.keys[:, :, :, :self.length].index_select(1, index)
        values[:, :, :, :self.length] = self.values[:, :, :, :self.length].index_select(1, index)
        self.keys, self.values = keys, values


class CausalSelfAttention(nn.Module):
    """Multi-head attention that reads and writes one layer of a :class:`KVCache`."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.proj = nn.Linear(config.n_embd, config.n_embd)
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor,
                cache: KVCache | None, layer: int, start: int) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(x).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.n_head, -1).transpose(1, 2) for t in (q, k, v))
        if cache is not None:
            cache.keys[layer, :, :, start:start + length] = k
            cache.values[layer, :, :, start:start + length] = v
            k = cache.keys[layer, :, :, :start + length]
            v = cache.values[layer, :, :, :start + length]
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=bias, dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).reshape(batch, length, width)
        return self.resid_dropout(self.proj(y))


class Block(nn.Module):
    """Pre-LayerNorm transformer block."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd), nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd), nn.Dropout(config.dropout))

    def forward(self, x: torch.Tensor, bias: torch.Tensor, cache: KVCache | None,
                layer: int, start: int) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), bias, cache, layer, start)
        return x + self.mlp(self.ln_2(x))


class TrajectoryGPT(nn.Module):
    """Decoder-only transformer; inputs and outputs are per-dimension bins, not global ids."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.config = config
        n_bins, dims = config.n_bins, config.transition_dim
        self.tok_emb = nn.Embedding((dims + 1) * n_bins + 1, config.n_embd)
        self.rank_emb = (nn.Parameter(torch.zeros(dims + 1, config.n_embd))
                         if config.ordinal_embedding else None)
        self.pos_emb = nn.Parameter(torch.zeros(config.block_size, config.n_embd))
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd)
        self.head_weight = nn.Parameter(torch.empty(dims, config.n_embd, n_bins))
        self.head_bias = nn.Parameter(torch.zeros(dims, n_bins))
        positions = torch.arange(config.block_size)
        # Position 0 is the conditioning token; position p >= 1 holds dimension (p - 1) % dims.
        offsets = torch.where(positions == 0, dims * n_bins, ((positions - 1) % dims) * n_bins)
        is_value = (positions >= 1) & ((positions - 1) % dims == dims - 1)
        causal = torch.tril(torch.ones(config.block_size, config.block_size, dtype=torch.bool))
        self.register_buffer('token_offsets', offsets, persistent=False)
        self.register_buffer('token_dims', offsets // n_bins, persistent=False)
        allowed = causal & ~is_value[None, :]
        # An additive -inf bias is the fastest mask form for CPU attention with one query.
        bias = torch.zeros(allowed.shape).masked_fill(~allowed, -math.inf)
        self.register_buffer('attn_bias', bias, persistent=False)
        self.register_buffer('head_index', positions % dims, persistent=False)
        self.apply(self._init_weights)
        nn.init.normal_(self.pos_emb, std=0.02)
        nn.init.normal_(self.head_weight, std=0.02)
        if self.rank_emb is not None:
            nn.init.normal_(self.rank_emb, std=0.02)
        for name, parameter in self.named_parameters():
            if name.endswith('proj.weight') or name.endswith('mlp.2.weight'):
                nn.init.normal_(parameter, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, bins: torch.Tensor, cache: KVCache | None = None,
                start: int = 0) -> torch.Tensor:
        """
        Return next-token logits ``(B, L, n_bins)`` for bins at positions ``start ..``.

        Without a cache ``start`` must be 0 and the whole window is given. With a cache, the
        keys and values of positions ``< start`` are read from it and those of the new positions
        are written to it; ``cache.length`` becomes ``start + L``.
        """
        batch, length = bins.shape
        end = start + length
        if end > self.config.block_size:
            raise ValueError(f'positions {start}..{end - 1} exceed the block size '
                             f'{self.config.block_size}; slide the window and prefill again')
        if cache is None and start != 0:
            raise ValueError('a forward pass without a cache must start at position 0')
        if cache is not None and (start > cache.length or cache.batch != batch):
            raise ValueError(f'cache holds {cache.length} positions for {cache.batch} beams; '
                             f'cannot write positions from {start} for {batch} beams')
        if cache is not None and length == 1 and not self.training:
            return self._decode_one(bins[:, 0], cache, start)[:, None]
        x = self.drop(self.embed(bins, start))
        bias = self.attn_bias[start:end, :end]
        for layer, block in enumerate(self.blocks):
            x = block(x, bias, cache, layer, start)
        if cache is not None:
            cache.length = end
        x = self.ln_f(x)
        heads = self.head_index[start:end]
        logits = torch.bmm(x.transpose(0, 1), self.head_weight[heads])
        return logits.transpose(0, 1) + self.head_bias[heads]

    def _decode_one(self, bins: torch.Tensor, cache: KVCache, position: int) -> torch.Tensor:
        """
        Logits ``(B, n_bins)`` for one new token per beam: the planner's inner loop.

        The same arithmetic as :meth:`forward` with half the tensor operations: 2-D
        activations, and no module calls, dropout or per-position output heads.
        """
        batch = bins.shape[0]
        n_head, width = self.config.n_head, self.config.n_embd
        x = self.embed(bins[:, None], position)[:, 0]
        end = position + 1
        bias = self.attn_bias[position:end, :end]
        for layer, block in enumerate(self.blocks):
            attn = block.attn
            qkv = F.linear(F.layer_norm(x, (width,), block.ln_1.weight, block.ln_1.bias,
                                        block.ln_1.eps), attn.qkv.weight, attn.qkv.bias)
            query, key, value = qkv.view(batch, 3, n_head, 1, -1).unbind(1)
            keys, values = cache.keys[layer, :, :, :end], cache.values[layer, :, :, :end]
            keys[:, :, position] = key[:, :, 0]
            values[:, :, position] = value[:, :, 0]
            y = F.scaled_dot_product_attention(query, keys, values, attn_mask=bias)
            x = x + F.linear(y.view(batch, width), attn.proj.weight, attn.proj.bias)
            up, down = block.mlp[0], block.mlp[2]
            h = F.layer_norm(x, (width,), block.ln_2.weight, block.ln_2.bias, block.ln_2.eps)
            x = x + F.linear(F.gelu(F.linear(h, up.weight, up.bias)), down.weight, down.bias)
        cache.length = end
        x = F.layer_norm(x, (width,), self.ln_f.weight, self.ln_f.bias, self.ln_f.eps)
        head = int(self.head_index[position])
        return torch.addmm(self.head_bias[head], x, self.head_weight[head])

    def embed(self, bins: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Input vectors of bins at positions ``start ..``: token, rank and position terms."""
        end = start + bins.shape[1]
        x = self.tok_emb(bins + self.token_offsets[start:end]) + self.pos_emb[start:end]
        if self.rank_emb is None:
            return x
        n_bins = self.config.n_bins
        rank = (bins * (2.0 / (n_bins - 1)) - 1.0).masked_fill(bins >= n_bins, 0.0)
        return x + rank[..., None].to(x.dtype) * self.rank_emb[self.token_dims[start:end]]

    def new_cache(self, batch: int) -> KVCache:
        parameter = self.head_weight
        return KVCache(self.config, batch, parameter.device, parameter.dtype)
