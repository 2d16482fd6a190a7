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

With ``--device cuda`` the variants are ``reference``, ``precomputed`` (eager, FiLM once per
chunk), ``cuda_graph`` (the whole denoising loop replayed as one CUDA graph), ``traced`` (the
default: that graph around a U-Net fused by ``torch.compile``) and ``traced_bf16`` (the same under
bfloat16 autocast); the timed call includes copying the chunk back to the host.

``--batch B`` times calls that denoise B chunks at once, as the batched evaluator does, and
reports per-chunk times: the weights stream once per call, so large nets turn compute-bound.

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
CUDA_VARIANTS = ('reference', 'precomputed', 'cuda_graph', 'traced', 'traced_bf16')


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
    parser.add_argument('--batch', type=int, default=1,
                        help='chunks per act() call, as the batched evaluator asks for them; '
                             'times are per chunk (default 1: the latency of one robot)')
    parser.add_argument('--repeats', type=int, default=30,
                        help='timed chunks per variant (default 30)')
    parser.add_argument('--warmup', type=int, default=3, help='untimed chunks per variant')
    parser.add_argument('--threads', type=int, default=0,
                        help='torch intra-op threads (default: leave torch\'s choice)')
    parser.add_argument('--variants',
                        help=f'comma-separated subset of {",".join(VARIANTS)} (default: all; '
                             f'on CUDA {",".join(CUDA_VARIANTS)})')
    parser.add_argument('--device', default='cpu', help='torch device: cpu (default) or cuda')


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
    backend = 'reference' if variant.startswith('reference') else variant.removesuffix('_bf16')
    precision = 'bfloat16' if variant.endswith('bf16') else 'float32'
    compile_unet = variant != 'cuda_graph'
    if variant == 'cuda_graph':
        backend = 'traced'

    def run() -> np.ndarray:
        policy.set_inference_options(backend=backend, precision=precision, compile=compile_unet)
        if variant == 'reference':
            with torch.no_grad():
                return policy.act(context, goal)
        return policy.act(context, goal)
    return run


def denoiser_gflop(policy: DiffusionPolicy, context: np.ndarray) -> float:
    """GFLOP of one reference denoiser call (convs, FiLM and step-embedding matmuls)."""
    from torch.utils.flop_counter import FlopCounterMode

    device = policy.device
    cond = torch.as_tensor(context, device=device).flatten(1)
    if policy.goal_embedding is not None:
        cond = torch.cat([cond, policy.goal_embedding(None, 1)], dim=-1)
    sample = torch.zeros(1, policy.horizon, policy.action_dim, device=device)
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        policy.denoiser(sample, torch.tensor([0], device=device), cond)
    return counter.get_total_flops() / 1e9


def _median_seconds(work: Callable[[], Any], device: torch.device, repeats: int) -> float:
    work()
    times = []
    for _ in range(repeats):
        _synchronize(device)
        start = time.perf_counter()
        work()
        _synchronize(device)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _synchronize(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def matmul_peak_gflops(device: torch.device, dtype: torch.dtype = torch.float32,
                       repeats: int = 5) -> float:
    """Median GFLOP/s of a large square ``torch.mm``: the compute ceiling of this device."""
    size = 8192 if device.type == 'cuda' else 2048
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    return 2 * size ** 3 / _median_seconds(lambda: torch.mm(a, b), device, repeats) / 1e9


def stream_bandwidth_gbs(device: torch.device, megabytes: int = 256, repeats: int = 5) -> float:
    """Median GB/s of summing a tensor far larger than the caches: the weight-streaming rate."""
    values = torch.ones(megabytes * 2 ** 20 // 4, device=device)
    return megabytes / 1024 / _median_seconds(values.sum, device, repeats)


def resolve_device(name: str) -> torch.device:
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise CommandError(f'--device {name!r} is not a torch device such as cpu or cuda') \
            from error
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise CommandError(f'--device {name}: torch sees no CUDA device on this machine')
    if device.type not in ('cpu', 'cuda'):
        raise CommandError(f'--device {name}: expected cpu or cuda')
    return device


def run(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise CommandError(f'--threads {args.threads}: expected 0 (torch default) or more')
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    known = CUDA_VARIANTS if device.type == 'cuda' else VARIANTS
    variants = [name.strip() for name in (args.variants or ','.join(known)).split(',')
                if name.strip()]
    unknown = sorted(set(variants) - set(known))
    if unknown or not variants:
        raise CommandError(f'--variants {args.variants!r}: unknown {unknown}; expected a subset '
                           f'of {",".join(known)} on {device.type}')
    if args.batch < 1:
        raise CommandError(f'--batch {args.batch}: expected at least 1 chunk per call')
    if args.repeats < 1 or args.warmup < 0:
        raise CommandError(f'--repeats {args.repeats} / --warmup {args.warmup}: expected '
                           'repeats >= 1 and warmup >= 0')
    torch.manual_seed(0)
    policy = build_policy(args).to(device)
    rng = np.random.default_rng(0)
    context = rng.uniform(-1, 1, (args.batch, policy.n_obs_steps, policy.context_dim)
                          ).astype(np.float32)
    goal = (rng.uniform(-1, 1, (args.batch, args.goal_dim)).astype(np.float32) if args.goal_dim
            else None)
    runners = {name: variant_runner(policy, name, context, goal) for name in variants}
    samples: dict[str, list[float]] = {name: [] for name in variants}
    with tqdm(total=len(variants) * (args.warmup + args.repeats), desc='bench inference',
              unit='chunk') as bar:
        for round_index in range(args.warmup + args.repeats):
            for name, runner in runners.items():
                start = time.perf_counter()
                runner()
                elapsed_ms = (time.perf_counter() - start) * 1e3 / args.batch
                if round_index >= args.warmup:
                    samples[name].append(elapsed_ms)
                bar.update()
    gflop = denoiser_gflop(policy, context[:1])
    weight_bytes = sum(param.numel() * param.element_size()
                       for name, param in policy.denoiser.core.named_parameters()
                       if '.film.' not in name)
    peak = matmul_peak_gflops(device)
    peak_bf16 = matmul_peak_gflops(device, torch.bfloat16)
    bandwidth = stream_bandwidth_gbs(device)
    stats = {name: summarize(values) for name, values in samples.items()}
    per_variant: dict[str, Any] = {}
    for name, stat in stats.items():
        achieved = gflop * args.inference_steps / (stat['median'] / 1e3)
        per_variant[name] = {
            'ms_per_chunk_median': stat['median'], 'ms_per_chunk_p90': stat['p90'],
            'ms_per_chunk': stat, 'gflops_achieved': achieved,
            'fraction_of_matmul_peak_same_dtype': achieved / (
                peak_bf16 if name.endswith('_bf16') else peak),
        }
    headline = 'traced' if 'traced' in stats else variants[0]
    result: dict[str, Any] = {
        'benchmark': 'inference',
        'config': {key: getattr(args, key) for key in (
            'down_dims', 'horizon', 'action_dim', 'obs_dim', 'n_obs_steps', 'goal_dim',
            'inference_steps', 'train_steps', 'sampler', 'kernel_size', 'step_embed_dim',
            'batch', 'repeats', 'warmup', 'device')},
        'machine': machine_info(),
        'device_name': (torch.cuda.get_device_name(device) if device.type == 'cuda'
                        else 'cpu'),
        'default_path': headline,
        'ms_per_chunk_median': per_variant[headline]['ms_per_chunk_median'],
        'ms_per_chunk_p90': per_variant[headline]['ms_per_chunk_p90'],
        'denoiser_gflop_per_call': gflop,
        'gflops_achieved': per_variant[headline]['gflops_achieved'],
        'matmul_peak_gflops': peak,
        'fraction_of_matmul_peak': per_variant[headline]['gflops_achieved'] / peak,
        'matmul_peak_gflops_bf16': peak_bf16,
        'stream_bandwidth_gbs': bandwidth,
        'denoiser_weight_mb': weight_bytes / 2 ** 20,
        'weight_streaming_ms_per_chunk_bound': (
            weight_bytes / 2 ** 30 / bandwidth * args.inference_steps * 1e3 / args.batch),
        'variants': per_variant,
    }
    if 'reference' in stats and headline != 'reference':
        result['speedup_vs_reference'] = stats['reference']['median'] / stats[headline]['median']
    write_json(result, args.json)
    return 0
