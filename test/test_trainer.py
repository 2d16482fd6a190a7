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

"""Trainer: loss falls on real demos, determinism, exact resume after SIGKILL, saved state."""

import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from safetensors.torch import load_file
import torch

from dp_tt_ros.cli import main
from dp_tt_ros.data.episode_store import EpisodeStore
from dp_tt_ros.data.sequence import SequenceDataset
from dp_tt_ros.policies.checkpoint import load_policy
from dp_tt_ros.training.state import (flatten_optimizer_state, load_training_state,
                                      unflatten_optimizer_state)
from dp_tt_ros.training.trainer import (BatchStream, CosineWithWarmup, load_store, make_spec,
                                        read_train_log, TrainConfig, Trainer, TrainingError)

TINY_DP = {'unet': {'down_dims': [16, 32], 'step_embed_dim': 16}, 'goal_embed_dim': 8,
           'horizon': 8, 'n_action_steps': 4}
TINY_DP_ITEMS = ['unet.down_dims=[16,32]', 'unet.step_embed_dim=16', 'goal_embed_dim=8',
                 'horizon=8', 'n_action_steps=4']


def collect(path: Path, episodes: int, seed: int = 0) -> Path:
    """Record scripted reach demos with the real collect command."""
    subprocess.run([sys.executable, '-m', 'dp_tt_ros', 'collect', '--task', 'reach',
                    '--episodes', str(episodes), '--out', str(path), '--seed', str(seed)],
                   check=True, capture_output=True, text=True, timeout=300)
    return path


@pytest.fixture(scope='module')
def reach_store(tmp_path_factory) -> Path:
    return collect(tmp_path_factory.mktemp('store') / 'reach.zarr', episodes=12)


def tiny_config(**overrides) -> TrainConfig:
    settings = dict(steps=60, batch_size=16, warmup_steps=5, checkpoint_every=30, log_every=1,
                    policy_overrides=TINY_DP)
    settings.update(overrides)
    return TrainConfig.for_policy('diffusion', **settings)


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / 'model.safetensors'))


@pytest.mark.parametrize('policy_type,overrides', [
    ('diffusion', {**TINY_DP, 'noise': {'prediction_type': 'sample'}}),
    ('bc', {'hidden_dims': [64, 64], 'horizon': 8, 'n_action_steps': 4}),
])
def test_loss_falls_on_reach_demos(reach_store, tmp_path, policy_type, overrides):
    torch.set_num_threads(1)
    config = TrainConfig.for_policy(policy_type, steps=100, batch_size=32, lr=1e-3,
                                    warmup_steps=5, checkpoint_every=100, log_every=1,
                                    policy_overrides=overrides)
    result = Trainer(config, reach_store, tmp_path / 'run', progress=False).run()
    losses = [entry['loss'] for entry in read_train_log(tmp_path / 'run')]
    assert len(losses) == 100
    assert np.mean(losses[-20:]) < 0.5 * np.mean(losses[:20])
    assert result.final_loss == pytest.approx(losses[-1])
    policy = load_policy(tmp_path / 'run')
    saved = json.loads((tmp_path / 'run' / 'config.json').read_text())
    assert saved['training']['step'] == 100 and saved['training']['ema'] is True
    assert policy.spec.obs_shapes == {'joint_pos': [8], 'joint_vel': [8], 'object_state': [9]}
    assert policy.spec.horizon == 8 and policy.spec.goal_dim == 3


def test_same_seed_same_weights_other_seed_differs(reach_store, tmp_path):
    torch.set_num_threads(1)
    runs = {}
    for name, seed in (('a', 3), ('b', 3), ('c', 4)):
        Trainer(tiny_config(steps=20, seed=seed), reach_store, tmp_path / name,
                progress=False).run()
        runs[name] = weights(tmp_path / name)
    assert all(torch.equal(runs['a'][key], runs['b'][key]) for key in runs['a'])
    assert not all(torch.equal(runs['a'][key], runs['c'][key]) for key in runs['a'])


def train_args(store: Path, out: Path, *extra: str) -> list[str]:
    return ['train', '--policy', 'diffusion', '--data', str(store), '--out', str(out),
            '--steps', '60', '--batch-size', '8', '--warmup-steps', '10',
            '--checkpoint-every', '10', '--log-every', '5', '--threads', '1', '--seed', '7',
            '--no-progress', '--config', *TINY_DP_ITEMS, *extra]


def saved_step(out: Path) -> int:
    state = out / 'resume' / 'state.json'
    try:
        return int(json.loads(state.read_text())['step'])
    except (OSError, ValueError, KeyError):
        return 0


def test_sigkilled_run_resumes_to_identical_weights(reach_store, tmp_path):
    full, killed = tmp_path / 'full', tmp_path / 'killed'
    assert main(train_args(reach_store, full)) == 0  # uninterrupted, in this process
    command = [sys.executable, '-m', 'dp_tt_ros', *train_args(reach_store, killed)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while saved_step(killed) < 20 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    killed_at = saved_step(killed)
    assert 20 <= killed_at < 60, 'the run must be killed mid-training'

    resumed = subprocess.run([*command, '--resume'], check=True, capture_output=True,
                             text=True, timeout=300)
    assert f'resumed at step {killed_at}' in resumed.stdout

    for name in ('model.safetensors', 'resume/model.safetensors', 'resume/ema.safetensors',
                 'resume/optimizer.safetensors'):
        expected, got = load_file(str(full / name)), load_file(str(killed / name))
        assert expected.keys() == got.keys()
        assert all(torch.equal(expected[key], got[key]) for key in expected), name
    full_log = [(e['step'], e['loss']) for e in read_train_log(full)]
    assert [(e['step'], e['loss']) for e in read_train_log(killed)] == full_log
    assert full_log[-1][0] == 60


def test_existing_run_needs_resume_and_same_settings(reach_store, tmp_path):
    torch.set_num_threads(1)
    Trainer(tiny_config(steps=10, checkpoint_every=10), reach_store, tmp_path / 'run',
            progress=False).run()
    with pytest.raises(TrainingError, match='already holds a training run; pass --resume'):
        Trainer(tiny_config(steps=10), reach_store, tmp_path / 'run', progress=False).run()
    with pytest.raises(TrainingError, match="batch_size: saved 16, now 8"):
        Trainer(tiny_config(steps=10, batch_size=8), reach_store, tmp_path / 'run',
                resume=True, progress=False).run()
    result = Trainer(tiny_config(steps=10), reach_store, tmp_path / 'run', resume=True,
                     progress=False).run()
    assert result.resumed_from == 10


def test_training_state_round_trips_adamw_exactly(reach_store, tmp_path):
    torch.set_num_threads(1)
    Trainer(tiny_config(steps=12, checkpoint_every=12), reach_store, tmp_path / 'run',
            progress=False).run()
    state = load_training_state(tmp_path / 'run' / 'resume')
    assert state.meta['step'] == 12
    assert state.meta['scheduler']['last_epoch'] == 12
    assert not list((tmp_path / 'run').glob('**/*.pt')) and not list(
        (tmp_path / 'run').glob('**/*.pkl'))
    model = load_policy(tmp_path / 'run')
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model.compute_loss(_one_batch(reach_store, model)).backward()
    optimizer.step()
    tensors, rest = flatten_optimizer_state(optimizer.state_dict())
    json.dumps(rest)  # the non-tensor part must be plain JSON
    rebuilt = unflatten_optimizer_state(tensors, json.loads(json.dumps(rest)))
    original = optimizer.state_dict()
    for index, entries in original['state'].items():
        for name, value in entries.items():
            assert torch.equal(rebuilt['state'][index][name], value)
    assert rebuilt['param_groups'][0]['betas'] == list(original['param_groups'][0]['betas'])


def _one_batch(store: Path, policy) -> dict[str, torch.Tensor]:
    data = load_store(store)
    return SequenceDataset.from_spec(data.arrays, data.episode_ends, policy.spec).get_batch(
        np.arange(4))


def test_batch_stream_shards_cover_the_single_process_batch():
    stream = BatchStream(n_samples=10, seed=1)
    first_epoch = stream.positions(0, 10)
    assert sorted(first_epoch.tolist()) == list(range(10))
    assert not np.array_equal(first_epoch, stream.positions(10, 10))
    # Rank r of R takes slice r of the global batch: together they form the 1-process batch.
    global_batch = stream.positions(3 * 8, 8)
    shards = [global_batch[rank * 4:(rank + 1) * 4] for rank in range(2)]
    np.testing.assert_array_equal(np.concatenate(shards), BatchStream(10, 1).positions(24, 8))


def test_cosine_with_warmup_shape():
    schedule = CosineWithWarmup(warmup_steps=4, total_steps=14)
    values = [schedule(step) for step in range(14)]
    assert values[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert values[4] == pytest.approx(1.0)
    assert values[9] == pytest.approx(0.5)
    assert all(a >= b for a, b in zip(values[4:], values[5:]))


def test_spec_and_config_errors_name_the_bad_value(reach_store):
    data = load_store(reach_store)
    overrides = {'obs_keys': 'joint_pos', 'horizon': 4, 'n_action_steps': 2, 'unet': {}}
    spec, rest = make_spec('diffusion', data, overrides)
    assert list(spec.obs_shapes) == ['joint_pos'] and spec.horizon == 4 and rest == {'unet': {}}
    with pytest.raises(TrainingError, match="obs_keys \\['image'\\] are not usable"):
        make_spec('diffusion', data, {'obs_keys': ['image']})
    with pytest.raises(TrainingError, match='n_action_steps=9, horizon=8'):
        make_spec('diffusion', data, {'horizon': 8, 'n_action_steps': 9})
    with pytest.raises(TrainingError, match="unknown policy type 'vae'"):
        TrainConfig.for_policy('vae')
    with pytest.raises(TrainingError, match='batch_size must be >= 1, got 0'):
        TrainConfig.for_policy('diffusion', batch_size=0)
    assert EpisodeStore.open(reach_store).n_episodes == 12
