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
``dp-tt-ros bench inference``: milliseconds per Diffusion Policy action chunk, and why.

The policy is built at the requested size with freshly initialised weights (speed does not depend
on the weight values) and a low-dim observation of ``--obs-dim`` numbers. ``act()`` with batch 1
is timed for every U-Net backend in the same run, round-robin so that load from other processes
hits all of them alike:

* ``reference``: the condition (step embedding MLP + every FiLM projection) recomputed at every
  denoising step under ``torch.no_grad``, library Conv1d: what diffusion_policy does;
* ``reference_inference_mode``: the same under ``torch.inference_mode``;
* ``precomputed``: FiLM vectors for all steps computed once per chunk;
* ``packed``: plus the channels-last im2col/matmul U-Net;
* ``traced`` (the default ``act()`` path): plus a frozen TorchScript graph;
* ``traced_bf16``: the default path with the convolution weights and matmuls in bfloat16
  (element-wise work stays float32): half the weight bytes to stream per step.

Alongside: denoiser GFLOP per call (counted by ``torch.utils.flop_counter``), achieved GFLOP/s,
the matmul peak (a large ``torch.mm``) and the memory stream bandwidth measured in the same run,
and the bytes of convolution weights one denoiser call must read (FiLM weights are not read per
step on the fast path), which bound large nets at batch 1.
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Callable

import numpy as np
import torch
from tqdm import tqdm

from dp_tt_ros.bench.common import machine_info, summarize, write_json
from dp_tt_ros.cli import CommandError
from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.diffusion.modeling import DiffusionPolicy
from dp_tt_ros.policies.diffusion.schedulers import SAMPLERS

VARIANTS = ('reference', 'reference_inference_mode', 'precomputed', 'packed', 'traced',
            'traced_bf16')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--down-dims', default='64,128,256',
                        help='U-Net widths, comma separated (default 64,128,256)')
    parser.add_argument('--horizon', type=int, default=16)
    parser.add_argument('--action-dim', type=int, default=8)
    parser.add_argument('--obs-dim', type=int, default=20,
                        help='low-dim observation width per step (default 20)')
    parser.add_argument('--n-obs-steps', type=int, default=2)
    parser.add_argument('--goal-dim', type=int, default=0)
    parser.add_argument('--inference-steps', type=int, default=10)
    parser.add_argument('--train-steps', type=int, default=100)
    parser.add_argument('--sampler', choices=SAMPLERS, default='ddim')
    parser.add_argument('--kernel-size', type=int, default=5)
    parser.add_argument('--step-embed-dim', type=int, default=256)
    parser.add_argument('--repeats', type=int, default=30,
                        help='timed chunks per variant (default 30)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed chunks per variant')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch intra-op threads (default: leave torch\'s choice)')
    parser.add_argument('--variants', default=','.join(VARIANTS),
                        help=f'comma-separated subset of {",".join(VARIANTS)}')


def parse_dims(text: str) -> list[int]:
    try:
        dims = [int(part) for part in text.split(',') if part.strip()]
    except ValueError as error:
        raise CommandError(f'--down-dims {text!r} is not a comma-separated list of integers') \
            from error
    if not dims or min(dims) < 1:
        raise CommandError(f'--down-dims {text!r}: expected positive widths such as 64,128,256')
    return dims


def build_policy(args: argparse.Namespace) -> DiffusionPolicy:
    """Create the benchmarked policy; settings errors become command errors."""
    spec = PolicySpec(policy_type='diffusion', obs_shapes={'state': [args.obs_dim]},
                      goal_dim=args.goal_dim, action_dim=args.action_dim, horizon=args.horizon,
                      n_action_steps=min(8, args.horizon), n_obs_steps=args.n_obs_steps)
    try:
        policy = DiffusionPolicy.from_config({
            'spec': spec.to_dict(),
            'noise': {'num_train_timesteps': args.train_steps},
            'unet': {'down_dims': parse_dims(args.down_dims), 'kernel_size': args.kernel_size,
                     'step_embed_dim': args.step_embed_dim},
            'inference': {'num_inference_steps': args.inference_steps,
                          'sampler': args.sampler},
        })
    except ValueError as error:
        raise CommandError(str(error)) from error
    if args.horizon % 2 ** (len(policy.config.unet.down_dims) - 1):
        raise CommandError(f'--horizon {args.horizon} must be divisible by '
                           f'{2 ** (len(policy.config.unet.down_dims) - 1)} for '
                           f'{len(policy.config.unet.down_dims)} U-Net levels')
    return policy.eval()


def variant_runner(policy: DiffusionPolicy, variant: str, context: np.ndarray,
                   goal: np.ndarray | None) -> Callable[[], np.ndarray]:
    """Return a zero-argument callable producing one chunk the way ``variant`` does."""
    backend = 'reference' if variant.startswith('reference') else variant.split('_')[0]
    precision = 'bfloat16' if variant.endswith('bf16') else 'float32'

    def run() -> np.ndarray:
        policy.set_inference_options(backend=backend, precision=precision)
        if variant == 'reference':
            with torch.no_grad():
                return policy.act(context, goal)
        return policy.act(context, goal)
    return run


def denoiser_gflop(policy: DiffusionPolicy, context: np.ndarray) -> float:
    """GFLOP of one reference denoiser call (convs, FiLM and step-embedding matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    cond = torch.as_tensor(context).flatten(1)
    if policy.goal_embedding is not None:
        cond = torch.cat([cond, policy.goal_embedding(None, 1)], dim=-1)
    sample = torch.zeros(1, policy.horizon, policy.action_dim)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        policy.denoiser(sample, torch.tensor([0]), cond)
    return counter.get_total_flops() / 1e9


def matmul_peak_gflops(size: int = 2048, repeats: int = 5) -> float:
    """Median GFLOP/s of a square fp32 ``torch.mm``: the compute ceiling of this machine."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size ** 3 / float(np.median(times)) / 1e9


def stream_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """Median GB/s of summing a tensor far larger than the caches: the weight-streaming rate."""
    values = torch.ones(megabytes * 2 ** 20 // 4)
    values.sum()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        values.sum()
        times.append(time.perf_counter() - start)
    return megabytes / 1024 / float(np.median(times))


def run(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise CommandError(f'--threads {args.threads}: expected 0 (torch default) or more')
    if args.threads:
        torch.set_num_threads(args.threads)
    variants = [name.strip() for name in args.variants.split(',') if name.strip()]
    unknown = sorted(set(variants) - set(VARIANTS))
    if unknown or not variants:
        raise CommandError(f'--variants {args.variants!r}: unknown {unknown}; expected a subset '
                           f'of {",".join(VARIANTS)}')
    if args.repeats < 1 or args.warmup < 0:
        raise CommandError(f'--repeats {args.repeats} / --warmup {args.warmup}: expected '
                           'repeats >= 1 and warmup >= 0')
    torch.manual_seed(0)
    policy = build_policy(args)
    rng = np.random.default_rng(0)
    context = rng.uniform(-1, 1, (1, policy.n_obs_steps, policy.context_dim)).astype(np.float32)
    goal = (rng.uniform(-1, 1, (1, args.goal_dim)).astype(np.float32) if args.goal_dim
            else None)
    runners = {name: variant_runner(policy, name, context, goal) for name in variants}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    with tqdm(total=len(variants) * (args.warmup + args.repeats), desc='bench inference',
              unit='chunk') as bar:
        for round_index in range(args.warmup + args.repeats):
            for name, runner in runners.items():
                start = time.perf_counter()
                runner()
                elapsed_ms = (time.perf_counter() - start) * 1e3
                if round_index >= args.warmup:
                    samples[name].append(elapsed_ms)
                bar.update()
    gflop = denoiser_gflop(policy, context)
    weight_bytes = sum(param.numel() * param.element_size()
                       for name, param in policy.denoiser.core.named_parameters()
                       if '.film.' not in name)
    peak = matmul_peak_gflops()
    bandwidth = stream_bandwidth_gbs()
    stats = {name: summarize(values) for name, values in samples.items()}
    per_variant: dict[str, Any] = {}
    for name, stat in stats.items():
        per_variant[name] = {
            'ms_per_chunk_median': stat['median'], 'ms_per_chunk_p90': stat['p90'],
            'ms_per_chunk': stat,
            'gflops_achieved': gflop * args.inference_steps / (stat['median'] / 1e3),
        }
    headline = 'traced' if 'traced' in stats else variants[0]
    result: dict[str, Any] = {
        'benchmark': 'inference',
        'config': {key: getattr(args, key) for key in (
            'down_dims', 'horizon', 'action_dim', 'obs_dim', 'n_obs_steps', 'goal_dim',
            'inference_steps', 'train_steps', 'sampler', 'kernel_size', 'step_embed_dim',
            'repeats', 'warmup')},
        'machine': machine_info(),
        'default_path': headline,
        'ms_per_chunk_median': per_variant[headline]['ms_per_chunk_median'],
        'ms_per_chunk_p90': per_variant[headline]['ms_per_chunk_p90'],
        'denoiser_gflop_per_call': gflop,
        'gflops_achieved': per_variant[headline]['gflops_achieved'],
        'matmul_peak_gflops': peak,
        'fraction_of_matmul_peak': per_variant[headline]['gflops_achieved'] / peak,
        'stream_bandwidth_gbs': bandwidth,
        'denoiser_weight_mb': weight_bytes / 2 ** 20,
        'weight_streaming_ms_per_chunk_bound': (
            weight_bytes / 2 ** 30 / bandwidth * args.inference_steps * 1e3),
        'variants': per_variant,
    }
    if 'reference' in stats and headline != 'reference':
        result['speedup_vs_reference'] = stats['reference']['median'] / stats[headline]['median']
    write_json(result, args.json)
    return 0
