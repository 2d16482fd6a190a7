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

"""
Scripted experts: success without collisions, bimodal avoidance, noise, absolute targets.

The full-count check (100 seeded episodes per task) is
``dp-tt-ros bench sim --episodes 100 --physics-blocks 1 --frames 1`` (see ``expert_success``).
"""

import numpy as np
import pytest

from dp_tt_ros.robot import PANDA_LIMITS
from dp_tt_ros.sim.experts import make_expert
from dp_tt_ros.sim.tasks import make_env
from dp_tt_ros.sim.world import TASKS

EPISODES = 6


def run_episode(env, expert, seed):
    """Roll out one seeded episode; return the final info, the actions and the EE path."""
    obs, info = env.reset(seed=seed)
    expert.reset(env)
    actions, path = [], [env.world.ee_position()]
    done = False
    while not done:
        action = expert.act(obs)
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(action)
        path.append(env.world.ee_position())
        done = terminated or truncated
    return info, np.array(actions), np.array(path)


@pytest.mark.parametrize('task', TASKS)
def test_expert_solves_seeded_episodes_without_collisions(task):
    env = make_env(task)
    try:
        for seed in range(EPISODES):
            info, actions, _ = run_episode(env, make_expert(task, seed=seed), seed)
            assert info['success'], f'{task} expert failed on seed {seed}'
            assert info['n_collisions'] == 0, f'{task} expert collided on seed {seed}'
            assert np.all(actions >= PANDA_LIMITS.lower) and np.all(actions <= PANDA_LIMITS.upper)
    finally:
        env.close()


def test_push_moves_the_cube_by_touching_it_without_counting_a_collision():
    env = make_env('push')
    try:
        start = env.reset(seed=4)[0]['object_state'][:3]
        info, _, _ = run_episode(env, make_expert('push', seed=4), 4)
        end = env.world.observation()['object_state'][:3]
        assert info['success'] and np.linalg.norm(end - start) > 0.08
        assert info['n_collisions'] == 0
    finally:
        env.close()


def test_avoid_demos_pass_the_pillar_on_both_sides():
    env = make_env('avoid')
    sides = []
    try:
        for seed in range(8):
            info, _, path = run_episode(env, make_expert('avoid', seed=seed), seed)
            pillar = env.world.observation()['object_state']
            beside = path[np.argmin(np.abs(path[:, 0] - pillar[0]))]
            offset = beside[1] - pillar[1]
            assert info['success'] and abs(offset) > pillar[4] / 2 + 0.05
            sides.append(np.sign(offset))
    finally:
        env.close()
    assert set(sides) == {-1.0, 1.0}


def test_actions_are_absolute_joint_targets_that_the_arm_reaches():
    env = make_env('reach')
    expert = make_expert('reach', seed=0)
    try:
        obs, _ = env.reset(seed=0)
        expert.reset(env)
        for _ in range(3):
            action = expert.act(obs)
            obs, *_ = env.step(action)
            np.testing.assert_array_equal(env.world.command, action)
            np.testing.assert_allclose(obs['joint_pos'][:7], action[:7], atol=0.01)
    finally:
        env.close()


def test_noise_perturbs_the_demo_but_the_expert_still_succeeds():
    env = make_env('reach')
    try:
        _, clean, _ = run_episode(env, make_expert('reach', seed=1), 1)
        info, noisy, _ = run_episode(env, make_expert('reach', noise=0.01, seed=1), 1)
        _, repeat, _ = run_episode(env, make_expert('reach', noise=0.01, seed=1), 1)
    finally:
        env.close()
    assert info['success']
    steps = min(len(clean), len(noisy))
    assert not np.allclose(clean[:steps], noisy[:steps], atol=1e-3)
    np.testing.assert_array_equal(noisy, repeat)


def test_bad_use_is_reported():
    with pytest.raises(ValueError, match='noise'):
        make_expert('reach', noise=-1.0)
    with pytest.raises(ValueError, match='unknown task'):
        make_expert('juggle')
    with pytest.raises(RuntimeError, match='reset'):
        make_expert('reach').act({})


def test_push_expert_takes_over_with_the_hand_down_off_the_push_line():
    env = make_env('push')
    try:
        obs, _ = env.reset(seed=2)
        cube = obs['object_state'][:3].astype(float)
        beside = cube + np.array([0.0, 0.0, 0.005])
        beside[:2] += 0.06 * np.array([-obs['goal'][1] + cube[1], obs['goal'][0] - cube[0]]) / \
            np.linalg.norm(obs['goal'][:2] - cube[:2])
        for _ in range(15):  # a policy's mistake: the closed hand down beside the cube
            obs, *_ = env.step(np.append(env.world.inverse_kinematics(beside), 0.0))
        assert env.world.ee_position()[2] < 0.05
        expert = make_expert('push', seed=2)
        expert.reset(env)
        done = False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            done = terminated or truncated
        assert info['success']
    finally:
        env.close()


def test_pick_place_expert_taking_over_a_carry_keeps_hold_of_the_cube():
    env = make_env('pick_place')
    try:
        obs, _ = env.reset(seed=0)
        expert = make_expert('pick_place', seed=0)
        expert.reset(env)
        while obs['object_state'][2] < 0.06:  # until the cube is lifted
            obs, *_ = env.step(expert.act(obs))
        successor = make_expert('pick_place', seed=0)
        successor.reset(env)
        done = False
        while not done:
            action = successor.act(obs)
            if not done and obs['object_state'][2] > 0.06:
                assert action[7] == 0.0, 'the gripper stays closed while carrying'
            obs, _, terminated, truncated, info = env.step(action)
            done = terminated or truncated
        assert info['success']
    finally:
        env.close()
