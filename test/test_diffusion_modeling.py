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

"""DiffusionPolicy: interface, fast paths equal the reference, guidance, checkpoints, learning."""

import copy
import json

import numpy as np
import pytest
import torch

from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.checkpoint import CheckpointError, load_policy, save_checkpoint
from dp_tt_ros.policies.diffusion.modeling import DiffusionPolicy
from dp_tt_ros.policies.ema import EMA

torch.set_num_threads(1)

SMALL_UNET = {'down_dims': [16, 32], 'step_embed_dim': 16}


def make_spec(goal_dim: int = 3) -> PolicySpec:
    return PolicySpec('diffusion', {'joint_pos': [8], 'object_state': [4]}, goal_dim=goal_dim,
                      horizon=8, n_action_steps=4, n_obs_steps=2)


def make_data(spec: PolicySpec, steps: int = 64, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = {key: rng.normal(size=(steps, *shape)).astype(np.float32)
            for key, shape in spec.obs_shapes.items()}
    data['action'] = rng.uniform(-2, 2, size=(steps, spec.action_dim)).astype(np.float32)
    if spec.goal_dim:
        data['goal'] = rng.uniform(0, 1, size=(steps, spec.goal_dim)).astype(np.float32)
    return data


def make_policy(goal_dim: int = 3, **config) -> DiffusionPolicy:
    torch.manual_seed(0)
    spec = make_spec(goal_dim)
    return DiffusionPolicy.build(make_data(spec), spec, unet=SMALL_UNET, **config).eval()


def make_batch(policy: DiffusionPolicy, size: int = 4) -> dict[str, torch.Tensor]:
    spec = policy.spec
    batch = {f'obs.{key}': torch.randn(size, spec.n_obs_steps, *shape)
             for key, shape in spec.obs_shapes.items()}
    batch['action'] = torch.randn(size, spec.horizon, spec.action_dim)
    batch['action_is_pad'] = torch.zeros(size, spec.horizon, dtype=torch.bool)
    if spec.goal_dim:
        batch['goal'] = torch.rand(size, spec.goal_dim)
    return batch


def observation(policy: DiffusionPolicy, size: int = 2) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {key: rng.normal(size=(size, policy.n_obs_steps, *shape)).astype(np.float32)
            for key, shape in policy.spec.obs_shapes.items()}


def seeded_act(policy: DiffusionPolicy, context: np.ndarray, goal, seed: int = 3) -> np.ndarray:
    torch.manual_seed(seed)
    return policy.act(context, goal)


def test_act_returns_chunks_in_robot_units_and_predict_action_composes():
    policy = make_policy()
    obs, goal = observation(policy), np.full((2, 3), 0.5, np.float32)
    context = policy.encode_observations(obs)
    assert context.shape == (2, 2, policy.context_dim) and context.dtype == np.float32
    chunk = seeded_act(policy, context, goal)
    assert chunk.shape == (2, 8, 8) and chunk.dtype == np.float32
    # Samples are clipped to [-1, 1] in normalised units, i.e. to the data range.
    assert chunk.min() >= -2.0 - 1e-4 and chunk.max() <= 2.0 + 1e-4
    torch.manual_seed(3)
    assert np.array_equal(policy.predict_action(obs, goal), chunk)


@pytest.mark.parametrize('sampler, eta, guidance', [('ddim', 0.0, 1.0), ('ddpm', 0.0, 2.5),
                                                    ('ddim', 0.5, 0.0)])
def test_every_backend_equals_the_reference_path(sampler, eta, guidance):
    policy = make_policy()
    context = torch.as_tensor(policy.encode_observations(observation(policy)))
    goal = torch.rand(2, 3)
    noise = torch.randn(2, 8, 8)
    step_noise = [torch.randn(2, 8, 8) for _ in range(5)]
    results = {}
    with torch.inference_mode():
        for backend in ('reference', 'precomputed', 'packed', 'traced'):
            policy.set_inference_options(backend=backend, sampler=sampler, eta=eta,
                                         guidance_scale=guidance, num_inference_steps=5)
            results[backend] = policy.sample(context, goal, noise, step_noise)
    for backend, result in results.items():
        assert torch.allclose(result, results['reference'], atol=1e-4), backend


def test_guidance_zero_is_the_unconditional_prediction_and_one_the_conditional():
    policy = make_policy()
    with torch.no_grad():
        policy.goal_embedding.null.normal_()
    context = policy.encode_observations(observation(policy))
    goal = np.full((2, 3), 0.9, np.float32)
    unconditional = seeded_act(policy, context, None)
    conditional = seeded_act(policy, context, goal)
    assert not np.allclose(unconditional, conditional)
    policy.set_inference_options(guidance_scale=0.0)
    assert np.allclose(seeded_act(policy, context, goal), unconditional, atol=1e-6)
    policy.set_inference_options(guidance_scale=1.0, backend='reference')
    assert np.allclose(seeded_act(policy, context, goal), conditional, atol=1e-4)
    policy.set_inference_options(guidance_scale=3.0)
    assert not np.allclose(seeded_act(policy, context, goal), conditional, atol=1e-3)


def test_cached_fast_network_follows_weight_changes():
    policy = make_policy()
    context = policy.encode_observations(observation(policy))
    goal = np.zeros((2, 3), np.float32)
    seeded_act(policy, context, goal)
    other = make_policy()
    with torch.no_grad():
        for param in other.denoiser.parameters():
            param.add_(0.05 * torch.randn_like(param))
    policy.load_state_dict(other.state_dict())
    assert np.array_equal(seeded_act(policy, context, goal), seeded_act(other, context, goal))


def test_compute_loss_trains_with_goal_dropout_and_transformer_denoiser():
    for denoiser in ('unet', 'transformer'):
        policy = make_policy(denoiser=denoiser,
                             transformer={'n_layer': 1, 'n_head': 2, 'n_emb': 16}).train()
        loss = policy.compute_loss(make_batch(policy))
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        assert policy.goal_embedding.project.weight.grad is not None
        policy.eval()
        chunk = seeded_act(policy, policy.encode_observations(observation(policy)),
                           np.zeros((2, 3), np.float32))
        assert chunk.shape == (2, 8, 8) and np.isfinite(chunk).all()


def test_bad_inputs_and_options_are_named():
    policy = make_policy()
    with pytest.raises(ValueError,
                       match='context has shape \\(2, 2, 5\\); expected \\(B, 2, 12\\)'):
        policy.act(np.zeros((2, 2, 5)), None)
    with pytest.raises(ValueError, match='goal has shape \\(2, 4\\); expected \\(2, 3\\)'):
        policy.act(np.zeros((2, 2, 12)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match='num_inference_steps is 0'):
        policy.set_inference_options(num_inference_steps=0)
    with pytest.raises(ValueError, match="sampler 'euler' is unknown"):
        policy.set_inference_options(sampler='euler')
    with pytest.raises(ValueError, match="no inference options \\['beam_width'\\]"):
        policy.set_inference_options(beam_width=3)
    with pytest.raises(ValueError, match="denoiser 'mlp' is unknown"):
        make_policy(denoiser='mlp')


def test_checkpoint_round_trip_is_bit_identical(tmp_path):
    policy = make_policy(noise={'prediction_type': 'sample', 'beta_schedule': 'linear'})
    policy.set_inference_options(num_inference_steps=4)
    save_checkpoint(policy, tmp_path / 'ckpt')
    loaded = load_policy(tmp_path / 'ckpt')
    assert isinstance(loaded, DiffusionPolicy) and not loaded.training
    for name, tensor in policy.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    assert loaded.config_dict() == policy.config_dict()
    context = policy.encode_observations(observation(policy))
    assert np.array_equal(loaded.encode_observations(observation(policy)), context)
    goal = np.ones((2, 3), np.float32)
    assert np.array_equal(seeded_act(loaded, context, goal), seeded_act(policy, context, goal))


def test_corrupt_truncated_and_mismatched_checkpoints_fail_clearly(tmp_path):
    policy = make_policy()
    directory = save_checkpoint(policy, tmp_path / 'ckpt')
    weights = directory / 'model.safetensors'
    original = weights.read_bytes()
    weights.write_bytes(original[:len(original) // 2])
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_policy(directory)
    weights.write_bytes(b'not a safetensors file at all')
    with pytest.raises(CheckpointError, match='truncated or corrupt'):
        load_policy(directory)
    weights.write_bytes(original)
    config = json.loads((directory / 'config.json').read_text())
    config['policy']['unet']['down_dims'] = [16, 64]
    (directory / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match='does not match config.json'):
        load_policy(directory)
    config['policy']['unet']['kernel_size'] = 4
    (directory / 'config.json').write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match='kernel_size is 4'):
        load_policy(directory)


def test_ema_warm_up_schedule_and_update():
    policy = make_policy()
    context = policy.encode_observations(observation(policy))
    seeded_act(policy, context, None)  # builds the cached traced network, which copies must drop
    ema = EMA(policy)
    assert np.array_equal(seeded_act(ema.averaged, context, None),
                          seeded_act(policy, context, None))
    assert ema.decay_at(0) == 0.0
    assert ema.decay_at(1) == pytest.approx(1 - 2 ** -0.75)
    assert ema.decay_at(10 ** 9) == pytest.approx(0.9999)
    assert all(not p.requires_grad for p in ema.averaged.parameters())
    with torch.no_grad():
        for param in policy.parameters():
            param.add_(1.0)
    before = copy.deepcopy(ema.averaged.state_dict())
    ema.update(policy, step=3)
    decay = 1 - (1 + 3) ** -0.75
    name = 'denoiser.core.final.1.weight'
    expected = decay * before[name] + (1 - decay) * policy.state_dict()[name]
    assert torch.allclose(ema.averaged.state_dict()[name], expected, atol=1e-6)
    assert torch.equal(ema.averaged.state_dict()['normalizer.fields.action.scale'],
                       policy.state_dict()['normalizer.fields.action.scale'])
    with pytest.raises(ValueError, match='power=0'):
        EMA(policy, power=0)


def bimodal_data(count: int = 256) -> tuple[PolicySpec, dict[str, np.ndarray]]:
    """Constant observation; each chunk ramps to +1 or to -1 with equal probability."""
    spec = PolicySpec('diffusion', {'state': [2]}, action_dim=2, horizon=8, n_action_steps=4,
                      n_obs_steps=1)
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], size=count)
    ramp = np.linspace(0.25, 1.0, spec.horizon)
    actions = (signs[:, None, None] * ramp[None, :, None] * np.ones((1, 1, 2))).astype(np.float32)
    data = {'state': np.zeros((count, 2), np.float32), 'action': actions.reshape(-1, 2)}
    return spec, {'data': data, 'chunks': actions}


def test_diffusion_learns_both_modes_of_bimodal_demonstrations():
    spec, bundle = bimodal_data()
    torch.manual_seed(0)
    policy = DiffusionPolicy.build(bundle['data'], spec,
                                   unet={'down_dims': [32, 64], 'step_embed_dim': 32})
    optimizer = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    chunks = torch.as_tensor(bundle['chunks'])
    policy.train()
    for _ in range(300):
        index = torch.randint(0, len(chunks), (64,))
        batch = {'obs.state': torch.zeros(64, 1, 2), 'action': chunks[index],
                 'action_is_pad': torch.zeros(64, 8, dtype=torch.bool)}
        loss = policy.compute_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()
    context = policy.encode_observations({'state': np.zeros((200, 1, 2), np.float32)})
    samples = seeded_act(policy, context, None)
    signs = np.sign(samples.mean(axis=(1, 2)))
    assert 0.25 < (signs > 0).mean() < 0.75
    nearest = signs[:, None, None] * np.linspace(0.25, 1.0, 8)[None, :, None]
    assert np.abs(samples - nearest).mean() < 0.15
