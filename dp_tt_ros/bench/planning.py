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
``dp-tt-ros bench planning``: Trajectory Transformer planning with and without the KV cache.

Both planners run the same model, beam width, expansion factor and horizon on the same windows;
they differ only in how logits are computed: ``cached`` appends each new token to a
preallocated per-layer KV cache (reordered with the beams), ``reference`` re-runs the whole
window for every token, as trajectory-transformer's planner does. Timings alternate between the
two so load from other processes hits both alike; medians and their ratio come from one run.

Without ``--checkpoint`` the model has reach-task dimensions (state = 8 joints + 3 goal values by
default, 8-d actions, the gripper constant as in reach demos) and the default architecture with
freshly initialised weights, its tokenizer fitted on random data: planning cost does not depend on
the weight values. ``sequential_token_steps`` counts the model calls of one plan: tokens the
planner knows (constant dims, the goal) join the next call. The achieved replanning rate is
stated against the 10 Hz control rate of the tasks.

Plans start from a history prefix of ``context_transitions`` past transitions, as the policy
plans (the checkpoint's planning option unless ``--context-transitions`` says otherwise): the
prefix lengthens the prefill and every attention call. Its transitions are random bin centres;
the cost depends on the prefix length, not on its values.

``kernel_floor`` (default setting) times each kernel of one cached token step on its own, hot in
cache, and adds them up: what a token step would cost with no framework overhead at all. The
reference's cost per token step over that floor bounds the speed-up any Python-side saving can
reach at this model size.
"""

from __future__ import annotations

import argparse
import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dp_tt_ros.bench.common import machine_info, summarize, write_json
from dp_tt_ros.cli import CommandError
from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.checkpoint import CheckpointError, load_policy
from dp_tt_ros.policies.transformer.configuration import MODEL_DEFAULTS
from dp_tt_ros.policies.transformer.gpt import TrajectoryGPT
from dp_tt_ros.policies.transformer.modeling import TrajectoryTransformerPolicy
from dp_tt_ros.policies.transformer.planner import BeamPlanner, PastTransition, PlanningOptions

CONTROL_DT_S = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--checkpoint', help='time this transformer checkpoint instead of a '
                        'freshly initialised reach-sized model')
    parser.add_argument('--beam-widths', type=int, nargs='+', default=[8, 32],
                        help='beam widths to time (default: 8 32)')
    parser.add_argument('--horizons', type=int, nargs='+', default=[4, 8],
                        help='planning horizons in transitions (default: 4 8)')
    parser.add_argument('--n-expand', type=int, default=PlanningOptions.n_expand)
    parser.add_argument('--mode', choices=('value', 'likelihood', 'return'),
                        default=PlanningOptions.mode,
                        help=f'planning mode (default {PlanningOptions.mode})')
    parser.add_argument('--repeats', type=int, default=5,
                        help='timed cached plans per setting (default 5)')
    parser.add_argument('--reference-repeats', type=int, default=1,
                        help='timed full re-forward plans per setting (default 1; they are slow)')
    parser.add_argument('--no-default-setting', action='store_true',
                        help='skip the default beam width and horizon (quick runs)')
    parser.add_argument('--context-transitions', type=int,
                        help='past transitions before the current state (default: the '
                             "checkpoint's planning option; 0 for a fresh model)")
    parser.add_argument('--tracked-targets', choices=('true', 'false'),
                        help="compute predicted states (true) or decode them (false); default: "
                             "the checkpoint's planning option, false for a fresh model")
    parser.add_argument('--threads', type=int, default=1,
                        help='torch intra-op threads (default 1)')
    parser.add_argument('--state-dim', type=int, default=11,
                        help='state width of the fresh model (default 11: joints + goal, as the '
                             'reach checkpoint sees)')
    for name in ('n_layer', 'n_head', 'n_embd', 'n_bins', 'window_transitions'):
        parser.add_argument(f'--{name.replace("_", "-")}', type=int,
                            default=MODEL_DEFAULTS[name],
                            help=f'fresh model {name} (default {MODEL_DEFAULTS[name]})')


def fresh_policy(args: argparse.Namespace) -> TrajectoryTransformerPolicy:
    """Build a reach-sized policy through the production ``build`` path on random arrays."""
    goal_dim = 3
    object_dim = args.state_dim - 8 - goal_dim
    if object_dim < 0:
        raise CommandError(f'--state-dim must be >= 11 (8 joints + 3 goal), got {args.state_dim}')
    obs_shapes = {'joint_pos': [8]}
    if object_dim:
        obs_shapes['object_state'] = [object_dim]
    spec = PolicySpec(policy_type='transformer', obs_shapes=obs_shapes, goal_dim=goal_dim)
    rng = np.random.default_rng(0)
    rows = 2000
    data: dict[str, np.ndarray] = {key: rng.uniform(-1, 1, (rows, shape[0]))
                                   for key, shape in obs_shapes.items()}
    length = 50
    # As in reach demos: one goal per episode, and the gripper stays open (constant dims).
    goals = np.repeat(rng.uniform(-1, 1, (rows // length, goal_dim)), length, axis=0)
    data.update(goal=goals, action=rng.uniform(-1, 1, (rows, 8)),
                reward=-rng.uniform(0, 1, rows), episode_ends=np.arange(length, rows + 1, length))
    data['joint_pos'][:, 7] = data['action'][:, 7] = 0.04
    try:
        return TrajectoryTransformerPolicy.build(
            data, spec, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd,
            n_bins=args.n_bins, window_transitions=args.window_transitions, dropout=0.0)
    except ValueError as error:
        raise CommandError(f'bad model size: {error}') from error


def run(args: argparse.Namespace) -> int:
    for name in ('repeats', 'threads', 'n_expand'):
        if getattr(args, name) < 1:
            raise CommandError(f'--{name.replace("_", "-")} must be >= 1, got '
                               f'{getattr(args, name)}')
    if args.reference_repeats < 0:
        raise CommandError(f'--reference-repeats must be >= 0, got {args.reference_repeats}')
    if args.context_transitions is not None and args.context_transitions < 0:
        raise CommandError(f'--context-transitions must be >= 0, got {args.context_transitions}')
    bad = [value for value in args.beam_widths + args.horizons if value < 1]
    if bad:
        raise CommandError(f'beam widths and horizons must be >= 1, got {bad}')
    torch.set_num_threads(args.threads)
    if args.checkpoint:
        try:
            policy = load_policy(args.checkpoint)
        except CheckpointError as error:
            raise CommandError(str(error)) from error
        if not isinstance(policy, TrajectoryTransformerPolicy):
            raise CommandError(f'{args.checkpoint} holds a {policy.spec.policy_type} policy; '
                               'expected a transformer checkpoint')
    else:
        policy = fresh_policy(args)
    policy.eval()
    if args.tracked_targets is not None:
        try:
            policy.set_inference_options(tracked_targets=args.tracked_targets == 'true')
        except ValueError as error:
            raise CommandError(str(error)) from error
    planner = policy.planner
    defaults = PlanningOptions()
    default_setting = (defaults.beam_width, defaults.planning_horizon)
    settings = {(beam, horizon) for beam in args.beam_widths for horizon in args.horizons}
    if not args.no_default_setting:
        settings.add(default_setting)
    state = planner.tokenizer.centres[:planner.state_dim, planner.tokenizer.n_bins // 2].numpy()
    base = policy.options.updated(mode=args.mode, n_expand=args.n_expand,
                                  target_return=float(planner.tokenizer.centres[-1].mean()))
    if args.context_transitions is not None:
        base = base.updated(context_transitions=args.context_transitions)
    history = random_history(planner, base.context_transitions)
    rows = []
    total = len(settings) * (args.repeats + args.reference_repeats + 1)
    with tqdm(total=total, desc='bench planning', unit='plan') as bar:
        for beam, horizon in sorted(settings):
            options = base.updated(beam_width=beam, planning_horizon=horizon)
            rows.append(time_setting(planner, state, history, options, args, bar))
    result: dict[str, Any] = {
        'benchmark': 'planning',
        'machine': machine_info(),
        'model': {**policy.gpt_config.to_dict(), 'state_dim': planner.state_dim,
                  'action_dim': planner.action_dim,
                  'source': args.checkpoint or 'fresh weights, reach dimensions'},
        'mode': args.mode,
        'n_expand': args.n_expand,
        'context_transitions': base.context_transitions,
        'tracked_targets': base.tracked_targets,
        'settings': rows,
    }
    for row in rows:
        if (row['beam_width'], row['planning_horizon']) == default_setting:
            result['default'] = {**row, **replanning(row['cached_ms']['median'])}
            if 'reference_ms' in row:
                options = base.updated(beam_width=row['beam_width'],
                                       planning_horizon=row['planning_horizon'])
                result['kernel_floor'] = kernel_floor(planner.model, row, options)
    write_json(result, args.json)
    return 0


def random_history(planner: BeamPlanner, count: int, seed: int = 0) -> list[PastTransition]:
    """Return ``count`` past transitions of random bin centres (absolute actions)."""
    centres = planner.tokenizer.centres.numpy()
    dims = planner.state_dim + planner.action_dim + 1
    picks = np.random.default_rng(seed).integers(0, centres.shape[1], (count, dims))
    rows = centres[np.arange(dims), picks]
    states, actions = rows[:, :planner.state_dim], rows[:, planner.state_dim:dims - 1]
    if planner.offset_dims is not None:
        actions = actions + states[:, planner.offset_dims]
    return [PastTransition(state, action, float(row[-1]))
            for state, action, row in zip(states, actions, rows)]


def time_setting(planner: Any, state: np.ndarray, history: list[PastTransition],
                 options: PlanningOptions, args: argparse.Namespace,
                 bar: tqdm) -> dict[str, Any]:
    """Time cached and full re-forward plans alternately; one untimed warm-up plan first."""
    cached_options = options.updated(use_cache=True)
    reference_options = options.updated(use_cache=False)
    planner.plan(state, cached_options, history=history)
    bar.update(1)
    cached, reference = [], []
    for repeat in range(max(args.repeats, args.reference_repeats)):
        if repeat < args.repeats:
            cached.append(_timed_ms(planner, state, history, cached_options))
            bar.update(1)
        if repeat < args.reference_repeats:
            reference.append(_timed_ms(planner, state, history, reference_options))
            bar.update(1)
    tokens = planner.model_calls(options.planning_horizon,
                                 tracked_targets=options.tracked_targets)
    row: dict[str, Any] = {
        'beam_width': options.beam_width,
        'planning_horizon': options.planning_horizon,
        'sequential_token_steps': tokens,
        'cached_ms': summarize(cached),
        'cached_ms_per_token_step': float(np.median(cached)) / tokens,
    }
    if reference:
        row['reference_ms'] = summarize(reference)
        row['speedup_median'] = float(np.median(reference) / np.median(cached))
    return row


def _timed_ms(planner: Any, state: np.ndarray, history: list[PastTransition],
              options: PlanningOptions) -> float:
    start = time.perf_counter()
    planner.plan(state, options, history=history)
    return (time.perf_counter() - start) * 1e3


def replanning(plan_ms: float) -> dict[str, Any]:
    """State the replanning rate one plan time allows against the 10 Hz control rate."""
    every = max(1, math.ceil(plan_ms / (CONTROL_DT_S * 1e3)))
    return {
        'plans_per_second': 1e3 / plan_ms,
        'replans_every_control_step': every == 1,
        'replan_every_n_control_steps': every,
    }


def kernel_floor(model: TrajectoryGPT, row: dict[str, Any],
                 options: PlanningOptions) -> dict[str, Any]:
    """Sum of one cached token step's kernels, each timed alone at the setting's row count."""
    config = model.config
    rows = options.beam_width * options.n_expand
    position = min(config.block_size - 1, row['sequential_token_steps'])
    end = position + 1
    head_dim = config.n_embd // config.n_head
    x = torch.randn(rows, config.n_embd)
    qkv = torch.randn(rows, 3 * config.n_embd)
    cache = torch.randn(2, rows, config.n_head, config.block_size, head_dim)
    bias = model.attn_bias[position:end, :end]
    bins = torch.zeros(rows, 1, dtype=torch.long)

    def cache_write() -> None:
        query, key, value = qkv.view(rows, 3, config.n_head, 1, -1).unbind(1)
        cache[0, :, :, position] = key[:, :, 0]
        cache[1, :, :, position] = value[:, :, 0]

    def attention() -> torch.Tensor:
        query = qkv.view(rows, 3, config.n_head, 1, -1)[:, 0]
        return F.scaled_dot_product_attention(query, cache[0, :, :, :end], cache[1, :, :, :end],
                                              attn_mask=bias)

    block = model.blocks[0]
    per_layer = [lambda: block.ln_1(x), lambda: block.attn.qkv(x), cache_write, attention,
                 lambda: block.attn.proj(x), lambda: x + x, lambda: block.ln_2(x),
                 lambda: block.mlp(x), lambda: x + x]
    once = [lambda: model.embed(bins, position), lambda: model.ln_f(x),
            lambda: torch.addmm(model.head_bias[0], x, model.head_weight[0])]
    with torch.no_grad():
        layer_us = sum(_kernel_us(kernel) for kernel in per_layer)
        step_us = config.n_layer * layer_us + sum(_kernel_us(kernel) for kernel in once)
    reference_per_token = float(row['reference_ms']['median']) / row['sequential_token_steps']
    return {
        'rows': rows,
        'us_per_token_step': step_us,
        'measured_us_per_token_step': row['cached_ms_per_token_step'] * 1e3,
        'reference_us_per_token_step': reference_per_token * 1e3,
        'speedup_bound': reference_per_token * 1e3 / step_us,
    }


def _kernel_us(kernel: Any, repeats: int = 2000) -> float:
    """Median of five timed batches of ``repeats`` calls, after one warm-up batch."""
    batches = []
    for batch in range(6):
        start = time.perf_counter()
        for _ in range(repeats):
            kernel()
        if batch:
            batches.append((time.perf_counter() - start) / repeats * 1e6)
    return float(np.median(batches))
