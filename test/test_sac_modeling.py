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

"""SACPolicy: the exported actor's interface, units, checkpoints and bad-checkpoint errors."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dp_tt_ros.evaluation.rollout import evaluate, RolloutOptions
from dp_tt_ros.evaluation.sources import PolicySource
from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.checkpoint import CheckpointError, load_policy, save_checkpoint
from dp_tt_ros.policies.normalizer import Normalizer
from dp_tt_ros.policies.sac.configuration import SACConfig
from dp_tt_ros.policies.sac.modeling import absolute_targets, SACPolicy
from dp_tt_ros.robot import HOME_POSITION

torch.set_num_threads(1)
MAX_DELTA = 0.1


def make_policy() -> SACPolicy:
    torch.manual_seed(0)
    spec = PolicySpec('sac', {'joint_pos': [8]}, goal_dim=3, horizon=1, n_action_steps=1,
                      n_obs_steps=1)
    config = SACConfig(spec, net_arch=[16, 16], max_delta=MAX_DELTA)
    rng = np.random.default_rng(0)
    normalizer = Normalizer.fit({'joint_pos': HOME_POSITION + rng.normal(0, 0.3, (50, 8)),
                                 'goal': rng.uniform([0.35, -0.3, 0.1], [0.65, 0.3, 0.4],
                                                     (50, 3))}, pinned=())
    policy = SACPolicy(config, normalizer).eval()
    with torch.no_grad():
        policy.mu.weight.mul_(50.0)  # saturate tanh for some joints: the bound must hold
    return policy


def observation(size: int = 4) -> tuple[dict[str, np.ndarray], np.ndarray]:
    rng = np.random.default_rng(1)
    joints = (HOME_POSITION + rng.normal(0, 0.3, (size, 1, 8))).astype(np.float32)
    joints[..., 7] = rng.uniform(0.0, 0.04, (size, 1))
    goal = rng.uniform([0.35, -0.3, 0.1], [0.65, 0.3, 0.4], (size, 3)).astype(np.float32)
    return {'joint_pos': joints}, goal


def test_chunks_are_absolute_targets_within_the_offset_bound():
    policy = make_policy()
    obs, goal = observation()
    context = policy.encode_observations(obs)
    assert context.shape == (4, 1, policy.context_dim) and policy.context_dim == 8 + 8
    assert np.array_equal(context[:, 0, 8:], obs['joint_pos'][:, 0])  # raw position rides along
    chunk = policy.act(context, goal)
    assert chunk.shape == (4, 1, 8) and chunk.dtype == np.float32
    assert np.array_equal(chunk, policy.predict_action(obs, goal))
    offsets = chunk[:, 0] - obs['joint_pos'][:, 0]
    assert np.all(np.abs(offsets[:, :7]) <= MAX_DELTA + 1e-6)
    assert np.abs(offsets[:, :7]).max() > 0.9 * MAX_DELTA  # saturated joints reach the bound
    assert np.array_equal(offsets[:, 7], np.zeros(4, np.float32))  # the gripper is held
    other_goal = policy.act(context, goal[::-1].copy())
    assert not np.array_equal(other_goal, chunk)  # the goal matters
    with pytest.raises(ValueError, match='goal-conditioned'):
        policy.act(context, None)
    with pytest.raises(ValueError, match='context has shape'):
        policy.act(context[:, :, :10], goal)
    with pytest.raises(NotImplementedError, match='online'):
        policy.compute_loss({})


def test_absolute_targets_offsets_the_leading_joints_only():
    reference = torch.tensor([[0.5, -0.5, 1.0, 0.02]])
    targets = absolute_targets(reference, torch.tensor([[1.0, -0.5]]), 0.2)
    assert torch.equal(targets, torch.tensor([[0.7, -0.6, 1.0, 0.02]]))


def test_checkpoint_round_trip_is_bit_identical(tmp_path):
    policy = make_policy()
    save_checkpoint(policy, tmp_path / 'sac')
    loaded = load_policy(tmp_path / 'sac')
    assert isinstance(loaded, SACPolicy) and loaded.config.to_dict() == policy.config.to_dict()
    obs, goal = observation(8)
    assert np.array_equal(loaded.predict_action(obs, goal), policy.predict_action(obs, goal))
    for name, tensor in policy.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name


def test_bad_checkpoints_fail_with_a_clear_message(tmp_path):
    directory = save_checkpoint(make_policy(), tmp_path / 'sac')
    config_path, weights_path = directory / 'config.json', directory / 'model.safetensors'
    config = json.loads(config_path.read_text())

    config['policy']['net_arch'] = [32, 16]
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match='latent_pi.0.weight: file'):
        load_policy(directory)

    config['policy']['net_arch'] = [16, 16]
    config['policy']['spec']['horizon'] = 4
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match='valid sac policy.*one step at a time'):
        load_policy(directory)

    config['policy']['spec']['horizon'] = 1
    config_path.write_text(json.dumps(config))
    tensors = load_file(str(weights_path))
    del tensors['mu.bias']
    save_file(tensors, str(weights_path))
    with pytest.raises(CheckpointError, match=r"missing tensors \['mu.bias'\]"):
        load_policy(directory)

    weights_path.write_bytes(b'\x00' * 16)
    with pytest.raises(CheckpointError, match='not a readable safetensors file'):
        load_policy(directory)


VALID_SPEC = {'policy_type': 'sac', 'obs_shapes': {'joint_pos': [8]}, 'goal_dim': 3,
              'horizon': 1, 'n_action_steps': 1, 'n_obs_steps': 1}


@pytest.mark.parametrize('spec_change, change, message', [
    ({'policy_type': 'bc'}, {}, "expected 'sac'"),
    ({'obs_shapes': {'object_state': [9]}}, {}, "lack 'joint_pos'"),
    ({'n_obs_steps': 2}, {}, 'one step at a time'),
    ({}, {'max_delta': 0.0}, 'max_delta'),
    ({}, {'n_delta_joints': 9}, 'n_delta_joints'),
    ({}, {'dropout': 0.1}, 'unknown sac settings'),
])
def test_invalid_configs_are_rejected(spec_change, change, message):
    with pytest.raises(ValueError, match=message):
        SACConfig.from_dict({'spec': {**VALID_SPEC, **spec_change}, **change})


def test_the_evaluator_runs_one_step_chunks():
    record = evaluate(PolicySource(make_policy()), 'reach',
                      RolloutOptions(episodes=2, batch=2, max_steps=4, progress=False))
    assert [episode.seed for episode in record.episodes] == [0, 1]
    assert record.chunks_rejected == 0 and record.batch_sizes == [2, 2, 2, 2]
    for episode in record.episodes:
        assert episode.commands.shape == (4, 8)
