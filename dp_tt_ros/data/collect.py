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
``dp-tt-ros collect``: scripted-expert demonstrations into an episode store.

Episode ``i`` is fully determined by its seed (scene, expert side choice and noise), recorded in
``meta/episode_seed``. Appending to an existing store continues after its largest seed, so
collecting 50 and then 50 more gives the same episodes as collecting 100 at once. Episodes are
written only when finished, so Ctrl-C or a crash keeps every finished episode.

With ``--takeover CHECKPOINT`` a trained policy drives each episode for a random number of steps
before the expert takes over, and only the expert's part is stored (HG-DAgger style): clean demos
never show how to recover from the states a policy's own mistakes lead to, these do.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import dataclass
from typing import Callable

import numpy as np
from tqdm import tqdm

from dp_tt_ros.cli import CommandError
from dp_tt_ros.data.episode_store import EpisodeStore, EpisodeStoreError
from dp_tt_ros.sim.experts import make_expert
from dp_tt_ros.sim.tasks import CONTROL_DT, DEFAULT_MAX_STEPS, PandaTaskEnv, make_env
from dp_tt_ros.sim.world import TASKS

OBS_KEYS = ('joint_pos', 'joint_vel', 'object_state', 'goal')
# Attributes that must agree between a store and an appending collection run.
FIXED_ATTRS = ('task', 'control_dt', 'image_size')


@dataclass
class CollectSummary:
    """What one collection run did."""

    stored: int
    attempts: int
    successes: int
    steps: int
    interrupted: bool = False
    skipped: int = 0  # takeover episodes the policy ended before the expert's turn


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--task', required=True, choices=TASKS, help='which task to demonstrate')
    parser.add_argument('--episodes', type=int, required=True, metavar='N',
                        help='number of episodes to add to the store')
    parser.add_argument('--out', required=True, metavar='PATH',
                        help='episode store (zarr directory); appended to when it exists')
    parser.add_argument('--image', action='store_true', help='also record camera images')
    parser.add_argument('--image-size', type=int, default=96, metavar='PIXELS',
                        help='square image size with --image (default: 96)')
    parser.add_argument('--noise', type=float, default=0.0, metavar='METRES',
                        help='std of the expert\'s correlated position perturbation (default: 0)')
    parser.add_argument('--seed', type=int, default=None,
                        help='seed of the first episode (default: 0 for a new store, after the '
                             'largest stored seed when appending)')
    parser.add_argument('--max-steps', type=int, default=None, metavar='N',
                        help='episode step limit (default: the task\'s)')
    parser.add_argument('--keep-failures', action='store_true',
                        help='store episodes the expert failed too (default: only successes)')
    parser.add_argument('--takeover', default=None, metavar='CHECKPOINT',
                        help='let this policy act first in each episode and store only the '
                             'expert\'s recovery from where it got to')
    parser.add_argument('--takeover-steps', type=int, default=None, metavar='N',
                        help='with --takeover: the policy acts for 1..N steps, uniformly drawn '
                             'per episode (default: half the episode limit)')


Episode = dict[str, np.ndarray]


class Takeover:
    """
    A trained policy driving the start of an episode: ``n_action_steps`` rows of each chunk.

    The number of policy steps is drawn per episode from the episode seed, so a takeover episode
    is as reproducible as a plain one.
    """

    def __init__(self, checkpoint: str, max_steps: int) -> None:
        from dp_tt_ros.evaluation.sources import PolicySource
        from dp_tt_ros.policies.checkpoint import load_policy
        self.source = PolicySource(load_policy(checkpoint))
        self.max_steps = max_steps

    def drive(self, env: PandaTaskEnv, obs: dict[str, np.ndarray],
              seed: int) -> tuple[dict[str, np.ndarray], bool]:
        """Run the policy from ``obs``; return the observation it leaves and whether it ended."""
        import torch
        source = self.source
        torch.manual_seed(seed)
        steps = int(np.random.default_rng(seed).integers(1, self.max_steps + 1))
        history = {key: [obs[key]] * source.n_obs_steps for key in source.obs_keys}
        chunk, row = np.empty((0, 0)), source.n_action_steps
        for _ in range(steps):
            if row == source.n_action_steps:
                batch = {key: np.stack(values[-source.n_obs_steps:])[None]
                         for key, values in history.items()}
                goal = obs['goal'][None] if source.uses_goal else None
                chunk, row = source.predict(batch, goal, [0])[0], 0
            obs, _, terminated, truncated, _ = env.step(chunk[row])
            row += 1
            for key, values in history.items():
                values.append(obs[key])
            if terminated or truncated:
                return obs, True
        return obs, False


def record_episode(env: PandaTaskEnv, seed: int, noise: float,
                   takeover: Takeover | None = None) -> tuple[Episode | None, bool]:
    """
    Run the expert for one seeded episode; return its step arrays and whether it succeeded.

    With ``takeover`` the policy acts first; if the episode ends before the expert gets a turn,
    there is nothing to store and the step arrays are None.
    """
    expert = make_expert(env.task, noise=noise, seed=seed)
    obs, info = env.reset(seed=seed)
    if takeover is not None:
        obs, ended = takeover.drive(env, obs, seed)
        if ended:
            return None, False
    expert.reset(env)
    keys = (*obs, 'action', 'reward', 'success')
    steps: dict[str, list[np.ndarray]] = {key: [] for key in keys}
    done = False
    while not done:
        action = expert.act(obs)
        for key, value in obs.items():
            steps[key].append(value)
        next_obs, reward, terminated, truncated, info = env.step(action)
        steps['action'].append(env.world.command.astype(np.float32))
        steps['reward'].append(np.float32(reward))
        steps['success'].append(np.bool_(terminated))
        obs, done = next_obs, terminated or truncated
    return {key: np.stack(values) for key, values in steps.items()}, bool(info['success'])


def collect(store: EpisodeStore, task: str, episodes: int, *, seed: int,
            image_size: tuple[int, int] | None = None, noise: float = 0.0,
            max_steps: int | None = None, keep_failures: bool = False,
            takeover: Takeover | None = None, progress: bool = True,
            should_stop: Callable[[], bool] = lambda: False) -> CollectSummary:
    """
    Add ``episodes`` expert episodes to ``store``, seeds counting up from ``seed``.

    With ``takeover``, seeds whose episode the policy ended on its own are skipped.

    ``should_stop`` is checked between episodes; when it says so, the run ends early with
    ``interrupted`` set and every finished episode stored.
    """
    env = make_env(task, image_size=image_size, max_steps=max_steps)
    summary = CollectSummary(stored=0, attempts=0, successes=0, steps=0)
    max_attempts = episodes if keep_failures else 2 * episodes + 10
    bar = tqdm(total=episodes, desc=f'collect {task}', unit='ep', disable=not progress)
    try:
        while summary.stored < episodes:
            if should_stop():
                summary.interrupted = True
                break
            if summary.attempts >= max_attempts:
                raise RuntimeError(f'the {task} expert succeeded in only {summary.successes} of '
                                   f'{summary.attempts} attempts')
            episode_seed = seed + summary.attempts + summary.skipped
            data, success = record_episode(env, episode_seed, noise, takeover)
            if data is None:
                summary.skipped += 1
                continue
            summary.attempts += 1
            summary.successes += success
            if success or keep_failures:
                store.add_episode(data, meta={'episode_success': success,
                                              'episode_seed': np.int64(episode_seed),
                                              'episode_noise': np.float64(noise)})
                summary.stored += 1
                summary.steps += len(data['action'])
                bar.update(1)
            bar.set_postfix(success=f'{summary.successes}/{summary.attempts}')
    finally:
        bar.close()
        env.close()
    return summary


class StopOnInterrupt:
    """
    Turn the first Ctrl-C into a request to stop after the episode being recorded.

    A KeyboardInterrupt raised wherever the signal lands (inside PyBullet or zarr's writer
    thread hand-off) can be swallowed there; a flag checked between episodes cannot. A second
    Ctrl-C interrupts at once; the store still keeps every episode committed before it.
    """

    def __init__(self) -> None:
        self._requested = False

    def requested(self) -> bool:
        return self._requested

    def _on_sigint(self, signum: int, frame: object) -> None:
        self._requested = True
        print('stopping after the current episode (Ctrl-C again to abort it)', file=sys.stderr)
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __enter__(self) -> 'StopOnInterrupt':
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        return self

    def __exit__(self, *exc_info: object) -> None:
        signal.signal(signal.SIGINT, self._previous)


def _load_takeover(args: argparse.Namespace) -> Takeover | None:
    from dp_tt_ros.policies.checkpoint import CheckpointError  # torch only when asked for
    if args.takeover is None:
        if args.takeover_steps is not None:
            raise CommandError('--takeover-steps needs --takeover CHECKPOINT')
        return None
    steps = args.takeover_steps or (args.max_steps or DEFAULT_MAX_STEPS[args.task]) // 2
    if steps < 1:
        raise CommandError(f'--takeover-steps must be >= 1, got {steps}')
    try:
        takeover = Takeover(args.takeover, steps)
    except CheckpointError as error:
        raise CommandError(f'--takeover: {error}') from error
    if takeover.source.image_size is not None:
        raise CommandError(f'--takeover {args.takeover} needs camera images; takeover supports '
                           f'low-dim policies only')
    return takeover


def _open_store(path: str, attrs: dict) -> EpisodeStore:
    if not os.path.exists(path):
        return EpisodeStore.create(path, attrs)
    try:
        store = EpisodeStore.open(path, mode='a')
    except EpisodeStoreError as error:
        raise CommandError(str(error)) from error
    for name in FIXED_ATTRS:
        if store.attrs.get(name) != attrs[name]:
            raise CommandError(f'{path} holds {name}={store.attrs.get(name)!r} but this run '
                               f'records {name}={attrs[name]!r}; use another --out')
    return store


def run(args: argparse.Namespace) -> int:
    if args.episodes < 1:
        raise CommandError(f'--episodes must be >= 1, got {args.episodes}')
    if args.image and args.image_size < 8:
        raise CommandError(f'--image-size must be >= 8 pixels, got {args.image_size}')
    if not args.noise >= 0:
        raise CommandError(f'--noise must be >= 0 metres, got {args.noise}')
    if args.max_steps is not None and args.max_steps < 1:
        raise CommandError(f'--max-steps must be >= 1, got {args.max_steps}')
    image_size = (args.image_size, args.image_size) if args.image else None
    attrs = {'task': args.task, 'control_dt': CONTROL_DT, 'seed': args.seed or 0,
             'noise': args.noise, 'image_size': list(image_size) if image_size else None}
    takeover = _load_takeover(args)
    store = _open_store(args.out, attrs)
    seed = args.seed
    if seed is None:
        seeds = store.episode_meta('episode_seed') if 'episode_seed' in store.meta_keys else []
        seed = int(np.max(seeds)) + 1 if len(seeds) else 0
    before = store.n_episodes
    try:
        with StopOnInterrupt() as stop:
            summary = collect(store, args.task, args.episodes, seed=seed, image_size=image_size,
                              noise=args.noise, max_steps=args.max_steps,
                              keep_failures=args.keep_failures, takeover=takeover,
                              should_stop=stop.requested)
    except KeyboardInterrupt:
        summary = None
    except RuntimeError as error:
        raise CommandError(f'{error}; {store.n_episodes - before} episodes were stored') from error
    if summary is None or summary.interrupted:
        print(f'interrupted: {args.out} keeps {store.n_episodes} finished episodes '
              f'({store.n_episodes - before} from this run)', file=sys.stderr)
        return 130
    skipped = (f', {summary.skipped} seeds skipped: the policy ended them before the takeover'
               if takeover else '')
    print(f'stored {summary.stored} {args.task} episodes ({summary.steps} steps, expert success '
          f'{summary.successes}/{summary.attempts}{skipped}) in {args.out}; it now holds '
          f'{store.n_episodes} episodes')
    return 0
