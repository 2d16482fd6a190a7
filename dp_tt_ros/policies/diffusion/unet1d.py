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
Conditional 1-D temporal U-Net denoiser with FiLM conditioning.

The action chunk ``(B, H, d_a)`` is treated as a ``d_a``-channel signal over time. Every residual
block (Conv1d -> GroupNorm -> Mish, twice) is modulated after its first convolution by a
per-channel scale and bias computed from the condition: the sinusoidal embedding of the diffusion
step (through an MLP) concatenated with the flattened observation features and the goal.

Inference speed: the FiLM projection is ``Linear(Mish(concat(t_emb, obs)))``, and Mish acts
element-wise, so it splits into a part that depends only on the step ``k`` and a part that depends
only on the observation. :meth:`ConditionalUnet1D.film_table` evaluates both once per action chunk
for all ``K`` steps and every block in two matrix products; the per-step network then runs only the
convolutions (:class:`FilmUnetCore`, which can also be traced into a frozen TorchScript graph).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class UnetConfig:
    """Sizes of the U-Net; stored in ``config.json``."""

    down_dims: list[int] = field(default_factory=lambda: [64, 128, 256])
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 128

    def __post_init__(self) -> None:
        if not self.down_dims or min(self.down_dims) < 1:
            raise ValueError(f'down_dims {self.down_dims} is invalid; expected positive widths')
        bad = [dim for dim in self.down_dims if dim % self.n_groups]
        if bad:
            raise ValueError(f'down_dims {bad} are not divisible by n_groups {self.n_groups}')
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f'kernel_size is {self.kernel_size}; expected an odd positive size')
        if self.step_embed_dim < 2 or self.step_embed_dim % 2:
            raise ValueError(f'step_embed_dim is {self.step_embed_dim}; expected an even size '
                             '>= 2')

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'UnetConfig':
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown U-Net settings {unknown}; expected some of '
                             f'{sorted(known)}')
        return cls(**{**dict(data), 'down_dims': list(data.get('down_dims', [64, 128, 256]))})


def sinusoidal_embedding(timesteps: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sin/cos embedding of (possibly fractional) steps ``(N,) -> (N, dim)``."""
    half = dim // 2
    frequencies = torch.exp(torch.arange(half, device=timesteps.device, dtype=torch.float32)
                            * (-math.log(10000.0) / max(half - 1, 1)))
    angles = timesteps.float()[:, None] * frequencies[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class ConvNormMish(nn.Module):
    """Conv1d (same padding) -> GroupNorm -> Mish."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int,
                 n_groups: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.norm = nn.GroupNorm(n_groups, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.mish(self.norm(self.conv(x)))


class FilmResidualBlock(nn.Module):
    """Two conv blocks, FiLM ``h * scale + bias`` after the first, 1x1 skip conv if widths vary."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, kernel_size: int,
                 n_groups: int) -> None:
        super().__init__()
        self.first = ConvNormMish(in_channels, out_channels, kernel_size, n_groups)
        self.second = ConvNormMish(out_channels, out_channels, kernel_size, n_groups)
        self.film = nn.Linear(cond_dim, 2 * out_channels)
        self.skip = (nn.Conv1d(in_channels, out_channels, 1) if in_channels != out_channels
                     else nn.Identity())
        self.out_channels = out_channels

    def forward_film(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """Run with a precomputed FiLM vector ``(B, 2 * out_channels)`` (scale, then bias)."""
        scale = film[:, :self.out_channels, None]
        bias = film[:, self.out_channels:, None]
        h = self.first(x) * scale + bias
        return self.second(h) + self.skip(x)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.forward_film(x, self.film(F.mish(cond)))


class FilmUnetCore(nn.Module):
    """
    The convolutional body; conditioning arrives as one precomputed FiLM tensor.

    ``film`` is ``(B, total_film_width)``, the per-block scale/bias vectors laid end to end in
    block order (``film_slices``).
    """

    def __init__(self, action_dim: int, cond_dim: int, config: UnetConfig) -> None:
        super().__init__()
        dims = [action_dim, *config.down_dims]
        pairs = list(zip(dims[:-1], dims[1:]))
        kernel, groups = config.kernel_size, config.n_groups

        def block(cin: int, cout: int) -> FilmResidualBlock:
            return FilmResidualBlock(cin, cout, cond_dim, kernel, groups)

        self.down = nn.ModuleList()
        for index, (cin, cout) in enumerate(pairs):
            last = index == len(pairs) - 1
            self.down.append(nn.ModuleList([
                block(cin, cout), block(cout, cout),
                nn.Identity() if last else nn.Conv1d(cout, cout, 3, stride=2, padding=1)]))
        mid = config.down_dims[-1]
        self.mid = nn.ModuleList([block(mid, mid), block(mid, mid)])
        self.up = nn.ModuleList()
        for cin, cout in reversed(pairs[1:]):
            self.up.append(nn.ModuleList([
                block(2 * cout, cin), block(cin, cin),
                nn.ConvTranspose1d(cin, cin, 4, stride=2, padding=1)]))
        start = config.down_dims[0]
        self.final = nn.Sequential(ConvNormMish(start, start, kernel, groups),
                                   nn.Conv1d(start, action_dim, 1))
        self.levels = len(pairs)
        offsets, start_at = [], 0
        for residual in self.residual_blocks():
            offsets.append((start_at, start_at + 2 * residual.out_channels))
            start_at += 2 * residual.out_channels
        self.film_slices: list[tuple[int, int]] = offsets
        self.film_width = start_at

    def residual_blocks(self) -> list[FilmResidualBlock]:
        """List the FiLM blocks in the order their FiLM vectors are laid out."""
        blocks: list[FilmResidualBlock] = []
        for level in self.down:
            blocks += [level[0], level[1]]
        blocks += list(self.mid)
        for level in self.up:
            blocks += [level[0], level[1]]
        return blocks

    def forward(self, sample: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        """Denoise ``sample (B, H, d_a)`` given FiLM vectors ``(B, film_width)``."""
        x = sample.transpose(1, 2)
        slices = iter(self.film_slices)

        def film_of_next() -> torch.Tensor:
            start, stop = next(slices)
            return film[:, start:stop]

        skips: list[torch.Tensor] = []
        for first, second, downsample in self.down:
            x = first.forward_film(x, film_of_next())
            x = second.forward_film(x, film_of_next())
            skips.append(x)
            x = downsample(x)
        for residual in self.mid:
            x = residual.forward_film(x, film_of_next())
        for first, second, upsample in self.up:
            x = torch.cat([x, skips.pop()], dim=1)
            x = first.forward_film(x, film_of_next())
            x = second.forward_film(x, film_of_next())
            x = upsample(x)
        return self.final(x).transpose(1, 2)


class ConditionalUnet1D(nn.Module):
    """``(noisy chunk, step k, global condition) -> predicted eps or sample``, same shape."""

    def __init__(self, action_dim: int, global_cond_dim: int, config: UnetConfig) -> None:
        super().__init__()
        self.config = config
        embed = config.step_embed_dim
        self.step_mlp = nn.Sequential(nn.Linear(embed, 4 * embed), nn.Mish(),
                                      nn.Linear(4 * embed, embed))
        self.global_cond_dim = global_cond_dim
        self.core = FilmUnetCore(action_dim, embed + global_cond_dim, config)

    def step_embedding(self, timesteps: torch.Tensor) -> torch.Tensor:
        return self.step_mlp(sinusoidal_embedding(timesteps, self.config.step_embed_dim))

    def forward(self, sample: torch.Tensor, timesteps: torch.Tensor,
                global_cond: torch.Tensor) -> torch.Tensor:
        """Run the reference path (training, naive benchmark): condition recomputed per call."""
        if timesteps.dim() == 0:
            timesteps = timesteps.expand(sample.shape[0])
        cond = torch.cat([self.step_embedding(timesteps), global_cond], dim=-1)
        film = torch.cat([block.film(F.mish(cond)) for block in self.core.residual_blocks()],
                         dim=-1)
        return self.core(sample, film)

    def film_table(self, timesteps: torch.Tensor, global_cond: torch.Tensor) -> torch.Tensor:
        """
        Compute FiLM vectors of every (step, batch row): ``(K, B, film_width)``, in one matmul.

        Equal to what :meth:`forward` computes for each step, up to float rounding. Mish acts
        element-wise, so each block's FiLM layer splits into a part that depends only on the
        step k and a part that depends only on the observation; the stacked weights and the
        step part are cached per weight version and step schedule, so a chunk pays only for
        its observation.
        """
        step_part, obs_weight, obs_bias = self._film_step_cache(timesteps)
        obs_part = F.linear(F.mish(global_cond), obs_weight, obs_bias)
        return step_part[:, None, :] + obs_part[None, :, :]

    def _film_step_cache(self, timesteps: torch.Tensor
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        films = [block.film for block in self.core.residual_blocks()]
        params = [*self.step_mlp.parameters(), *(p for film in films for p in film.parameters())]
        key = (tuple(timesteps.tolist()), str(timesteps.device), torch.is_grad_enabled(),
               tuple((p.data_ptr(), p._version) for p in params))
        cached = getattr(self, '_film_cache', None)
        if cached is None or cached[0] != key:
            embed = self.config.step_embed_dim
            weights = torch.cat([film.weight for film in films], dim=0)
            biases = torch.cat([film.bias for film in films], dim=0)
            step_part = (F.mish(self.step_embedding(timesteps.to(weights.device)))
                         @ weights[:, :embed].T)
            cached = (key, (step_part, weights[:, embed:].contiguous(), biases))
            self._film_cache = cached
        return cached[1]


class PackedUnet(nn.Module):
    """
    Inference copy of a :class:`FilmUnetCore`: channels-last, every convolution one matmul.

    At batch 1 and horizons of 4-16 samples, library Conv1d kernels spend most of their time on
    layout handling rather than arithmetic. Here activations stay ``(B, L, C)``, a convolution is
    ``im2col`` (a strided view) followed by one ``addmm`` with a weight packed once as
    ``(C_in * k, C_out)``, and the transposed convolution is one matmul plus an overlap-add.
    Outputs equal :class:`FilmUnetCore`'s up to float rounding. ``dtype`` is the storage and matmul
    precision of the convolution weights; activations, GroupNorm, Mish and FiLM stay float32
    (bfloat16 halves the weight bytes each step must stream and uses the CPU's bfloat16 matmul
    units, while the cheap element-wise work keeps full precision). The weights are copied, so a
    packed net must be rebuilt after the source weights change.
    """

    def __init__(self, core: FilmUnetCore, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.film_slices = list(core.film_slices)
        self.blocks = nn.ModuleList([_PackedResidual(block, dtype)
                                     for block in core.residual_blocks()])
        self.down_layers = len(core.down)
        self.downsample = nn.ModuleList([_PackedConv(level[2], dtype, stride=2)
                                         for level in list(core.down)[:-1]])
        self.upsample = nn.ModuleList([_PackedTransposedConv(level[2], dtype)
                                       for level in core.up])
        self.final_block = _PackedConvNormMish(core.final[0], dtype)
        self.final_conv = _PackedConv(core.final[1], dtype)

    def forward(self, sample: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        x = sample.float()
        films = [film[:, start:stop] for start, stop in self.film_slices]
        blocks = iter(zip(self.blocks, films))
        skips: list[torch.Tensor] = []
        for level in range(self.down_layers):
            for _ in range(2):
                block, block_film = next(blocks)
                x = block(x, block_film)
            skips.append(x)
            if level < len(self.downsample):
                x = self.downsample[level](x)
        for _ in range(2):
            block, block_film = next(blocks)
            x = block(x, block_film)
        for upsample in self.upsample:
            x = torch.cat([x, skips.pop()], dim=-1)
            for _ in range(2):
                block, block_film = next(blocks)
                x = block(x, block_film)
            x = upsample(x)
        return self.final_conv(self.final_block(x))


class _PackedConv(nn.Module):
    """
    Conv1d on ``(B, L, C)`` as im2col + one ``linear``.

    No sizes are computed from shapes, so a trace of it records no shape arithmetic.
    """

    def __init__(self, conv: nn.Conv1d, dtype: torch.dtype, stride: int = 1) -> None:
        super().__init__()
        out_channels, in_channels, kernel = conv.weight.shape
        self.kernel, self.stride, self.padding = kernel, stride, conv.padding[0]
        packed = conv.weight.detach().reshape(out_channels, in_channels * kernel)
        self.register_buffer('weight', packed.to(dtype).contiguous(), persistent=False)
        self.register_buffer('bias', conv.bias.detach().to(dtype).clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.kernel == 1 and self.stride == 1:
            cols = x
        else:
            padded = F.pad(x, (0, 0, self.padding, self.padding))
            cols = padded.unfold(1, self.kernel, self.stride).flatten(2)
        if self.weight.dtype == torch.float32:
            return F.linear(cols, self.weight, self.bias)
        return F.linear(cols.to(self.weight.dtype), self.weight, self.bias).float()


class _PackedTransposedConv(nn.Module):
    """
    ConvTranspose1d(k=4, stride=2, padding=1) on ``(B, L, C)``: matmul, then overlap-add.

    Output position ``2m`` receives taps 1 (from input ``m``) and 3 (from ``m - 1``); position
    ``2m + 1`` receives taps 2 (from ``m``) and 0 (from ``m + 1``).
    """

    def __init__(self, conv: nn.ConvTranspose1d, dtype: torch.dtype) -> None:
        super().__init__()
        in_channels, out_channels, kernel = conv.weight.shape
        if (kernel, conv.stride[0], conv.padding[0]) != (4, 2, 1):
            raise ValueError('only ConvTranspose1d(kernel 4, stride 2, padding 1) can be packed')
        packed = conv.weight.detach().permute(0, 2, 1).reshape(in_channels, 4 * out_channels)
        self.register_buffer('weight', packed.to(dtype).contiguous(), persistent=False)
        self.register_buffer('bias', conv.bias.detach().float().clone(), persistent=False)
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        taps = (x.to(self.weight.dtype) @ self.weight).float()
        taps = taps.unflatten(-1, (4, self.out_channels))
        even = taps[:, :, 1] + F.pad(taps[:, :-1, 3], (0, 0, 1, 0))
        odd = taps[:, :, 2] + F.pad(taps[:, 1:, 0], (0, 0, 0, 1))
        return torch.stack([even, odd], dim=2).flatten(1, 2) + self.bias


class _PackedConvNormMish(nn.Module):
    """Packed conv, GroupNorm over (time, channels of a group), Mish; channels-last."""

    def __init__(self, block: ConvNormMish, dtype: torch.dtype) -> None:
        super().__init__()
        self.conv = _PackedConv(block.conv, dtype)
        self.groups = block.norm.num_groups
        self.eps = block.norm.eps
        self.register_buffer('gamma', block.norm.weight.detach().float().clone(),
                             persistent=False)
        self.register_buffer('beta', block.norm.bias.detach().float().clone(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        normed = F.group_norm(self.conv(x).transpose(1, 2), self.groups, self.gamma, self.beta,
                              self.eps)
        return F.mish(normed).transpose(1, 2)


class _PackedResidual(nn.Module):
    """Packed :class:`FilmResidualBlock` taking its precomputed FiLM vector."""

    def __init__(self, block: FilmResidualBlock, dtype: torch.dtype) -> None:
        super().__init__()
        self.first = _PackedConvNormMish(block.first, dtype)
        self.second = _PackedConvNormMish(block.second, dtype)
        self.skip = _PackedConv(block.skip, dtype) if isinstance(block.skip, nn.Conv1d) else None
        self.out_channels = block.out_channels

    def forward(self, x: torch.Tensor, film: torch.Tensor) -> torch.Tensor:
        scale = film[:, None, :self.out_channels]
        bias = film[:, None, self.out_channels:]
        h = self.second(torch.addcmul(bias, self.first(x), scale))
        return h + (x if self.skip is None else self.skip(x))
