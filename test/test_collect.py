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

"""``dp-tt-ros collect``: expert demos into a store, appending, images, errors and Ctrl-C."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dp_tt_ros.cli import main
from dp_tt_ros.data.episode_store import EpisodeStore, EpisodeStoreError
from dp_tt_ros.robot import PANDA_LIMITS

STATE_KEYS = ['action', 'goal', 'joint_pos', 'joint_vel', 'object_state', 'reward', 'success']


def collect(*args: str) -> int:
    return main(['collect', *args])


def test_collect_writes_successful_expert_episodes(tmp_path):
    out = tmp_path / 'reach.zarr'
    assert collect('--task', 'reach', '--episodes', '3', '--out', str(out)) == 0
    store = EpisodeStore.open(out)
    assert store.n_episodes == 3 and store.keys == STATE_KEYS
    assert store.attrs == {'task': 'reach', 'control_dt': 0.1, 'seed': 0, 'noise': 0.0,
                           'image_size': None}
    np.testing.assert_array_equal(store.episode_meta('episode_seed'), [0, 1, 2])
    assert store.episode_meta('episode_success').all()
    for index in range(3):
        episode = store.get_episode(index)
        assert episode['success'][-1] and not episode['success'][:-1].any()
        assert np.all(episode['action'] >= PANDA_LIMITS.lower)
        assert np.all(episode['action'] <= PANDA_LIMITS.upper)
        # Each action is the joint target the next observation has reached.
        np.testing.assert_allclose(episode['joint_pos'][1:, :7], episode['action'][:-1, :7],
                                   atol=0.01)
        assert np.all(np.diff(episode['reward']) > -0.05), 'reach reward rises towards the goal'


def test_appending_continues_the_seeds_like_one_long_run(tmp_path):
    split, whole = tmp_path / 'split.zarr', tmp_path / 'whole.zarr'
    assert collect('--task', 'avoid', '--episodes', '2', '--out', str(split)) == 0
    assert collect('--task', 'avoid', '--episodes', '2', '--out', str(split)) == 0
    assert collect('--task', 'avoid', '--episodes', '4', '--out', str(whole)) == 0
    first, second = EpisodeStore.open(split), EpisodeStore.open(whole)
    np.testing.assert_array_equal(first.episode_meta('episode_seed'), [0, 1, 2, 3])
    np.testing.assert_array_equal(first.episode_ends, second.episode_ends)
    for key in STATE_KEYS:
        np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_images_are_recorded_at_the_requested_size(tmp_path):
    out = tmp_path / 'images.zarr'
    assert collect('--task', 'reach', '--episodes', '1', '--out', str(out), '--image',
                   '--image-size', '32', '--noise', '0.005', '--seed', '7') == 0
    store = EpisodeStore.open(out)
    assert store['image'].shape == (store.n_steps, 32, 32, 3)
    assert store['image'].dtype == np.uint8 and store['image'].std() > 10
    assert store.attrs['image_size'] == [32, 32] and store.attrs['noise'] == 0.005
    np.testing.assert_array_equal(store.episode_meta('episode_seed'), [7])


def test_bad_requests_are_reported(tmp_path, capsys):
    out = tmp_path / 'reach.zarr'
    assert collect('--task', 'reach', '--episodes', '0', '--out', str(out)) == 2
    assert '--episodes must be >= 1, got 0' in capsys.readouterr().err
    assert collect('--task', 'reach', '--episodes', '1', '--out', str(out)) == 0
    assert collect('--task', 'push', '--episodes', '1', '--out', str(out)) == 2
    assert "task='reach'" in capsys.readouterr().err
    assert collect('--task', 'reach', '--episodes', '1', '--out', str(out), '--image') == 2
    assert 'image_size' in capsys.readouterr().err
    not_a_store = tmp_path / 'notes'
    not_a_store.mkdir()
    assert collect('--task', 'reach', '--episodes', '1', '--out', str(not_a_store)) == 2
    assert 'not a readable zarr' in capsys.readouterr().err


def test_ctrl_c_keeps_the_finished_episodes(tmp_path):
    out = tmp_path / 'pick.zarr'
    child = subprocess.Popen(
        [sys.executable, '-m', 'dp_tt_ros', 'collect', '--task', 'pick_place', '--episodes',
         '100', '--out', str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            try:
                if EpisodeStore.open(out).n_episodes >= 1:
                    break
            except EpisodeStoreError:
                pass
            time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == 130
    store = EpisodeStore.open(out)
    assert 1 <= store.n_episodes < 100
    assert f'keeps {store.n_episodes} finished episodes' in stderr
    assert store.episode_meta('episode_success').all()
    for index in range(store.n_episodes):
        assert store.get_episode(index)['success'][-1]


@pytest.mark.parametrize('flag, value', [('--noise', '-1'), ('--image-size', '2')])
def test_out_of_range_options_are_rejected(tmp_path, capsys, flag, value):
    args = ['--task', 'reach', '--episodes', '1', '--out', str(tmp_path / 's.zarr'), flag, value]
    if flag == '--image-size':
        args.append('--image')
    assert collect(*args) == 2
    assert value in capsys.readouterr().err


def test_takeover_stores_only_the_experts_recovery_from_where_the_policy_left(tmp_path):
    from dp_tt_ros import paths
    from dp_tt_ros.sim.tasks import make_env
    checkpoint = paths.models_dir() / 'bc_reach'
    assert checkpoint.is_dir(), f'the shipped checkpoint {checkpoint} is missing'
    plain, taken = tmp_path / 'plain.zarr', tmp_path / 'taken.zarr'
    assert collect('--task', 'reach', '--episodes', '2', '--seed', '3', '--out', str(plain)) == 0
    assert collect('--task', 'reach', '--episodes', '2', '--seed', '3', '--out', str(taken),
                   '--takeover', str(checkpoint), '--takeover-steps', '3') == 0
    store = EpisodeStore.open(taken)
    assert store.n_episodes == 2 and store.episode_meta('episode_success').all()
    env = make_env('reach')
    try:
        for index, seed in enumerate(store.episode_meta('episode_seed')):
            start = env.reset(seed=int(seed))[0]['joint_pos']
            first = store.get_episode(index)['joint_pos'][0]
            assert np.abs(first - start).max() > 1e-3, 'the policy moved the arm first'
    finally:
        env.close()
    assert store.n_steps < EpisodeStore.open(plain).n_steps


def test_takeover_options_are_checked(tmp_path, capsys):
    out = str(tmp_path / 's.zarr')
    assert collect('--task', 'reach', '--episodes', '1', '--out', out,
                   '--takeover-steps', '3') == 2
    assert '--takeover-steps needs --takeover' in capsys.readouterr().err
    assert collect('--task', 'reach', '--episodes', '1', '--out', out,
                   '--takeover', str(tmp_path / 'missing')) == 2
    assert '--takeover' in capsys.readouterr().err
