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

"""Real SAC training (SB3, PyBullet reach) in a few hundred steps: export, seeding, CLI."""

import json
import math
import re

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from stable_baselines3.common.utils import obs_as_tensor

from dp_tt_ros.cli import main
from dp_tt_ros.policies.checkpoint import load_policy, save_checkpoint
from dp_tt_ros.policies.sac.configuration import SACConfig
from dp_tt_ros.policies.sac.modeling import SACPolicy
from dp_tt_ros.policies.sac.training import build_config, export_actor, fit_normalizer, \
    make_model, make_training_env, SACTrainConfig, split_overrides

torch.set_num_threads(1)
TINY = ['net_arch=[32,32]', 'critic_arch=[32,32]', 'learning_starts=100', 'buffer_size=1000',
        'normalizer_scenes=10']


def tiny_settings() -> tuple[SACConfig, SACTrainConfig]:
    policy_overrides, train_overrides = split_overrides(
        {'net_arch': [32, 32], 'critic_arch': [32, 32], 'learning_starts': 100,
         'buffer_size': 1000, 'normalizer_scenes': 10})
    train = SACTrainConfig(steps=300, batch_size=32, **train_overrides)
    return build_config('reach', policy_overrides), train


def test_export_reproduces_the_sb3_actor_exactly(tmp_path):
    config, train = tiny_settings()
    model = make_model('reach', config, train, fit_normalizer('reach', config, 10))
    untrained = export_actor(model, config)
    model.learn(train.steps, log_interval=None)
    policy = export_actor(model, config)
    assert not torch.equal(untrained.mu.weight, policy.mu.weight)  # the actor was trained
    save_checkpoint(policy, tmp_path / 'sac')
    loaded = load_policy(tmp_path / 'sac')
    env = make_training_env('reach', config, seed=7)
    obs, _ = env.reset(seed=5)
    try:
        for _ in range(10):  # real observations along the exported policy's own rollout
            batch = {key: value[None] for key, value in obs.items()}
            with torch.no_grad():
                sb3 = model.actor(obs_as_tensor(batch, 'cpu'), deterministic=True)
                context = torch.as_tensor(loaded.encode_observations(
                    {'joint_pos': batch['joint_pos'][:, None]}))
                exported = loaded.unit_action(context, torch.as_tensor(batch['goal']))
            assert torch.equal(sb3, exported)
            chunk = loaded.predict_action({'joint_pos': batch['joint_pos'][:, None]},
                                          batch['goal'])
            assert chunk.shape == (1, 1, 8)
            assert np.array_equal(chunk[0, 0], env.target(sb3[0].numpy()))  # what SB3 ran
            predicted, _ = model.predict(batch, deterministic=True)
            assert np.allclose(predicted[0], sb3[0].numpy(), atol=1e-6)
            obs, _, terminated, truncated, _ = env.step(sb3[0].numpy())
            assert not (terminated or truncated)
    finally:
        env.close()


def train_cli(out, seed: int) -> int:
    return main(['train', '--policy', 'sac', '--task', 'reach', '--out', str(out), '--steps',
                 '300', '--seed', str(seed), '--batch-size', '32', '--log-every', '100',
                 '--threads', '1', '--no-progress', '--config', *TINY])


def test_cli_training_is_seeded_and_logged(tmp_path, capsys):
    assert train_cli(tmp_path / 'a', 0) == 0
    assert 'trained sac on reach for 300 steps' in capsys.readouterr().out
    assert train_cli(tmp_path / 'b', 0) == 0
    assert train_cli(tmp_path / 'c', 1) == 0
    weights = {name: load_file(str(tmp_path / name / 'model.safetensors'))
               for name in ('a', 'b', 'c')}
    assert all(torch.equal(weights['a'][key], weights['b'][key]) for key in weights['a'])
    assert not torch.equal(weights['a']['mu.weight'], weights['c']['mu.weight'])
    assert isinstance(load_policy(tmp_path / 'a'), SACPolicy)
    log = [json.loads(line) for line in (tmp_path / 'a' / 'train_log.jsonl').open()]
    assert [entry['step'] for entry in log] == [100, 200, 300]
    assert log[0]['critic_loss'] is None  # learning starts after 100 steps
    assert all(math.isfinite(entry['critic_loss']) for entry in log[1:])
    config = json.loads((tmp_path / 'a' / 'config.json').read_text())
    assert config['policy_type'] == 'sac' and config['training']['train_config']['seed'] == 0
    assert config['training']['scene_seed'] == 1000


@pytest.mark.parametrize('extra, message', [
    ([], 'needs --task'),
    (['--task', 'reach', '--data', 'x.zarr'], '--data: not for --policy sac'),
    (['--task', 'reach', '--resume'], '--resume: not for --policy sac'),
    (['--task', 'reach', '--config', 'beta=1'], "unknown sac settings \\['beta'\\]"),
    (['--task', 'stack'], "unknown task 'stack'"),
])
def test_cli_errors(tmp_path, capsys, extra, message):
    assert main(['train', '--policy', 'sac', '--out', str(tmp_path / 'x'), *extra]) == 2
    assert re.search(message, capsys.readouterr().err)
