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

"""A small Diffusion Policy trained on real reach demos reaches the goal in closed loop."""

from pathlib import Path
import subprocess
import sys

import numpy as np
import torch

from dp_tt_ros.policies.checkpoint import load_policy
from dp_tt_ros.sim.tasks import make_env
from dp_tt_ros.training.trainer import read_train_log, TrainConfig, Trainer

EVAL_EPISODES = 10
EVAL_SEED = 1000  # disjoint from the demo seeds
SMALL_DP = {'obs_keys': ['joint_pos'], 'horizon': 8, 'n_action_steps': 4,
            'unet': {'down_dims': [32, 64], 'step_embed_dim': 32}, 'goal_embed_dim': 16,
            'noise': {'prediction_type': 'sample'}}


def rollout(policy, seed: int) -> bool:
    """Run one reach episode: each inference's first n_action_steps actions, then re-plan."""
    env = make_env('reach', seed=seed)
    try:
        obs, _ = env.reset(seed=seed)
        history = [obs['joint_pos']] * policy.n_obs_steps
        while True:
            window = np.stack(history[-policy.n_obs_steps:])[None]
            chunk = policy.predict_action({'joint_pos': window}, obs['goal'][None])[0]
            for action in chunk[:policy.n_action_steps]:
                obs, _, terminated, truncated, info = env.step(action)
                history.append(obs['joint_pos'])
                if terminated or truncated:
                    return bool(info['success'])
    finally:
        env.close()


def hold_still(seed: int) -> bool:
    """Baseline: command the start pose for the whole episode."""
    env = make_env('reach', seed=seed)
    try:
        obs, _ = env.reset(seed=seed)
        start = obs['joint_pos'].copy()
        while True:
            obs, _, terminated, truncated, info = env.step(start)
            if terminated or truncated:
                return bool(info['success'])
    finally:
        env.close()


def test_small_dp_reaches_the_goal(tmp_path: Path):
    torch.set_num_threads(1)
    store = tmp_path / 'reach.zarr'
    subprocess.run([sys.executable, '-m', 'dp_tt_ros', 'collect', '--task', 'reach',
                    '--episodes', '40', '--out', str(store), '--seed', '0'],
                   check=True, capture_output=True, timeout=300)
    config = TrainConfig.for_policy('diffusion', steps=300, batch_size=32, lr=1e-3,
                                    warmup_steps=20, checkpoint_every=300, log_every=10,
                                    policy_overrides=SMALL_DP)
    Trainer(config, store, tmp_path / 'dp', progress=False).run()
    losses = [entry['loss'] for entry in read_train_log(tmp_path / 'dp')]
    assert np.mean(losses[-5:]) < 0.2 * np.mean(losses[:3])

    policy = load_policy(tmp_path / 'dp')
    seeds = range(EVAL_SEED, EVAL_SEED + EVAL_EPISODES)
    successes = sum(rollout(policy, seed) for seed in seeds)
    baseline = sum(hold_still(seed) for seed in seeds[:5])
    assert baseline == 0, 'holding still must not count as reaching'
    assert successes >= 3, f'{successes}/{EVAL_EPISODES} closed-loop successes'
