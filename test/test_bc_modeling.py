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

"""BCPolicy: interface, checkpoints, and the mode averaging that DP avoids."""

import numpy as np
import pytest
import torch

from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.bc.modeling import BCPolicy
from dp_tt_ros.policies.checkpoint import CheckpointError, load_policy, save_checkpoint

torch.set_num_threads(1)


def make_policy(goal_dim: int = 3) -> BCPolicy:
    torch.manual_seed(0)
    spec = PolicySpec('bc', {'joint_pos': [8], 'object_state': [4]}, goal_dim=goal_dim,
                      horizon=8, n_action_steps=4, n_obs_steps=2)
    rng = np.random.default_rng(0)
    data = {'joint_pos': rng.normal(size=(50, 8)), 'object_state': rng.normal(size=(50, 4)),
            'action': rng.uniform(-2, 2, size=(50, 8)), 'goal': rng.uniform(size=(50, 3))}
    return BCPolicy.build(data, spec, hidden_dims=[32, 32]).eval()


def observation(size: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {'joint_pos': rng.normal(size=(size, 2, 8)).astype(np.float32),
            'object_state': rng.normal(size=(size, 2, 4)).astype(np.float32)}


def test_act_shapes_and_loss():
    policy = make_policy()
    goal = np.full((2, 3), 0.5, np.float32)
    context = policy.encode_observations(observation())
    assert context.shape == (2, 2, 12)
    chunk = policy.act(context, goal)
    assert chunk.shape == (2, 8, 8) and chunk.dtype == np.float32
    assert np.array_equal(policy.predict_action(observation(), goal), chunk)
    policy.train()
    batch = {'obs.joint_pos': torch.randn(4, 2, 8), 'obs.object_state': torch.randn(4, 2, 4),
             'goal': torch.rand(4, 3), 'action': torch.randn(4, 8, 8),
             'action_is_pad': torch.zeros(4, 8, dtype=torch.bool)}
    loss = policy.compute_loss(batch)
    loss.backward()
    assert torch.isfinite(loss) and policy.goal_project.weight.grad is not None


def test_bad_inputs_are_named():
    policy = make_policy()
    with pytest.raises(ValueError, match='context has shape \\(2, 3, 12\\)'):
        policy.act(np.zeros((2, 3, 12)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match='goal-conditioned; expected a goal'):
        policy.act(np.zeros((2, 2, 12)), None)
    with pytest.raises(ValueError, match="no inference options \\['guidance_scale'\\]"):
        policy.set_inference_options(guidance_scale=2.0)
    with pytest.raises(ValueError, match="policy_type is 'diffusion'; expected 'bc'"):
        BCPolicy.from_config({'spec': {**policy.spec.to_dict(), 'policy_type': 'diffusion'}})


def test_checkpoint_round_trip_and_mismatch(tmp_path):
    policy = make_policy()
    directory = save_checkpoint(policy, tmp_path / 'bc')
    loaded = load_policy(directory)
    assert isinstance(loaded, BCPolicy)
    for name, tensor in policy.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    goal = np.ones((2, 3), np.float32)
    assert np.array_equal(loaded.predict_action(observation(), goal),
                          policy.predict_action(observation(), goal))
    other = make_policy(goal_dim=0)
    save_checkpoint(other, tmp_path / 'other')
    (tmp_path / 'other' / 'model.safetensors').write_bytes(
        (directory / 'model.safetensors').read_bytes())
    with pytest.raises(CheckpointError, match='unexpected tensors'):
        load_policy(tmp_path / 'other')


def test_bc_regresses_bimodal_demonstrations_to_their_mean():
    spec = PolicySpec('bc', {'state': [2]}, action_dim=2, horizon=8, n_action_steps=4,
                      n_obs_steps=1)
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=256)
    ramp = np.linspace(0.25, 1.0, 8)
    chunks = (signs[:, None, None] * ramp[None, :, None] * np.ones((1, 1, 2))).astype(np.float32)
    torch.manual_seed(0)
    policy = BCPolicy.build({'state': np.zeros((256, 2)), 'action': chunks.reshape(-1, 2)}, spec,
                            hidden_dims=[64, 64])
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    targets = torch.as_tensor(chunks)
    policy.train()
    for _ in range(200):
        index = torch.randint(0, 256, (64,))
        loss = policy.compute_loss({'obs.state': torch.zeros(64, 1, 2), 'action': targets[index],
                                    'action_is_pad': torch.zeros(64, 8, dtype=torch.bool)})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()
    chunk = policy.predict_action({'state': np.zeros((1, 1, 2), np.float32)})
    mean_of_modes = chunks.mean(axis=0)
    assert np.abs(chunk[0] - mean_of_modes).max() < 0.1
    assert np.abs(chunk).max() < 0.3


def test_chunks_stay_inside_the_demonstrated_action_range():
    policy = make_policy()
    with torch.no_grad():
        policy.head[-1].bias.fill_(5.0)  # a head that overshoots every demonstration
    chunk = policy.act(policy.encode_observations(observation()), np.zeros((2, 3), np.float32))
    low = policy.normalizer.unnormalize('action', -torch.ones(8)).numpy()
    high = policy.normalizer.unnormalize('action', torch.ones(8)).numpy()
    assert np.all(chunk >= low - 1e-5) and np.all(chunk <= high + 1e-5)
    np.testing.assert_allclose(chunk[0, 0], high, atol=1e-5)
