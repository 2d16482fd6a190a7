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

"""Gymnasium tasks: spaces, seeding, absolute joint-target actions, termination."""

from dataclasses import fields
import warnings

from gymnasium.utils.env_checker import check_env
import numpy as np
import pytest

from dp_tt_ros.sim.tasks import CONTROL_DT, PHYSICS_STEPS_PER_CONTROL, make_env
from dp_tt_ros.sim.world import TASKS, TaskStatus

OBJECT_STATE_DIMS = {'reach': 9, 'avoid': 6, 'push': 7, 'pick_place': 13}


@pytest.mark.parametrize('task', TASKS)
def test_observations_fit_the_declared_spaces(task):
    env = make_env(task, image_size=(32, 48))
    try:
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs)
        assert obs['object_state'].shape == (OBJECT_STATE_DIMS[task],)
        assert obs['image'].shape == (32, 48, 3) and obs['image'].dtype == np.uint8
        assert env.action_space.shape == (8,)
        obs, *_ = env.step(obs['joint_pos'])
        assert env.observation_space.contains(obs)
        assert set(info) == {field.name for field in fields(TaskStatus)}
    finally:
        env.close()


@pytest.mark.parametrize('task', ['push', 'pick_place'])
def test_gymnasium_env_checker_passes_including_step_determinism(task):
    """The checker steps random actions, then replays a seed: objects must not remember them."""
    env = make_env(task, image_size=(16, 16))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            check_env(env)
    finally:
        env.close()


def test_one_control_step_is_a_tenth_of_a_second_of_physics():
    assert CONTROL_DT * 240 == PHYSICS_STEPS_PER_CONTROL == 24
    env = make_env('reach')
    try:
        obs, _ = env.reset(seed=0)
        env.step(obs['joint_pos'])
        assert env.world.time == pytest.approx(0.1)
    finally:
        env.close()


@pytest.mark.parametrize('task', TASKS)
def test_reset_with_a_seed_is_reproducible(task):
    env = make_env(task)
    try:
        first, _ = env.reset(seed=11)
        env.step(env.action_space.sample())
        second, _ = env.reset(seed=11)
        for key in first:
            np.testing.assert_array_equal(first[key], second[key], err_msg=key)
    finally:
        env.close()


@pytest.mark.parametrize('task', ['reach', 'pick_place'])
def test_each_step_reaches_its_joint_targets(task):
    """A target 0.1 rad away per joint (and 1 cm of gripper) is held within 0.01 after a step."""
    rng = np.random.default_rng(0)
    env = make_env(task)
    try:
        obs, _ = env.reset(seed=1)
        for _ in range(6):
            delta = np.append(rng.choice([-0.1, 0.1], 7), rng.choice([-0.01, 0.01]))
            target = np.clip(obs['joint_pos'] + delta, env.action_space.low,
                             env.action_space.high)
            obs, *_ = env.step(target)
            np.testing.assert_allclose(obs['joint_pos'], target, atol=0.01)
    finally:
        env.close()


def test_reaching_the_goal_terminates_with_time_to_goal():
    env = make_env('reach')
    try:
        obs, _ = env.reset(seed=2)
        target = np.append(env.world.inverse_kinematics(obs['goal']), 0.04)
        for _ in range(30):
            obs, reward, terminated, truncated, info = env.step(target)
            if terminated:
                break
        assert terminated and not truncated
        assert info['success'] and 0 < info['time_to_goal'] <= info['elapsed']
        assert reward > -0.03
    finally:
        env.close()


def test_max_steps_truncates():
    env = make_env('push', max_steps=3)
    try:
        obs, _ = env.reset(seed=0)
        results = [env.step(obs['joint_pos'])[2:4] for _ in range(3)]
        assert results == [(False, False), (False, False), (False, True)]
    finally:
        env.close()


def test_bad_arguments_are_reported():
    with pytest.raises(ValueError, match='unknown task'):
        make_env('fold_laundry')
    with pytest.raises(ValueError, match='max_steps'):
        make_env('reach', max_steps=0)
    env = make_env('reach')
    try:
        env.reset(seed=0)
        with pytest.raises(ValueError, match=r'shape \(8,\)'):
            env.step(np.zeros(7))
    finally:
        env.close()


def test_dense_reward_improves_towards_the_goal():
    env = make_env('reach')
    try:
        obs, _ = env.reset(seed=3)
        start = obs['joint_pos'].copy()
        _, away_reward, *_ = env.step(start)
        goal_joints = np.append(env.world.inverse_kinematics(obs['goal']), 0.04)
        _, closer_reward, *_ = env.step(0.5 * (start + goal_joints))
        assert closer_reward > away_reward
    finally:
        env.close()
