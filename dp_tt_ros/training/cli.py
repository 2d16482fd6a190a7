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
``dp-tt-ros train``: train a diffusion, transformer or bc policy on an episode store.

``--policy sac`` trains online instead (stable-baselines3 SAC in the ``--task`` environment, no
``--data``; see ``dp_tt_ros.policies.sac.training``) and exports its actor as a checkpoint.

Examples::

    dp-tt-ros train --policy diffusion --data runs/reach.zarr --out runs/dp_reach --steps 3000
    dp-tt-ros train --policy sac --task reach --out runs/sac_reach --steps 30000 --seed 0
    dp-tt-ros train --policy diffusion --data D --out O --config unet.down_dims=[64,128] horizon=16
    dp-tt-ros train ... --resume            # continue a killed run from its last checkpoint
    torchrun --nproc_per_node 2 -m dp_tt_ros train ...   # DDP; --batch-size is per process
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any, Sequence

import torch

from dp_tt_ros.cli import CommandError
from dp_tt_ros.policies.checkpoint import CheckpointError
from dp_tt_ros.training.state import TrainingStateError
from dp_tt_ros.training.trainer import POLICY_TYPES, TrainConfig, Trainer, TrainingError

ONLINE_POLICY = 'sac'
SAC_UNSUPPORTED = ('data', 'weight_decay', 'warmup_steps', 'grad_clip', 'no_ema',
                   'checkpoint_every', 'eval_every', 'eval_task', 'eval_episodes', 'resume')


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--policy', required=True, choices=(*POLICY_TYPES, ONLINE_POLICY),
                        help='policy family to train')
    parser.add_argument('--data', help='episode store written by dp-tt-ros collect (required '
                                       'except for sac)')
    parser.add_argument('--task', help='environment sac trains in, e.g. reach (sac only)')
    parser.add_argument('--out', required=True,
                        help='run folder: final checkpoint, resume state and train_log.jsonl')
    parser.add_argument('--steps', type=int, help='optimizer steps in total (default 5000)')
    parser.add_argument('--batch-size', type=int,
                        help='samples per step and per process (default 64)')
    parser.add_argument('--lr', type=float,
                        help='peak learning rate (default: 1e-4 diffusion/bc, 6e-4 transformer)')
    parser.add_argument('--weight-decay', type=float, help='AdamW weight decay')
    parser.add_argument('--warmup-steps', type=int, help='linear warm-up steps (default 500)')
    parser.add_argument('--grad-clip', type=float, help='clip the gradient norm to this value')
    parser.add_argument('--no-ema', action='store_true',
                        help='save the raw weights instead of an exponential moving average')
    parser.add_argument('--seed', type=int, help='seed for initialisation, sampling and noise')
    parser.add_argument('--config', nargs='+', default=[], metavar='ITEM',
                        help='policy settings: a JSON object, a JSON file, or key=value items '
                             '(values parsed as JSON, a,b,c as a list, a.b=v nests); spec keys '
                             'obs_keys, horizon, n_obs_steps, n_action_steps and use_goal are '
                             'accepted too')
    parser.add_argument('--checkpoint-every', type=int,
                        help='steps between checkpoints (default 1000)')
    parser.add_argument('--log-every', type=int,
                        help='steps between train_log.jsonl entries (default 10)')
    parser.add_argument('--eval-every', type=int,
                        help='steps between closed-loop evaluations in simulation (0: never)')
    parser.add_argument('--eval-task', help='task for the periodic evaluation, e.g. reach')
    parser.add_argument('--eval-episodes', type=int, help='episodes per periodic evaluation')
    parser.add_argument('--resume', action='store_true',
                        help='continue the run in --out from its last checkpoint (starts fresh '
                             'if it has none yet)')
    parser.add_argument('--device', default=None,
                        help='torch device (default: cuda if available, else cpu)')
    parser.add_argument('--threads', type=int, help='torch CPU threads per process')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')


def parse_config_items(items: Sequence[str]) -> dict[str, Any]:
    """Merge ``--config`` items: JSON objects, JSON files and ``key=value`` pairs, in order."""
    merged: dict[str, Any] = {}
    for item in items:
        text = item.strip()
        if text.startswith('{'):
            _deep_update(merged, _json_object(text, item))
        elif '=' in text:
            key, _, raw = text.partition('=')
            if not key.strip():
                raise CommandError(f'--config item {item!r} has no key before "="')
            _set_nested(merged, key.strip().split('.'), _parse_value(raw.strip()))
        elif text.endswith('.json') and Path(text).is_file():
            _deep_update(merged, _json_object(Path(text).read_text(), item))
        else:
            raise CommandError(f'--config item {item!r} is not key=value, a JSON object or an '
                               f'existing .json file')
    return merged


def _deep_update(target: dict[str, Any], update: dict[str, Any]) -> None:
    """Merge ``update`` into ``target``; nested sections merge instead of replacing."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _set_nested(target: dict[str, Any], path: list[str], value: Any) -> None:
    """Set ``a.b.c=value`` as ``{'a': {'b': {'c': value}}}``, merging with what is there."""
    for key in path[:-1]:
        child = target.setdefault(key, {})
        if not isinstance(child, dict):
            raise CommandError(f'--config key {".".join(path)!r} nests under {key!r}, which is '
                               f'already set to {child!r}')
        target = child
    target[path[-1]] = value


def _json_object(text: str, item: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise CommandError(f'--config item {item!r} is not valid JSON: {error}') from error
    if not isinstance(value, dict):
        raise CommandError(f'--config item {item!r} must be a JSON object, got '
                           f'{type(value).__name__}')
    return value


def _parse_value(raw: str) -> Any:
    """JSON where possible (numbers, lists, true/null); ``a,b`` becomes a list; else a string."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        pass
    if ',' in raw:
        return [_parse_value(part.strip()) for part in raw.split(',') if part.strip()]
    return raw


def run(args: argparse.Namespace) -> int:
    if args.threads is not None:
        if args.threads < 1:
            raise CommandError(f'--threads must be >= 1, got {args.threads}')
        torch.set_num_threads(args.threads)
    device = args.device or ('cuda' if torch.cuda.is_available() else 'cpu')
    if args.policy == ONLINE_POLICY:
        return _run_sac(args, device)
    if args.task is not None:
        raise CommandError(f'--task is for --policy sac; {args.policy} learns from --data')
    if args.data is None:
        raise CommandError(f'--policy {args.policy} needs --data, an episode store written by '
                           f'dp-tt-ros collect')
    if not Path(args.data).exists():
        raise CommandError(f'--data {args.data} does not exist; record one with '
                           f'dp-tt-ros collect --task reach --episodes 100 --out {args.data}')
    try:
        config = TrainConfig.for_policy(
            args.policy, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
            weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
            grad_clip=args.grad_clip, use_ema=False if args.no_ema else None, seed=args.seed,
            checkpoint_every=args.checkpoint_every, log_every=args.log_every,
            eval_every=args.eval_every, eval_task=args.eval_task,
            eval_episodes=args.eval_episodes,
            policy_overrides=parse_config_items(args.config))
        result = Trainer(config, args.data, args.out, resume=args.resume, device=device,
                         progress=not args.no_progress).run()
    except (TrainingError, TrainingStateError, CheckpointError) as error:
        raise CommandError(str(error)) from error
    if result.rank != 0:
        return 0
    if result.resumed_from:
        print(f'resumed at step {result.resumed_from}')
    print(f'trained {args.policy} for {result.steps} steps in {result.wall_time_s:.1f} s; '
          f'final loss {result.final_loss:.5f}; checkpoint in {result.out_dir}')
    return 0


def _run_sac(args: argparse.Namespace, device: str) -> int:
    """Online SAC: only the options that mean something for it are accepted."""
    offline_only = [f'--{name.replace("_", "-")}' for name in SAC_UNSUPPORTED
                    if getattr(args, name) not in (None, False)]
    if offline_only:
        raise CommandError(f'{", ".join(offline_only)}: not for --policy sac (online '
                           f'RL, no resume); its settings go in --config, e.g. gamma=0.98')
    if args.task is None:
        raise CommandError('--policy sac needs --task, the environment it trains in, e.g. reach')
    from dp_tt_ros.policies.sac.training import SACTrainConfig, split_overrides, train_sac
    from dp_tt_ros.sim.world import check_task
    try:
        check_task(args.task)
        policy_overrides, train_overrides = split_overrides(parse_config_items(args.config))
        given = {'steps': args.steps, 'seed': args.seed, 'lr': args.lr,
                 'batch_size': args.batch_size, 'log_every': args.log_every}
        train = SACTrainConfig(**{**train_overrides,
                                  **{k: v for k, v in given.items() if v is not None}})
        result = train_sac(args.task, args.out, train, policy_overrides, device=device,
                           progress=not args.no_progress)
    except (TypeError, ValueError) as error:
        raise CommandError(str(error)) from error
    print(f'trained sac on {args.task} for {result.steps} steps ({result.episodes} episodes) '
          f'in {result.wall_time_s:.1f} s; success over the last episodes '
          f'{result.recent_success:.0%}; checkpoint in {result.out_dir}')
    return 0
