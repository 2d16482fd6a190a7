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

"""``dp-tt-ros train`` end to end: loadable checkpoints for all three families, clear errors."""

import json
from pathlib import Path
import subprocess
import sys

import numpy as np
import pytest
import torch

from dp_tt_ros.cli import CommandError, main
from dp_tt_ros.policies.checkpoint import load_policy
from dp_tt_ros.training.cli import parse_config_items
from dp_tt_ros.training.trainer import read_train_log

TINY = {
    'diffusion': ['unet.down_dims=[16,32]', 'unet.step_embed_dim=16', 'goal_embed_dim=8',
                  'horizon=8', 'n_action_steps=4'],
    'bc': ['hidden_dims=[32]', 'horizon=8', 'n_action_steps=4'],
    'transformer': ['n_layer=1', 'n_head=1', 'n_embd=16', 'n_bins=8', 'window_transitions=2',
                    'horizon=2', 'n_action_steps=1', 'planning.beam_width=2'],
}


@pytest.fixture(scope='module')
def reach_store(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp('store') / 'reach.zarr'
    subprocess.run([sys.executable, '-m', 'dp_tt_ros', 'collect', '--task', 'reach',
                    '--episodes', '6', '--out', str(path), '--seed', '1'],
                   check=True, capture_output=True, timeout=300)
    return path


def observation_history(policy, batch: int = 1) -> dict[str, np.ndarray]:
    spec = policy.spec
    return {key: np.zeros((batch, spec.n_obs_steps, *shape), dtype=np.float32)
            for key, shape in spec.obs_shapes.items()}


def test_train_command_writes_a_loadable_checkpoint(reach_store, tmp_path):
    out = tmp_path / 'dp'
    done = subprocess.run(
        [sys.executable, '-m', 'dp_tt_ros', 'train', '--policy', 'diffusion', '--data',
         str(reach_store), '--out', str(out), '--steps', '12', '--batch-size', '8',
         '--warmup-steps', '2', '--log-every', '4', '--threads', '1', '--config',
         *TINY['diffusion']], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert 'train diffusion' in done.stderr and '12/12' in done.stderr  # tqdm progress bar
    assert 'final loss' in done.stdout
    policy = load_policy(out)
    assert type(policy).__name__ == 'DiffusionPolicy'
    chunk = policy.predict_action(observation_history(policy), np.zeros((1, 3), np.float32))
    assert chunk.shape == (1, 8, 8) and np.isfinite(chunk).all()
    config = json.loads((out / 'config.json').read_text())
    assert config['training']['step'] == 12
    assert config['training']['data']['task'] == 'reach'
    assert [entry['step'] for entry in read_train_log(out)] == [4, 8, 12]


@pytest.mark.parametrize('policy_type', ['bc', 'transformer'])
def test_bc_and_transformer_train_in_process(reach_store, tmp_path, policy_type):
    torch.set_num_threads(1)
    out = tmp_path / policy_type
    rc = main(['train', '--policy', policy_type, '--data', str(reach_store), '--out', str(out),
               '--steps', '6', '--batch-size', '8', '--warmup-steps', '1', '--no-progress',
               '--config', *TINY[policy_type]])
    assert rc == 0
    policy = load_policy(out)
    assert policy.spec.policy_type == policy_type
    chunk = policy.predict_action(observation_history(policy), np.zeros((1, 3), np.float32))
    assert chunk.shape[0] == 1 and chunk.shape[2] == 8 and np.isfinite(chunk).all()
    config = json.loads((out / 'config.json').read_text())
    assert config['training']['ema'] is (policy_type != 'transformer')


def test_periodic_closed_loop_evaluation_is_logged(reach_store, tmp_path):
    torch.set_num_threads(1)
    out = tmp_path / 'bc'
    rc = main(['train', '--policy', 'bc', '--data', str(reach_store), '--out', str(out),
               '--steps', '4', '--batch-size', '8', '--warmup-steps', '1', '--no-progress',
               '--eval-every', '4', '--eval-task', 'reach', '--eval-episodes', '1',
               '--config', *TINY['bc']])
    assert rc == 0
    evaluations = [entry for entry in read_train_log(out) if 'eval' in entry]
    assert len(evaluations) == 1 and evaluations[0]['step'] == 4
    assert evaluations[0]['eval']['episodes'] == 1
    assert 0.0 <= evaluations[0]['eval']['success_rate']['value'] <= 1.0


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    rc = main(args)
    return rc, capsys.readouterr().err


def test_user_errors_are_one_line_with_exit_status_2(reach_store, tmp_path, capsys):
    base = ['train', '--data', str(reach_store), '--steps', '2', '--no-progress']
    rc, err = run_cli(['train', '--policy', 'bc', '--data', str(tmp_path / 'missing.zarr'),
                       '--out', str(tmp_path / 'x')], capsys)
    assert rc == 2 and 'missing.zarr does not exist' in err
    rc, err = run_cli([*base, '--policy', 'diffusion', '--out', str(tmp_path / 'a'),
                       '--config', 'unet.depth=3'], capsys)
    assert rc == 2 and "unknown" in err and "depth" in err
    rc, err = run_cli([*base, '--policy', 'bc', '--out', str(tmp_path / 'b'),
                       '--eval-every', '5'], capsys)
    assert rc == 2 and 'eval_every=5 needs an eval_task' in err
    rc, err = run_cli([*base, '--policy', 'bc', '--out', str(tmp_path / 'c'),
                       '--config', *TINY['bc']], capsys)
    assert rc == 0
    rc, err = run_cli([*base, '--policy', 'bc', '--out', str(tmp_path / 'c'),
                       '--config', *TINY['bc']], capsys)
    assert rc == 2 and 'pass --resume' in err
    rc, err = run_cli([*base, '--policy', 'bc', '--out', str(tmp_path / 'd'),
                       '--data', str(tmp_path)], capsys)
    assert rc == 2 and 'cannot train on' in err


def test_parse_config_items(tmp_path):
    settings = tmp_path / 'settings.json'
    settings.write_text(json.dumps({'goal_dropout': 0.2, 'unet': {'kernel_size': 3}}))
    parsed = parse_config_items(['{"horizon": 8}', 'obs_keys=joint_pos,object_state',
                                 'unet.down_dims=[32,64]', 'noise.prediction_type=sample',
                                 'flag=true', str(settings)])
    assert parsed == {'horizon': 8, 'obs_keys': ['joint_pos', 'object_state'],
                      'unet': {'down_dims': [32, 64], 'kernel_size': 3},
                      'noise': {'prediction_type': 'sample'},
                      'flag': True, 'goal_dropout': 0.2}
    with pytest.raises(CommandError, match="'oops' is not key=value"):
        parse_config_items(['oops'])
    not_an_object = tmp_path / 'list.json'
    not_an_object.write_text('[1, 2]')
    with pytest.raises(CommandError, match='must be a JSON object, got list'):
        parse_config_items([str(not_an_object)])
    with pytest.raises(CommandError, match='is not valid JSON'):
        parse_config_items(['{"a": 1'])


def test_image_diffusion_policy_trains_on_an_image_store(tmp_path):
    store, out = tmp_path / 'images.zarr', tmp_path / 'image_dp'
    subprocess.run([sys.executable, '-m', 'dp_tt_ros', 'collect', '--task', 'reach',
                    '--episodes', '3', '--out', str(store), '--seed', '0', '--image',
                    '--image-size', '32'], check=True, capture_output=True, timeout=300)
    torch.set_num_threads(1)
    rc = main(['train', '--policy', 'diffusion', '--data', str(store), '--out', str(out),
               '--steps', '2', '--batch-size', '4', '--warmup-steps', '1', '--no-progress',
               '--config', 'obs_keys=image,joint_pos', 'use_goal=false',
               'encoder.crop_shape=[28,28]', *TINY['diffusion']])
    assert rc == 0
    policy = load_policy(out)
    assert policy.spec.image_keys == ['image']
    assert policy.spec.obs_shapes == {'image': [32, 32, 3], 'joint_pos': [8]}
    assert policy.spec.goal_dim == 0  # it must find the goal marker in the image
    obs = {'image': np.zeros((1, 2, 32, 32, 3), np.uint8),
           'joint_pos': np.zeros((1, 2, 8), np.float32)}
    chunk = policy.predict_action(obs)
    assert chunk.shape == (1, 8, 8) and np.isfinite(chunk).all()
