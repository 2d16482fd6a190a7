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
``dp-tt-ros eval``: closed-loop evaluation of one checkpoint, or a sweep of many runs.

One run prints a markdown table (success, time-to-goal, collisions, path length, jerk, each with
its 95 % CI) and writes the full report, per-episode rows included, with ``--json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dp_tt_ros import paths
from dp_tt_ros.cli import CommandError
from dp_tt_ros.control.plan import BLEND_MODES
from dp_tt_ros.evaluation.runs import EXPERT, EvalSettings, run_evaluation
from dp_tt_ros.policies.diffusion.schedulers import SAMPLERS
from dp_tt_ros.sim.world import TASKS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument('--checkpoint', metavar='DIR',
                      help=f'checkpoint directory, or "{EXPERT}" for the scripted expert')
    what.add_argument('--sweep', metavar='CONFIG',
                      help='YAML/JSON sweep file (see config/sweeps/); writes into --out')
    parser.add_argument('--task', choices=TASKS, help='task to evaluate on')
    parser.add_argument('--episodes', type=int, default=20, help='episodes (default 20)')
    parser.add_argument('--seed', type=int, default=0,
                        help='episode i uses seed + i (default 0)')
    parser.add_argument('--ros', action='store_true',
                        help='run the episodes through the ROS node graph instead of in-process')
    parser.add_argument('--json', metavar='FILE', help='write the report as JSON')
    parser.add_argument('--markdown', metavar='FILE', help='write the summary table as markdown')
    parser.add_argument('--batch', type=int, default=1,
                        help='envs stepped in lockstep with one batched inference (default 1)')
    parser.add_argument('--latency', type=float, default=0.0, metavar='SECONDS',
                        help='injected inference latency: a chunk computed from the '
                             'observation at t reaches the executor at t + SECONDS')
    parser.add_argument('--n-action-steps', type=int, metavar='h',
                        help='actions executed per chunk (default: the checkpoint\'s)')
    parser.add_argument('--replan-every', type=int, metavar='TICKS',
                        help='control ticks between inference requests (default: h; 1 mirrors '
                             'the ROS graph, which infers on every observation)')
    parser.add_argument('--blend', choices=BLEND_MODES,
                        help='chunk seam blending (default: config/executor.yaml\'s; '
                             '"replace" for the expert)')
    parser.add_argument('--num-inference-steps', type=int, metavar='K',
                        help='diffusion denoising steps at inference')
    parser.add_argument('--sampler', choices=SAMPLERS, help='diffusion sampler')
    parser.add_argument('--guidance-scale', type=float, metavar='W',
                        help='classifier-free guidance strength')
    parser.add_argument('--tracked-targets', choices=('true', 'false'),
                        help='transformer: compute predicted states from the commanded targets '
                             '(true) or decode them (false); default: the checkpoint\'s')
    parser.add_argument('--max-steps', type=int, help='control steps per episode (task default)')
    parser.add_argument('--record', metavar='DIR', help='write one rollout GIF per episode here')
    parser.add_argument('--out', metavar='DIR', help='sweep output folder (default: '
                        'sweep_results/<sweep name>)')
    parser.add_argument('--skip-missing', action='store_true',
                        help='sweep: leave out runs whose checkpoint does not exist')
    parser.add_argument('--models', metavar='DIR',
                        help='where relative sweep checkpoints live (default: shipped models/)')


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise CommandError(f'{name} must be >= 1, got {value}')


def settings_from_args(args: argparse.Namespace) -> EvalSettings:
    """Validate single-run arguments and turn them into :class:`EvalSettings`."""
    if args.task is None:
        raise CommandError(f'--task is required with --checkpoint; expected one of {TASKS}')
    for name in ('episodes', 'batch', 'n_action_steps', 'replan_every', 'num_inference_steps',
                 'max_steps'):
        _check_positive('--' + name.replace('_', '-'), getattr(args, name))
    if not args.latency >= 0:
        raise CommandError(f'--latency must be >= 0 seconds, got {args.latency}')
    checkpoint = args.checkpoint
    if checkpoint != EXPERT and not Path(checkpoint).is_dir():
        raise CommandError(f'checkpoint directory {checkpoint} does not exist (or pass '
                           f'"--checkpoint {EXPERT}" for the scripted expert)')
    return EvalSettings(
        checkpoint=checkpoint, task=args.task, episodes=args.episodes, seed=args.seed,
        batch=args.batch, latency=args.latency, num_inference_steps=args.num_inference_steps,
        sampler=args.sampler, guidance_scale=args.guidance_scale,
        tracked_targets=None if args.tracked_targets is None else args.tracked_targets == 'true',
        n_action_steps=args.n_action_steps, replan_every=args.replan_every, blend=args.blend,
        max_steps=args.max_steps, ros=args.ros, record_dir=args.record)


def _run_sweep(args: argparse.Namespace) -> int:
    from dp_tt_ros.evaluation.sweep import SweepError, load_sweep_file, run_sweep
    try:
        sweep = load_sweep_file(args.sweep)
        name = sweep.get('name', Path(args.sweep).stem)
        out_dir = Path(args.out) if args.out else Path('sweep_results') / name
        models = Path(args.models) if args.models else paths.models_dir()
        result = run_sweep(sweep, out_dir, models, skip_missing=args.skip_missing)
    except (SweepError, ValueError) as error:
        raise CommandError(str(error)) from error
    print((out_dir / 'results.md').read_text())
    print(f'wrote {out_dir / "results.json"}, {out_dir / "results.md"} and '
          f'{len(result["plots"])} plots', file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + '\n')
    return 0


def run(args: argparse.Namespace) -> int:
    from dp_tt_ros.evaluation.metrics import markdown_table
    if args.sweep:
        return _run_sweep(args)
    settings = settings_from_args(args)
    try:
        outcome = run_evaluation(settings)
    except ValueError as error:  # checkpoint errors and bad inference options included
        raise CommandError(str(error)) from error
    report = outcome.report
    table = markdown_table([(report['label'], report['summary'])])
    print(table)
    if report.get('chunks_rejected'):
        print(f'warning: the plan rejected {report["chunks_rejected"]} chunks, e.g. '
              f'{report["rejection_reasons"][0]}', file=sys.stderr)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + '\n')
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(table)
    return 0
