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

"""In-process evaluation on real PyBullet: expert adapter, latency injection, a real tiny DP."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dp_tt_ros.evaluation.rollout import RolloutOptions, evaluate
from dp_tt_ros.evaluation.sources import ExpertSource, PolicySource
from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.checkpoint import load_policy, save_checkpoint
from dp_tt_ros.policies.diffusion.modeling import DiffusionPolicy
from dp_tt_ros.robot import POSITION_LOWER, POSITION_UPPER
from dp_tt_ros.sim.experts import make_expert
from dp_tt_ros.sim.tasks import make_env

TASK = 'reach'


def quiet(**kwargs) -> RolloutOptions:
    return RolloutOptions(progress=False, **kwargs)


def test_expert_adapter_succeeds_and_is_deterministic():
    first = evaluate(ExpertSource(TASK), TASK, quiet(episodes=3, seed=5, batch=2))
    second = evaluate(ExpertSource(TASK), TASK, quiet(episodes=3, seed=5, batch=2))
    assert [episode.seed for episode in first.episodes] == [5, 6, 7]
    assert all(episode.success for episode in first.episodes)
    for a, b in zip(first.episodes, second.episodes):
        assert a.time_to_goal == b.time_to_goal
        np.testing.assert_array_equal(a.commands, b.commands)
    for episode, path in zip(first.episodes, first.ee_paths):
        assert episode.commands.shape == (len(episode.command_times), 8)
        assert path.shape == (len(episode.command_times), 3)
        assert 0 < episode.time_to_goal <= episode.duration
    assert first.chunks_rejected == 0
    assert len(first.probe_ms) > 0 and all(ms > 0 for ms in first.probe_ms)


def test_batching_does_not_change_episode_outcomes():
    single = evaluate(ExpertSource(TASK), TASK, quiet(episodes=2, seed=1, batch=1))
    batched = evaluate(ExpertSource(TASK), TASK, quiet(episodes=2, seed=1, batch=2))
    for a, b in zip(single.episodes, batched.episodes):
        np.testing.assert_allclose(a.commands, b.commands)


def test_without_latency_the_env_receives_the_expert_actions():
    """The plan's time alignment must hand row 0 of each fresh chunk to the env unchanged."""
    env = make_env(TASK)
    try:
        obs, _ = env.reset(seed=3)
        expert = make_expert(TASK, seed=3)
        expert.reset(env)
        actions = []
        done = False
        while not done:
            actions.append(expert.act(obs))
            obs, _, terminated, truncated, _ = env.step(actions[-1])
            done = terminated or truncated
    finally:
        env.close()
    record = evaluate(ExpertSource(TASK), TASK, quiet(episodes=1, seed=3))
    np.testing.assert_allclose(record.episodes[0].commands, np.array(actions), atol=1e-9)


def test_injected_latency_delays_the_executed_commands():
    prompt = evaluate(ExpertSource(TASK), TASK, quiet(episodes=1, seed=2))
    late = evaluate(ExpertSource(TASK), TASK, quiet(episodes=1, seed=2, latency=0.25))
    prompt_commands, late_commands = prompt.episodes[0].commands, late.episodes[0].commands
    # Until the first chunk arrives (t = 0.25 s, i.e. ticks 0..2) the arm holds its start pose.
    np.testing.assert_allclose(late_commands[:3], np.repeat(late_commands[:1], 3, axis=0))
    assert not np.allclose(prompt_commands[:3], late_commands[:3])
    assert late.episodes[0].duration > prompt.episodes[0].duration


def test_bad_options_are_rejected():
    with pytest.raises(ValueError, match='latency'):
        quiet(episodes=1, latency=-0.1).validate()
    with pytest.raises(ValueError, match='batch'):
        quiet(episodes=1, batch=0).validate()
    with pytest.raises(ValueError, match='exceeds the chunk horizon'):
        evaluate(ExpertSource(TASK, horizon=4), TASK, quiet(episodes=1, n_action_steps=5))


def expert_transitions(task: str, episodes: int) -> dict[str, np.ndarray]:
    """Real expert data (observations, goal, action) to fit a policy's normaliser on."""
    env = make_env(task)
    rows: dict[str, list[np.ndarray]] = {}
    try:
        for seed in range(episodes):
            obs, _ = env.reset(seed=seed)
            expert = make_expert(task, seed=seed)
            expert.reset(env)
            done = False
            while not done:
                action = expert.act(obs)
                for key, value in {**obs, 'action': action}.items():
                    rows.setdefault(key, []).append(np.asarray(value, dtype=np.float32))
                obs, _, terminated, truncated, _ = env.step(action)
                done = terminated or truncated
    finally:
        env.close()
    return {key: np.stack(values) for key, values in rows.items()}


DP_TASK = 'pick_place'  # its demos open and close the gripper, so every action dim varies


def tiny_diffusion_checkpoint(directory: Path) -> Path:
    """
    Save an untrained but complete DP (U-Net, normaliser fitted on expert data).

    Untrained samples span the normaliser's range, i.e. the demo range of every action
    dimension, so the plan accepts its chunks (a constant dimension would map them 1 m away).
    """
    data = expert_transitions(DP_TASK, episodes=1)
    spec = PolicySpec(policy_type='diffusion',
                      obs_shapes={'joint_pos': [8], 'object_state': [13]}, goal_dim=3,
                      horizon=8, n_action_steps=4, n_obs_steps=2)
    torch.manual_seed(0)
    policy = DiffusionPolicy.build(data, spec, unet={'down_dims': [16, 32], 'n_groups': 8,
                                                     'step_embed_dim': 16})
    return save_checkpoint(policy, directory)


@pytest.fixture(scope='module')
def diffusion_checkpoint(tmp_path_factory) -> Path:
    return tiny_diffusion_checkpoint(tmp_path_factory.mktemp('dp') / 'diffusion_reach')


def test_real_diffusion_policy_runs_through_the_evaluator(diffusion_checkpoint):
    torch.set_num_threads(1)
    policy = load_policy(diffusion_checkpoint)
    policy.set_inference_options(num_inference_steps=2)
    options = quiet(episodes=2, batch=2, max_steps=6)
    first = evaluate(PolicySource(policy), DP_TASK, options)
    second = evaluate(PolicySource(policy), DP_TASK, options)
    assert len(first.inference_ms) == 2  # 6 ticks, a chunk every 4
    assert first.chunks_rejected == 0, first.rejection_reasons
    every_tick = evaluate(PolicySource(policy), DP_TASK,
                          quiet(episodes=1, max_steps=6, replan_every=1))
    assert len(every_tick.inference_ms) == 6
    for a, b in zip(first.episodes, second.episodes):
        assert a.commands.shape == (6, 8)
        assert np.all(a.commands >= POSITION_LOWER) and np.all(a.commands <= POSITION_UPPER)
        np.testing.assert_array_equal(a.commands, b.commands)
        assert a.duration == pytest.approx(0.6)


def test_latency_changes_what_a_real_diffusion_policy_executes(diffusion_checkpoint):
    torch.set_num_threads(1)
    policy = load_policy(diffusion_checkpoint)
    policy.set_inference_options(num_inference_steps=2)
    prompt = evaluate(PolicySource(policy), DP_TASK, quiet(episodes=1, max_steps=6))
    late = evaluate(PolicySource(policy), DP_TASK, quiet(episodes=1, max_steps=6, latency=0.15))
    start = late.episodes[0].commands[0]
    # The chunk from t = 0 arrives at 0.15 s: ticks 0 and 1 still hold the start pose.
    np.testing.assert_allclose(late.episodes[0].commands[1], start)
    assert not np.allclose(prompt.episodes[0].commands[:2], late.episodes[0].commands[:2])
    assert prompt.chunks_rejected == late.chunks_rejected == 0
