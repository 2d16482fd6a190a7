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

"""Beam planning: exact cache over whole plans, exhaustive optimum, constraints, kinematics."""

import itertools
import math

import numpy as np
import pybullet
import pybullet_data
import pytest
import torch

from dp_tt_ros.policies.transformer.gpt import GPTConfig, TrajectoryGPT
from dp_tt_ros.policies.transformer.planner import (BeamPlanner, JointLimitConstraint,
                                                    KeepOutConstraint, PandaKinematics,
                                                    PastTransition, PlanningError,
                                                    PlanningOptions, ReachGoalConstraint,
                                                    TraceEntry, box)
from dp_tt_ros.policies.transformer.tokenizer import Discretizer
from dp_tt_ros.robot import POSITION_LOWER, POSITION_UPPER


@pytest.fixture(autouse=True)
def single_thread() -> None:
    """Use one intra-op thread: small models run faster and the shared CPU stays usable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_planner(state_dim: int, action_dim: int, n_bins: int, block_transitions: int,
                 seed: int = 0, weight_scale: float = 1.0,
                 actions: np.ndarray | None = None) -> BeamPlanner:
    """Return a planner over a small random-weight GPT and a tokenizer fitted on random data."""
    torch.manual_seed(seed)
    transition_dim = state_dim + action_dim + 2
    config = GPTConfig(n_bins=n_bins, transition_dim=transition_dim,
                       block_size=block_transitions * transition_dim, n_layer=2, n_head=2,
                       n_embd=16, dropout=0.0)
    model = TrajectoryGPT(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(weight_scale)
    rng = np.random.default_rng(seed)
    table = rng.normal(size=(500, transition_dim + 1))
    if actions is not None:
        table[:, state_dim:state_dim + action_dim] = actions
    tokenizer = Discretizer(transition_dim + 1, n_bins).fit(table)
    return BeamPlanner(model, tokenizer, state_dim, action_dim)


@pytest.mark.parametrize('mode', ['value', 'return', 'likelihood'])
def test_cached_logits_equal_a_full_reforward_over_a_plan_with_window_slides(mode: str) -> None:
    planner = make_planner(state_dim=2, action_dim=2, n_bins=6, block_transitions=3)
    options = PlanningOptions(mode=mode, beam_width=4, n_expand=3, planning_horizon=6,
                              cdf=None, target_return=0.5)
    trace: list[TraceEntry] = []
    cached = planner.plan(np.array([0.1, -0.2]), options, trace=trace)
    prefills = [index for index, entry in enumerate(trace) if entry.prefilled]
    assert len(prefills) >= 3, 'the plan should outgrow the block and slide its window'
    assert max(entry.window.shape[1] for entry in trace) == planner.model.config.block_size
    with torch.no_grad():
        for entry in trace:
            reference = planner.model(entry.window)[:, -1]
            assert torch.allclose(entry.logits, reference, atol=1e-5)
    uncached = planner.plan(np.array([0.1, -0.2]), options.updated(use_cache=False))
    np.testing.assert_array_equal(cached.action_tokens, uncached.action_tokens)
    assert cached.score == pytest.approx(uncached.score, abs=1e-6)


def past_transitions(planner: BeamPlanner, count: int, seed: int = 0) -> list[PastTransition]:
    rng = np.random.default_rng(seed)
    return [PastTransition(rng.normal(size=planner.state_dim), rng.normal(size=planner.action_dim),
                           float(rng.normal())) for _ in range(count)]


@pytest.mark.parametrize('count', [2, 4])
@pytest.mark.parametrize('mode', ['value', 'return', 'likelihood'])
def test_a_history_prefix_keeps_the_cache_exact_through_window_slides(mode: str,
                                                                      count: int) -> None:
    planner = make_planner(state_dim=2, action_dim=2, n_bins=6, block_transitions=3)
    history = past_transitions(planner, count)
    state = np.array([0.1, -0.2])
    options = PlanningOptions(mode=mode, beam_width=4, n_expand=3, planning_horizon=6,
                              cdf=None, target_return=0.5)
    trace: list[TraceEntry] = []
    cached = planner.plan(state, options, trace=trace, history=history)
    transition = 6
    first = trace[0].window[0]
    kept = (first.shape[0] - 1 - 2) // transition
    assert kept == min(count, 2), 'four past transitions overflow the block and slide at once'
    for index, past in enumerate(history[count - kept:]):
        start = 1 + index * transition
        row = np.concatenate([past.state, past.action, [past.reward]])
        assert torch.equal(first[start:start + 5], planner.tokenizer.encode(row, slice(0, 5)))
    assert torch.equal(first[-2:], planner.tokenizer.encode(state, slice(0, 2)))
    if mode == 'return' and kept == count:
        rewards = planner.tokenizer.centres[4][first[1 + 4:1 + 4 + kept * transition:transition]]
        target = float(rewards[0] + 0.99 * rewards[1]) + 0.99 ** 2 * 0.5
        assert int(first[0]) == int(planner.tokenizer.encode(np.array([target]), slice(6, 7)))
    assert sum(entry.prefilled for entry in trace) >= 3, 'the plan should slide its window'
    with torch.no_grad():
        for entry in trace:
            assert torch.allclose(entry.logits, planner.model(entry.window)[:, -1], atol=1e-5)
    uncached = planner.plan(state, options.updated(use_cache=False), history=history)
    np.testing.assert_array_equal(cached.action_tokens, uncached.action_tokens)
    assert cached.score == pytest.approx(uncached.score, abs=1e-6)


def test_past_actions_are_encoded_relative_to_their_own_state() -> None:
    planner = make_planner(state_dim=2, action_dim=2, n_bins=6, block_transitions=4)
    relative = BeamPlanner(planner.model, planner.tokenizer, 2, 2, action_offset_dims=[1, 0])
    history = past_transitions(planner, 2, seed=3)
    trace: list[TraceEntry] = []
    relative.plan(np.zeros(2), PlanningOptions(planning_horizon=1), trace=trace,
                  history=history)
    for index, past in enumerate(history):
        start = 1 + index * 6 + 2
        offsets = past.action - past.state[[1, 0]]
        assert torch.equal(trace[0].window[0, start:start + 2],
                           planner.tokenizer.encode(offsets, slice(2, 4)))


@pytest.mark.parametrize('mode', ['value', 'likelihood'])
def test_known_tokens_skip_model_calls_and_keep_the_cache_exact(mode: str) -> None:
    state_dim, action_dim = 3, 3
    reference = make_planner(state_dim, action_dim, n_bins=6, block_transitions=3)
    table = np.random.default_rng(0).normal(size=(500, state_dim + action_dim + 3))
    table[:, 1] = 0.04
    table[:, state_dim + 2] = -1.0
    tokenizer = Discretizer(table.shape[1], 6).fit(table)
    planner = BeamPlanner(reference.model, tokenizer, state_dim, action_dim,
                          fixed_state_dims=[2])
    horizon = 5
    options = PlanningOptions(mode=mode, beam_width=4, n_expand=3, planning_horizon=horizon,
                              cdf=None)
    trace: list[TraceEntry] = []
    state = np.array([0.3, 0.04, -0.7])
    plan = planner.plan(state, options, trace=trace)
    assert len(trace) == horizon * (action_dim - 1 + 2) + (horizon - 1) * (state_dim - 2)
    assert planner.model_calls(horizon) == len(trace)
    assert planner.model_calls(horizon, constrained=True) == len(trace) + horizon
    assert any(entry.prefilled for entry in trace[1:]), 'the window should slide'
    with torch.no_grad():
        for entry in trace:
            assert torch.allclose(entry.logits, planner.model(entry.window)[:, -1], atol=1e-5)
    final = trace[-1].window
    state_tokens = tokenizer.encode(state, slice(0, state_dim))
    transition = state_dim + action_dim + 2
    for start in range(1, final.shape[1] - state_dim, transition):
        assert torch.all(final[:, start + 1] == tokenizer.constant_tokens[1])
        assert torch.all(final[:, start + 2] == state_tokens[2])
        assert torch.all(final[:, start + state_dim + 2] == tokenizer.constant_tokens[5])
    np.testing.assert_allclose(plan.actions[:, 2], -1.0, atol=1e-5)
    constrained = planner.plan(state, options,
                               constraints=[JointLimitConstraint([-9.0] * 3, [9.0] * 3)])
    np.testing.assert_allclose(constrained.actions[:, 2], -1.0, atol=1e-5)


def test_relative_actions_add_the_joint_positions_of_their_state() -> None:
    planner = make_planner(state_dim=2, action_dim=2, n_bins=6, block_transitions=3)
    relative = BeamPlanner(planner.model, planner.tokenizer, 2, 2, action_offset_dims=[1, 0])
    options = PlanningOptions(mode='likelihood', beam_width=1, n_expand=1, planning_horizon=3)
    state = np.array([0.25, -2.0])
    trace: list[TraceEntry] = []
    plan = relative.plan(state, options, trace=trace)
    absolute = planner.plan(state, options)
    np.testing.assert_array_equal(plan.action_tokens, absolute.action_tokens)
    offsets = [state[[1, 0]]]
    tokens = trace[-1].window[0]
    for step in (1, 2):
        start = 1 + step * 6
        decoded = planner.tokenizer.decode(tokens[start:start + 2], slice(0, 2)).numpy()
        offsets.append(decoded[[1, 0]])
    np.testing.assert_allclose(plan.actions, absolute.actions + np.stack(offsets))
    limits = JointLimitConstraint([-1.0, -3.0], [1.0, -1.5])
    bounded = relative.plan(state, options.updated(mode='value', beam_width=4, n_expand=2),
                            constraints=[limits])
    assert np.all(bounded.actions >= [-1.0, -3.0]) and np.all(bounded.actions <= [1.0, -1.5])


@pytest.mark.parametrize('mode', ['value', 'likelihood'])
def test_tracked_targets_append_the_known_next_state_without_model_calls(mode: str) -> None:
    planner = make_planner(state_dim=3, action_dim=2, n_bins=6, block_transitions=5)

    def next_state(states: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        following = states.clone()
        following[:, [1, 0]] = actions
        following[:, 2] = following[:, 2] + 0.1
        return following
    tracked = BeamPlanner(planner.model, planner.tokenizer, 3, 2, action_offset_dims=[1, 0],
                          next_state=next_state)
    horizon = 4
    options = PlanningOptions(mode=mode, beam_width=3, n_expand=2, planning_horizon=horizon,
                              tracked_targets=True)
    state = np.array([0.25, -0.5, 0.3])
    trace: list[TraceEntry] = []
    plan = tracked.plan(state, options, trace=trace)
    assert len(trace) == horizon * (2 + 2) == tracked.model_calls(horizon, tracked_targets=True)
    assert tracked.model_calls(horizon) == len(trace) + (horizon - 1) * 3
    with torch.no_grad():
        for entry in trace:
            assert torch.allclose(entry.logits, tracked.model(entry.window)[:, -1], atol=1e-5)
    expected = state.copy()
    action_columns = [1 + step * 7 + column for step in range(horizon) for column in (3, 4)]
    rows = trace[-1].window[:, action_columns] == torch.as_tensor(plan.action_tokens).reshape(-1)
    tokens = trace[-1].window[int(torch.nonzero(rows.all(dim=1))[0, 0])]
    for step in range(horizon):
        relative = planner.tokenizer.decode(torch.as_tensor(plan.action_tokens[step]),
                                            slice(3, 5)).numpy()
        np.testing.assert_allclose(plan.actions[step], relative + expected[[1, 0]])
        expected = next_state(torch.from_numpy(expected)[None],
                              torch.from_numpy(plan.actions[step])[None])[0].numpy()
        if step < horizon - 1:
            start = 1 + (step + 1) * 7
            assert torch.equal(tokens[start:start + 3],
                               planner.tokenizer.encode(expected, slice(0, 3)))
    with pytest.raises(ValueError, match='tracked_targets needs a planner built with a '
                                         'next_state'):
        planner.plan(state, options)


def test_return_conditioning_token_moves_with_the_window() -> None:
    planner = make_planner(state_dim=2, action_dim=2, n_bins=6, block_transitions=3)
    options = PlanningOptions(mode='return', beam_width=2, n_expand=2, planning_horizon=6,
                              cdf=None, target_return=0.5)
    trace: list[TraceEntry] = []
    planner.plan(np.array([0.1, -0.2]), options, trace=trace)
    first_tokens = {int(token) for entry in trace for token in entry.window[:, 0]}
    assert first_tokens != {planner.model.config.null_return}
    value_plan_trace: list[TraceEntry] = []
    planner.plan(np.array([0.1, -0.2]), options.updated(mode='value'), trace=value_plan_trace)
    assert {int(t) for e in value_plan_trace for t in e.window[:, 0]} == {
        planner.model.config.null_return}


def sequence_log_likelihood(planner: BeamPlanner, state_tokens: list[int],
                            action_tokens: tuple[int, ...], horizon: int) -> float:
    """Score one action sequence by brute force: greedy non-action tokens, full re-forwards."""
    action_dim = planner.action_dim
    window = [planner.model.config.null_return, *state_tokens]
    total = 0.0
    with torch.no_grad():
        for step in range(horizon):
            greedy_count = 2 + (planner.state_dim if step < horizon - 1 else 0)
            for dim in range(action_dim):
                logprobs = torch.log_softmax(
                    planner.model(torch.tensor([window]))[0, -1].double(), dim=-1)
                token = action_tokens[step * action_dim + dim]
                total += float(logprobs[token])
                window.append(token)
            for _ in range(greedy_count):
                logprobs = torch.log_softmax(
                    planner.model(torch.tensor([window]))[0, -1].double(), dim=-1)
                token = int(logprobs.argmax())
                total += float(logprobs[token])
                window.append(token)
    return total


def test_exhaustive_beam_search_returns_the_most_likely_sequence() -> None:
    planner = make_planner(state_dim=1, action_dim=2, n_bins=4, block_transitions=3, seed=14,
                           weight_scale=8.0)
    horizon = 2
    state = np.array([0.3])
    state_tokens = planner.tokenizer.encode(state, slice(0, 1)).tolist()
    scores = {combo: sequence_log_likelihood(planner, state_tokens, combo, horizon)
              for combo in itertools.product(range(4), repeat=horizon * 2)}
    best_combo = max(scores, key=scores.get)
    exhaustive = PlanningOptions(mode='likelihood', beam_width=4 ** 4, n_expand=4,
                                 planning_horizon=horizon, cdf=None)
    plan = planner.plan(state, exhaustive)
    assert tuple(plan.action_tokens.reshape(-1).tolist()) == best_combo
    assert plan.score == pytest.approx(scores[best_combo], abs=1e-4)
    greedy = planner.plan(state, exhaustive.updated(beam_width=1, n_expand=1))
    greedy_combo = tuple(greedy.action_tokens.reshape(-1).tolist())
    assert greedy.score == pytest.approx(scores[greedy_combo], abs=1e-4)
    assert greedy.score < plan.score, 'seed 14 makes greedy decoding suboptimal'
    decoded = planner.tokenizer.decode(torch.tensor(plan.action_tokens), slice(1, 3)).numpy()
    np.testing.assert_allclose(plan.actions, decoded)


def test_value_mode_ranks_by_discounted_rewards_plus_value() -> None:
    planner = make_planner(state_dim=2, action_dim=2, n_bins=5, block_transitions=6, seed=4)
    options = PlanningOptions(mode='value', beam_width=8, n_expand=4, planning_horizon=3,
                              cdf=None, discount=0.9)
    plan = planner.plan(np.zeros(2), options)
    centres = planner.tokenizer.centres
    window = [planner.model.config.null_return,
              *planner.tokenizer.encode(np.zeros(2), slice(0, 2)).tolist()]
    rewards, value = [], 0.0
    with torch.no_grad():
        for step in range(3):
            window.extend(int(token) for token in plan.action_tokens[step])
            for dim in (4, 5):
                probs = torch.softmax(planner.model(torch.tensor([window]))[0, -1].double(), -1)
                expectation = float(probs @ centres[dim])
                rewards.append(expectation) if dim == 4 else None
                value = expectation
                window.append(int(probs.argmax()))
            if step < 2:
                for _ in range(2):
                    logits = planner.model(torch.tensor([window]))[0, -1]
                    window.append(int(logits.argmax()))
    expected = sum(0.9 ** i * r for i, r in enumerate(rewards)) + 0.9 ** 3 * value
    assert plan.score == pytest.approx(expected, abs=1e-5)
    np.testing.assert_allclose(plan.expected_rewards, rewards, atol=1e-5)


def panda_planner(seed: int) -> BeamPlanner:
    actions = np.random.default_rng(seed).uniform(POSITION_LOWER, POSITION_UPPER, (500, 8))
    return make_planner(state_dim=2, action_dim=8, n_bins=10, block_transitions=4, seed=seed,
                        actions=actions)


@pytest.mark.parametrize('mode', ['value', 'likelihood', 'return'])
def test_joint_limit_masking_never_emits_a_violating_action(mode: str) -> None:
    span = POSITION_UPPER - POSITION_LOWER
    lower, upper = POSITION_LOWER + 0.3 * span, POSITION_UPPER - 0.3 * span
    options = PlanningOptions(mode=mode, beam_width=6, n_expand=3, planning_horizon=3,
                              target_return=0.0)
    unconstrained_violations = 0
    for seed in range(3):
        planner = panda_planner(seed)
        free = planner.plan(np.zeros(2), options.updated(seed=seed))
        unconstrained_violations += int(np.any((free.actions < lower) | (free.actions > upper)))
        plan = planner.plan(np.zeros(2), options.updated(seed=seed),
                            constraints=[JointLimitConstraint(lower, upper)])
        assert np.all(plan.actions >= lower) and np.all(plan.actions <= upper)
    assert unconstrained_violations > 0


@pytest.mark.parametrize('mode', ['value', 'likelihood'])
def test_joint_space_keep_out_box_is_respected(mode: str) -> None:
    lower = POSITION_LOWER.copy()
    upper = POSITION_UPPER.copy()
    lower[0], upper[0] = -1.5, 1.5
    keep_out = KeepOutConstraint(box(lower, upper), space='joint')
    for seed in range(3):
        plan = panda_planner(seed).plan(
            np.zeros(2), PlanningOptions(mode=mode, beam_width=8, n_expand=3,
                                         planning_horizon=3, seed=seed),
            constraints=[keep_out])
        assert np.all(np.abs(plan.actions[:, 0]) > 1.5)


def test_cartesian_keep_out_box_is_respected() -> None:
    kinematics = PandaKinematics()
    region = box([0.0, -2.0, -2.0], [2.0, 2.0, 2.0])
    constraint = KeepOutConstraint(region, space='cartesian',
                                   forward_kinematics=kinematics.tool_positions)
    for seed in range(3):
        plan = panda_planner(seed).plan(
            np.zeros(2), PlanningOptions(mode='likelihood', beam_width=8, n_expand=4,
                                         planning_horizon=3),
            constraints=[constraint])
        assert np.all(kinematics.tool_positions(plan.actions)[:, 0] < 0.0)


def test_reach_goal_constraint_ends_the_plan_at_the_goal() -> None:
    kinematics = PandaKinematics()
    planner = panda_planner(1)
    goal = np.array([0.3, 0.0, 0.5])
    options = PlanningOptions(mode='likelihood', beam_width=64, n_expand=10,
                              planning_horizon=2)
    free = planner.plan(np.zeros(2), options, goal=goal)
    assert np.linalg.norm(kinematics.tool_positions(free.actions[-1:])[0] - goal) > 0.25
    plan = planner.plan(np.zeros(2), options, constraints=[ReachGoalConstraint(0.25)], goal=goal)
    assert np.linalg.norm(kinematics.tool_positions(plan.actions[-1:])[0] - goal) <= 0.25
    with pytest.raises(PlanningError, match='violates a constraint'):
        planner.plan(np.zeros(2), options, constraints=[ReachGoalConstraint(0.05)],
                     goal=np.array([3.0, 0.0, 0.0]))


def test_panda_kinematics_match_pybullet() -> None:
    client = pybullet.connect(pybullet.DIRECT)
    try:
        pybullet.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=client)
        robot = pybullet.loadURDF('franka_panda/panda.urdf', useFixedBase=True,
                                  physicsClientId=client)
        names = [pybullet.getJointInfo(robot, j, physicsClientId=client)[12].decode()
                 for j in range(pybullet.getNumJoints(robot, physicsClientId=client))]
        tool_link = names.index('panda_grasptarget')
        joints = np.random.default_rng(0).uniform(POSITION_LOWER, POSITION_UPPER, (20, 8))
        expected = []
        for configuration in joints:
            for index in range(7):
                pybullet.resetJointState(robot, index, configuration[index],
                                         physicsClientId=client)
            state = pybullet.getLinkState(robot, tool_link, computeForwardKinematics=True,
                                          physicsClientId=client)
            expected.append(state[4])
    finally:
        pybullet.disconnect(client)
    np.testing.assert_allclose(PandaKinematics().tool_positions(joints), expected, atol=1e-5)


def test_bad_options_are_rejected_with_the_value() -> None:
    with pytest.raises(ValueError, match="'greedy'"):
        PlanningOptions(mode='greedy')
    with pytest.raises(ValueError, match='beam_width must be >= 1, got 0'):
        PlanningOptions(beam_width=0)
    with pytest.raises(ValueError, match='target_return'):
        PlanningOptions(mode='return')
    with pytest.raises(ValueError, match=r"unknown planning options \['beam'\]"):
        PlanningOptions().updated(beam=3)
    with pytest.raises(ValueError, match='cdf must lie in'):
        PlanningOptions(cdf=1.5)
    with pytest.raises(ValueError, match='context_transitions must be >= 0, got -1'):
        PlanningOptions(context_transitions=-1)
    planner = make_planner(state_dim=2, action_dim=2, n_bins=4, block_transitions=2)
    with pytest.raises(ValueError, match=r'finite state of shape \(2,\)'):
        planner.plan(np.zeros(3), PlanningOptions())
    assert math.isfinite(planner.plan(np.zeros(2), PlanningOptions(planning_horizon=1)).score)
    with pytest.raises(ValueError, match=r'history\[1\] needs a finite \(2,\) state'):
        planner.plan(np.zeros(2), PlanningOptions(),
                     history=[PastTransition(np.zeros(2), np.zeros(2), 0.0),
                              PastTransition(np.zeros(3), np.zeros(2), 0.0)])
