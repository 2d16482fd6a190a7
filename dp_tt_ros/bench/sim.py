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
``dp-tt-ros bench sim``: physics steps per second, render time per frame, expert episodes/min.

These bound how fast demos can be collected and policies evaluated: an evaluation episode costs
physics (24 steps per control step), an optional render per control step, and the policy.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

from dp_tt_ros.bench.common import machine_info, summarize, write_json
from dp_tt_ros.cli import CommandError
from dp_tt_ros.robot import HOME_POSITION
from dp_tt_ros.sim.experts import make_expert
from dp_tt_ros.sim.tasks import make_env
from dp_tt_ros.sim.world import TASKS, PandaWorld

RENDER_SIZES = ((96, 96), (640, 480))
PHYSICS_BLOCK = 240


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--tasks', nargs='+', choices=TASKS, default=list(TASKS),
                        help='tasks to measure (default: all)')
    parser.add_argument('--physics-blocks', type=int, default=20, metavar='N',
                        help=f'timed blocks of {PHYSICS_BLOCK} physics steps per task')
    parser.add_argument('--frames', type=int, default=30, metavar='N',
                        help='timed renders per image size')
    parser.add_argument('--episodes', type=int, default=5, metavar='N',
                        help='timed expert episodes per task')


def physics_steps_per_second(task: str, blocks: int) -> list[float]:
    """Time blocks of physics steps while the arm sweeps, so contacts and motors are active."""
    world = PandaWorld(task, seed=0)
    samples = []
    try:
        for block in range(blocks):
            sweep = HOME_POSITION.copy()
            sweep[0] = 0.4 * np.sin(block)
            world.set_command(sweep)
            start = time.perf_counter()
            world.step_physics(PHYSICS_BLOCK)
            samples.append(PHYSICS_BLOCK / (time.perf_counter() - start))
    finally:
        world.close()
    return samples


def render_milliseconds(width: int, height: int, frames: int) -> list[float]:
    world = PandaWorld('pick_place', seed=0)
    samples = []
    try:
        world.render(width, height)
        for _ in range(frames):
            start = time.perf_counter()
            world.render(width, height)
            samples.append(1e3 * (time.perf_counter() - start))
    finally:
        world.close()
    return samples


def expert_episodes(task: str, episodes: int) -> tuple[list[float], list[bool]]:
    """Seconds per seeded expert episode (state observations) and whether each succeeded."""
    env = make_env(task)
    seconds, successes = [], []
    try:
        for seed in range(episodes):
            start = time.perf_counter()
            expert = make_expert(task, seed=seed)
            obs, info = env.reset(seed=seed)
            expert.reset(env)
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(expert.act(obs))
                done = terminated or truncated
            seconds.append(time.perf_counter() - start)
            successes.append(bool(info['success']))
    finally:
        env.close()
    return seconds, successes


def run(args: argparse.Namespace) -> int:
    for name in ('physics_blocks', 'frames', 'episodes'):
        if getattr(args, name) < 1:
            raise CommandError(f'--{name.replace("_", "-")} must be >= 1, '
                               f'got {getattr(args, name)}')
    result: dict = {'benchmark': 'sim', 'machine': machine_info(), 'physics_hz': 240.0,
                    'physics_steps_per_s': {}, 'render_ms': {}, 'eval_episodes_per_min': {},
                    'expert_success': {}}
    with tqdm(total=2 * len(args.tasks) + len(RENDER_SIZES), desc='bench sim') as bar:
        for task in args.tasks:
            result['physics_steps_per_s'][task] = summarize(
                physics_steps_per_second(task, args.physics_blocks))
            bar.update(1)
        for width, height in RENDER_SIZES:
            result['render_ms'][f'{width}x{height}'] = summarize(
                render_milliseconds(width, height, args.frames))
            bar.update(1)
        for task in args.tasks:
            seconds, successes = expert_episodes(task, args.episodes)
            result['eval_episodes_per_min'][task] = summarize([60.0 / s for s in seconds])
            result['expert_success'][task] = float(np.mean(successes))
            bar.update(1)
    result['summary'] = {
        'physics_steps_per_s_median': float(np.median(
            [entry['median'] for entry in result['physics_steps_per_s'].values()])),
        'fps_96x96_median': 1e3 / result['render_ms']['96x96']['median'],
        'render_ms_640x480_median': result['render_ms']['640x480']['median'],
        'eval_episodes_per_min_median': {
            task: entry['median'] for task, entry in result['eval_episodes_per_min'].items()},
    }
    write_json(result, args.json)
    return 0
