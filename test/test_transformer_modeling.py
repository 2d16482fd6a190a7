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

"""TrajectoryTransformerPolicy: build, dataset, loss, checkpoints and the Policy interface."""

import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest
import torch

from dp_tt_ros.paths import models_dir
from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.checkpoint import load_policy, save_checkpoint
from dp_tt_ros.policies.transformer.dataset import discounted_values
from dp_tt_ros.policies.transformer.modeling import TrajectoryTransformerPolicy
from dp_tt_ros.policies.transformer.planner import (JointLimitConstraint, PandaKinematics,
                                                    TraceEntry)
from dp_tt_ros.robot import POSITION_LOWER, POSITION_UPPER
from dp_tt_ros.sim.tasks import make_env

TINY = {'n_layer': 1, 'n_head': 2, 'n_embd': 16, 'n_bins': 12, 'window_transitions': 3,
        'dropout': 0.0}


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    """Use one intra-op thread: small models run faster and the shared CPU stays usable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def reach_like_data(episodes: int = 6, length: int = 9, seed: int = 0) -> dict[str, np.ndarray]:
    """Episodes whose action is a smooth function of the state, with a distance reward."""
    rng = np.random.default_rng(seed)
    rows = episodes * length
    goal = np.repeat(rng.uniform(-0.5, 0.5, (episodes, 3)), length, axis=0)
    joint_pos = rng.uniform(-1.0, 1.0, (rows, 8))
    return {
        'joint_pos': joint_pos.astype(np.float32),
        'object_state': rng.normal(size=(rows, 2)).astype(np.float32),
        'goal': goal.astype(np.float32),
        'action': (0.8 * joint_pos + 0.1).astype(np.float32),
        'reward': -np.abs(joint_pos[:, 0] - goal[:, 0]).astype(np.float32),
        'success': np.zeros(rows, dtype=np.float32),
        'episode_ends': np.arange(length, rows + 1, length),
    }


def tiny_policy(seed: int = 0, **overrides: object) -> TrajectoryTransformerPolicy:
    torch.manual_seed(seed)
    spec = PolicySpec(policy_type='transformer',
                      obs_shapes={'joint_pos': [8], 'object_state': [2]}, goal_dim=3,
                      horizon=3, n_action_steps=2, n_obs_steps=1)
    planning = {'beam_width': 4, 'n_expand': 2}
    return TrajectoryTransformerPolicy.build(reach_like_data(), spec,
                                             **{**TINY, 'planning': planning, **overrides})


def test_values_and_returns_are_discounted_within_episodes() -> None:
    rewards = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    values, returns = discounted_values(rewards, [3, 5], discount=0.5)
    np.testing.assert_allclose(values, [2.0 + 0.5 * 3.0, 3.0, 0.0, 20.0, 0.0])
    np.testing.assert_allclose(returns, [1.0 + 0.5 * 3.5, 2.0 + 0.5 * 3.0, 3.0, 20.0, 20.0])


def test_dataset_windows_hold_the_return_token_and_mask_padding() -> None:
    policy = tiny_policy()
    data = reach_like_data()
    dataset = policy.make_dataset(data)
    assert len(dataset) == len(data['reward'])
    transition_dim = policy.transition_dim
    assert transition_dim == 8 + 2 + 3 + 8 + 2
    last_of_first_episode = 8
    sample = dataset[last_of_first_episode]
    assert sample['bins'].shape == (1 + 3 * transition_dim,)
    assert sample['loss_mask'].tolist() == [1.0] * transition_dim + [0.0] * 2 * transition_dim
    batch = dataset.get_batch([0, 1])
    rows = np.concatenate([data['joint_pos'][:3], data['object_state'][:3], data['goal'][:3],
                           data['action'][:3]], axis=1)
    expected = policy.tokenizer.encode(rows, slice(0, 21))
    body = batch['bins'][0, 1:].view(3, transition_dim)
    assert torch.equal(body[:, :21], expected)
    _, returns = discounted_values(data['reward'], data['episode_ends'], 0.99)
    assert int(batch['bins'][0, 0]) == int(policy.tokenizer.encode(returns[:1, None],
                                                                   slice(23, 24))[0, 0])


def test_relative_actions_are_offsets_from_the_joint_positions() -> None:
    policy = tiny_policy(relative_actions=True).eval()
    data = reach_like_data()
    assert policy.action_offset_dims == list(range(8))
    body = policy.make_dataset(data).get_batch([0])['bins'][0, 1:].view(3, -1)
    offsets = data['action'][:3] - data['joint_pos'][:3]
    assert torch.equal(body[:, 13:21], policy.tokenizer.encode(offsets, slice(13, 21)))
    obs = {key: data[key][None, :1] for key in ('joint_pos', 'object_state')}
    plan = policy.plan(policy.encode_observations(obs), data['goal'][:1])[0]
    first = policy.tokenizer.decode(torch.as_tensor(plan.action_tokens[0]), slice(13, 21))
    np.testing.assert_allclose(plan.actions[0], data['joint_pos'][0] + first.numpy(), atol=1e-6)
    chunk = policy.act(policy.encode_observations(obs), data['goal'][:1])[0]
    np.testing.assert_allclose(chunk, np.clip(plan.actions, POSITION_LOWER, POSITION_UPPER),
                               atol=1e-6)
    assert np.any(plan.actions[:, 3] > POSITION_UPPER[3]), 'the data leaves the Panda limits'
    with pytest.raises(ValueError, match="relative_goal need a 'joint_pos'"):
        spec = PolicySpec(policy_type='transformer', obs_shapes={'object_state': [2]},
                          goal_dim=3, horizon=3, n_action_steps=2, n_obs_steps=1)
        TrajectoryTransformerPolicy(spec, relative_actions=True)


def test_relative_goal_is_the_goal_seen_from_the_tool() -> None:
    policy = tiny_policy(relative_goal=True).eval()
    data = reach_like_data()
    body = policy.make_dataset(data).get_batch([0])['bins'][0, 1:].view(3, -1)
    offset = data['goal'][:3] - PandaKinematics().tool_positions(data['joint_pos'][:3])
    assert torch.equal(body[:, 10:13], policy.tokenizer.encode(offset, slice(10, 13)))
    assert policy.static_state_dims == [], 'the offset changes as the arm moves'
    trace: list[TraceEntry] = []
    obs = {key: data[key][None, :1] for key in ('joint_pos', 'object_state')}
    state = np.concatenate([data['joint_pos'][0], data['object_state'][0], offset[0]])
    policy.planner.plan(state, policy.options, trace=trace)
    policy.plan(policy.encode_observations(obs), data['goal'][:1])
    assert torch.equal(trace[0].window[0, 1:14], policy.tokenizer.encode(state, slice(0, 13)))
    with pytest.raises(ValueError, match='relative_goal needs a 3-d goal'):
        spec = PolicySpec(policy_type='transformer', obs_shapes={'joint_pos': [8]}, goal_dim=2)
        TrajectoryTransformerPolicy(spec, relative_goal=True)


def test_tracked_next_state_puts_the_joints_at_their_targets_and_moves_the_goal() -> None:
    policy = tiny_policy(relative_actions=True, relative_goal=True).eval()
    data = reach_like_data()
    tool = PandaKinematics().tool_positions(data['joint_pos'][:2])
    states = torch.from_numpy(np.concatenate(
        [data['joint_pos'][:2], data['object_state'][:2], data['goal'][:2] - tool], axis=1))
    targets = torch.from_numpy(data['joint_pos'][2:4].astype(np.float64))
    following = policy._tracked_next_state(states, targets).numpy()
    np.testing.assert_allclose(following[:, :8], targets.numpy())
    np.testing.assert_allclose(following[:, 8:10], states[:, 8:10].numpy())
    moved = data['goal'][:2] - PandaKinematics().tool_positions(targets.numpy())
    np.testing.assert_allclose(following[:, 10:13], moved, atol=1e-5)
    policy.set_inference_options(tracked_targets=True)
    obs = {key: data[key][None, :1] for key in ('joint_pos', 'object_state')}
    trace: list[TraceEntry] = []
    policy.planner.plan(states[0].numpy(), policy.options, trace=trace)
    assert len(trace) == policy.planner.model_calls(policy.horizon, tracked_targets=True)
    assert policy.act(policy.encode_observations(obs), data['goal'][:1]).shape == (1, 3, 8)
    with pytest.raises(ValueError, match='tracked_targets needs a model trained with '
                                         'relative_actions'):
        tiny_policy(planning={'tracked_targets': True})
    with pytest.raises(ValueError, match='tracked_targets needs a model trained with'):
        tiny_policy().set_inference_options(tracked_targets=True)


def test_the_shipped_reach_model_plans_through_latency() -> None:
    """A chunk that starts late executes predicted steps: they must still lead to the goal."""
    from dp_tt_ros.evaluation.runs import EvalSettings, run_evaluation
    checkpoint = models_dir() / 'transformer_reach'
    assert load_policy(checkpoint).options.tracked_targets
    outcome = run_evaluation(EvalSettings(checkpoint=str(checkpoint), task='reach', episodes=4,
                                          batch=4, latency=0.15))
    assert outcome.report['summary']['success_rate']['value'] == 1.0


def test_state_dims_that_never_change_within_an_episode_are_static(tmp_path: Path) -> None:
    policy = tiny_policy()
    assert policy.static_state_dims == [10, 11, 12], 'only the goal is constant per episode'
    assert policy.planner.fixed_state_dims == {10, 11, 12}
    save_checkpoint(policy, tmp_path / 'tt')
    assert load_policy(tmp_path / 'tt').static_state_dims == [10, 11, 12]


def test_training_lowers_the_loss() -> None:
    policy = tiny_policy(seed=1)
    batch = policy.make_dataset(reach_like_data()).get_batch(np.arange(0, 54, 2))
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    policy.train()
    with torch.no_grad():
        first = float(policy.compute_loss(batch))
    for _ in range(25):
        optimizer.zero_grad()
        loss = policy.compute_loss(batch)
        loss.backward()
        optimizer.step()
    policy.eval()
    with torch.no_grad():
        assert float(policy.compute_loss(batch)) < 0.7 * first


def test_checkpoint_round_trip_is_bit_identical(tmp_path: Path) -> None:
    policy = tiny_policy(strategy='quantile').eval()
    policy.set_inference_options(mode='likelihood', beam_width=3)
    save_checkpoint(policy, tmp_path / 'tt')
    loaded = load_policy(tmp_path / 'tt')
    assert isinstance(loaded, TrajectoryTransformerPolicy)
    original_state, loaded_state = policy.state_dict(), loaded.state_dict()
    assert 'tokenizer.edges' in loaded_state
    assert set(original_state) == set(loaded_state)
    for name, tensor in original_state.items():
        assert torch.equal(tensor, loaded_state[name]), name
    assert loaded.options == policy.options
    context = np.zeros((1, 1, loaded.context_dim), dtype=np.float32)
    goal = np.full((1, 3), 0.1, dtype=np.float32)
    np.testing.assert_array_equal(policy.act(context, goal), loaded.act(context, goal))


def test_act_returns_a_chunk_per_batch_row_in_robot_units() -> None:
    policy = tiny_policy().eval()
    data = reach_like_data()
    obs = {'joint_pos': data['joint_pos'][None, :2].repeat(2, 0),
           'object_state': data['object_state'][None, :2].repeat(2, 0)}
    context = policy.encode_observations(obs)
    assert context.shape == (2, 2, 10) and context.dtype == np.float32
    goal = data['goal'][:2]
    chunk = policy.act(context, goal)
    assert chunk.shape == (2, 3, 8) and chunk.dtype == np.float32
    np.testing.assert_array_equal(chunk, policy.predict_action(obs, goal))
    low = policy.tokenizer.edges[13:21, 0].numpy()
    high = policy.tokenizer.edges[13:21, -1].numpy()
    assert np.all(chunk >= low - 1e-6) and np.all(chunk <= high + 1e-6)
    policy.set_inference_options(planning_horizon=5, mode='return', target_return=-0.2)
    assert policy.horizon == 5
    assert policy.act(context, goal).shape == (2, 5, 8)


def history_policy() -> TrajectoryTransformerPolicy:
    """Build a tiny policy with relative actions that plans from its last 2 transitions."""
    return tiny_policy(relative_actions=True, relative_goal=True,
                       planning={'beam_width': 4, 'n_expand': 2,
                                 'context_transitions': 2}).eval()


def test_acting_remembers_the_last_context_transitions_per_row_until_reset() -> None:
    policy = history_policy()
    data = reach_like_data()
    goal = data['goal'][:2]
    contexts = [policy.encode_observations(
        {'joint_pos': data['joint_pos'][None, step:step + 2].reshape(2, 1, 8),
         'object_state': data['object_state'][None, step:step + 2].reshape(2, 1, 2)})
        for step in range(0, 8, 2)]
    first_chunk = policy.act(contexts[0], goal)
    plans = policy.plan(contexts[1], goal)
    chunk = policy.act(contexts[1], goal)
    for row in range(2):
        past = policy.history[row][-1]
        np.testing.assert_array_equal(past.state, policy._states(contexts[1], goal)[0][row])
        np.testing.assert_array_equal(past.action, chunk[row, 0])
        assert past.reward == float(plans[row].expected_rewards[0])
        expected = policy.planner.plan(past.state, policy.options, goal=goal[row],
                                       history=policy.history[row][:1])
        np.testing.assert_array_equal(plans[row].action_tokens, expected.action_tokens)
        alone = policy.planner.plan(past.state, policy.options, goal=goal[row])
        assert plans[row].score != alone.score, 'the history reaches the planner'
    for context in contexts[2:]:
        policy.act(context, goal)
    assert [len(rows) for rows in policy.history.values()] == [2, 2], \
        'capped at context_transitions'
    np.testing.assert_array_equal(policy.history[0][-1].state,
                                  policy._states(contexts[-1], goal)[0][0])
    policy.act(contexts[0][:1], goal[:1])
    assert [len(rows) for rows in policy.history.values()] == [1], \
        'untracked, a new batch size starts afresh'
    policy.reset()
    assert policy.history == {}
    np.testing.assert_array_equal(policy.act(contexts[0], goal), first_chunk)
    policy.set_inference_options(context_transitions=0)
    policy.reset()
    policy.act(contexts[0], goal)
    assert policy.history == {}, 'without context nothing is remembered'


def test_tracked_rows_keep_their_history_when_the_batch_shrinks() -> None:
    policy = history_policy()
    data = reach_like_data()
    goal = data['goal'][:3]
    context = policy.encode_observations(
        {'joint_pos': data['joint_pos'][:3, None], 'object_state': data['object_state'][:3, None]})
    policy.track_rows([0, 1, 2])
    policy.act(context, goal)
    kept = list(policy.history[2])
    policy.track_rows([2])
    plan = policy.plan(context[2:], goal[2:])[0]
    state = policy._states(context[2:], goal[2:])[0][0]
    expected = policy.planner.plan(state, policy.options, goal=goal[2], history=kept)
    np.testing.assert_array_equal(plan.action_tokens, expected.action_tokens)
    policy.act(context[2:], goal[2:])
    assert [len(policy.history[episode]) for episode in (0, 1, 2)] == [1, 1, 2]
    with pytest.raises(ValueError, match='2 rows but track_rows named 1 episodes'):
        policy.act(context[:2], goal[:2])
    policy.reset()
    assert policy.row_ids is None and policy.history == {}


def test_context_transitions_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match='context_transitions must be >= 0, got -1'):
        tiny_policy(planning={'context_transitions': -1})
    policy = tiny_policy()
    assert policy.options.context_transitions == 0, 'old checkpoints plan without history'
    with pytest.raises(ValueError, match='context_transitions must be >= 0, got -2'):
        policy.set_inference_options(context_transitions=-2)


def test_constraints_reach_the_planner_through_inference_options() -> None:
    policy = tiny_policy().eval()
    lower = policy.tokenizer.centres[13:21].median(dim=1).values.numpy()
    upper = policy.tokenizer.edges[13:21, -1].numpy()
    policy.set_inference_options(constraints=[JointLimitConstraint(lower, upper)])
    chunk = policy.act(np.zeros((1, 1, 10), dtype=np.float32), np.zeros((1, 3)))
    assert np.all(chunk >= lower.astype(np.float32))


def test_bad_input_names_the_problem() -> None:
    policy = tiny_policy().eval()
    with pytest.raises(ValueError, match='pass goal'):
        policy.act(np.zeros((1, 1, 10)))
    with pytest.raises(ValueError, match=r'context must be \(B, To, 10\)'):
        policy.act(np.zeros((1, 1, 7)), np.zeros((1, 3)))
    with pytest.raises(KeyError, match='object_state'):
        policy.encode_observations({'joint_pos': np.zeros((1, 1, 8))})
    with pytest.raises(ValueError, match=r"unknown planning options \['beams'\]"):
        policy.set_inference_options(beams=3)
    with pytest.raises(ValueError, match='shorter than n_action_steps 2'):
        policy.set_inference_options(planning_horizon=1)
    with pytest.raises(TypeError, match='ActionConstraint'):
        policy.set_inference_options(constraints=['joint limits'])
    with pytest.raises(ValueError, match=r"unknown transformer settings \['layers'\]"):
        tiny_policy(layers=3)
    data = reach_like_data()
    del data['reward']
    with pytest.raises(KeyError, match="lacks \\['reward'\\]"):
        policy.make_dataset(data)


def trained_reach_checkpoint() -> Path:
    """Return the trained reach checkpoint: ``$DP_TT_ROS_TT_REACH`` or the shipped one."""
    configured = os.environ.get('DP_TT_ROS_TT_REACH')
    path = Path(configured) if configured else models_dir() / 'transformer_reach'
    if not (path / 'config.json').is_file():
        pytest.skip(f'no trained transformer reach checkpoint at {path}; train one with '
                    '`dp-tt-ros train --policy transformer --data REACH_STORE --out DIR`')
    return path


def reach_returns(policy: TrajectoryTransformerPolicy, episodes: int,
                  max_steps: int) -> tuple[float, float]:
    """Run closed-loop reach episodes replanning every step; return (success rate, mean return)."""
    env = make_env('reach', seed=0, max_steps=max_steps)
    successes, returns = [], []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=5000 + episode)
            total, done, success = 0.0, False, False
            while not done:
                history = {key: obs[key][None, None] for key in policy.state_keys}
                action = policy.predict_action(history, obs['goal'][None])[0, 0]
                obs, reward, success, truncated, _ = env.step(action)
                total += reward
                done = success or truncated
            successes.append(success)
            returns.append(total)
    finally:
        env.close()
    return float(np.mean(successes)), float(np.mean(returns))


def test_trained_policy_reaches_goals_in_closed_loop() -> None:
    policy = load_policy(trained_reach_checkpoint())
    policy.set_inference_options(mode='value', beam_width=4, n_expand=2)
    success_rate, _ = reach_returns(policy, episodes=6, max_steps=30)
    assert success_rate >= 0.5


def test_higher_target_returns_give_higher_achieved_returns() -> None:
    policy = load_policy(trained_reach_checkpoint())
    returns_column = policy.tokenizer.centres[-1]
    low, high = float(returns_column.min()), float(returns_column.max())
    achieved = {}
    for target in (low, high):
        policy.set_inference_options(mode='return', target_return=target, beam_width=4)
        achieved[target] = reach_returns(policy, episodes=4, max_steps=20)[1]
    assert achieved[high] > achieved[low]
