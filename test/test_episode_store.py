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

"""EpisodeStore: exact round trips, diffusion_policy's layout, clear errors, crash safety."""

import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numcodecs
import numpy as np
import pytest
import zarr

from dp_tt_ros.data.episode_store import EpisodeStore, EpisodeStoreError

# Shared by the tests and the child processes that get killed: episode i is a pure function of i.
EPISODE_SOURCE = textwrap.dedent('''
    import numpy as np

    def make_episode(index):
        rng = np.random.default_rng(index)
        length = 5 + 7 * index % 23
        return {
            'joint_pos': rng.normal(size=(length, 8)).astype(np.float32),
            'action': rng.normal(size=(length, 8)).astype(np.float32),
            'reward': rng.normal(size=length).astype(np.float32),
            'success': rng.random(length) < 0.5,
            'image': rng.integers(0, 256, size=(length, 48, 48, 3), dtype=np.uint8),
        }
''')
namespace: dict = {}
exec(EPISODE_SOURCE, namespace)
make_episode = namespace['make_episode']


def assert_episodes_exact(store: EpisodeStore, count: int) -> None:
    assert store.n_episodes == count
    for index in range(count):
        expected = make_episode(index)
        episode = store.get_episode(index)
        assert sorted(episode) == sorted(expected)
        for key, value in expected.items():
            assert episode[key].dtype == value.dtype, key
            np.testing.assert_array_equal(episode[key], value, err_msg=f'{key} of {index}')


def test_round_trip_is_exact(tmp_path):
    path = tmp_path / 'demo.zarr'
    store = EpisodeStore.create(path, attrs={'task': 'reach', 'control_dt': 0.1})
    for index in range(4):
        store.add_episode(make_episode(index), meta={'episode_success': index % 2 == 0})
    reopened = EpisodeStore.open(path)
    assert_episodes_exact(reopened, 4)
    lengths = [len(make_episode(index)['reward']) for index in range(4)]
    np.testing.assert_array_equal(reopened.episode_ends, np.cumsum(lengths))
    assert reopened.episode_ends.dtype == np.int64
    assert reopened.n_steps == sum(lengths) and reopened['action'].shape == (sum(lengths), 8)
    assert reopened.keys == ['action', 'image', 'joint_pos', 'reward', 'success']
    assert reopened.attrs == {'task': 'reach', 'control_dt': 0.1}
    np.testing.assert_array_equal(reopened.episode_meta('episode_success'),
                                  [True, False, True, False])
    assert reopened.episode_slice(-1) == slice(int(np.sum(lengths[:3])), int(np.sum(lengths)))
    root = zarr.open_group(path, mode='r')
    assert root.metadata.zarr_format == 2
    assert root['meta/episode_ends'].dtype == np.int64


def test_appending_reopens_and_continues(tmp_path):
    path = tmp_path / 'demo.zarr'
    EpisodeStore.create(path).add_episode(make_episode(0))
    store = EpisodeStore.open(path, mode='a')
    store.add_episode(make_episode(1))
    assert_episodes_exact(EpisodeStore.open(path), 2)


def test_bad_episodes_and_modes_are_rejected_with_reasons(tmp_path):
    path = tmp_path / 'demo.zarr'
    store = EpisodeStore.create(path)
    store.add_episode(make_episode(0), meta={'episode_success': True})
    episode = make_episode(1)
    with pytest.raises(EpisodeStoreError, match=r"missing \['image'\]"):
        store.add_episode({key: value for key, value in episode.items() if key != 'image'},
                          meta={'episode_success': True})
    with pytest.raises(EpisodeStoreError, match=r'shape \(8,\)'):
        store.add_episode({**episode, 'action': episode['action'][:, :7]},
                          meta={'episode_success': True})
    with pytest.raises(EpisodeStoreError, match='same number'):
        store.add_episode({**episode, 'reward': episode['reward'][:2]},
                          meta={'episode_success': True})
    with pytest.raises(EpisodeStoreError, match='cannot be stored'):
        store.add_episode({**episode, 'image': episode['image'].astype(np.float32)},
                          meta={'episode_success': True})
    with pytest.raises(EpisodeStoreError, match='per-episode values'):
        store.add_episode(episode)
    with pytest.raises(EpisodeStoreError, match='already exists'):
        EpisodeStore.create(path)
    with pytest.raises(EpisodeStoreError, match='read-only'):
        EpisodeStore.open(path).add_episode(episode, meta={'episode_success': True})
    with pytest.raises(ValueError, match='mode'):
        EpisodeStore.open(path, mode='w')
    with pytest.raises(IndexError, match='1 episodes'):
        store.get_episode(1)
    with pytest.raises(KeyError, match='state'):
        store['state']
    assert_episodes_exact(EpisodeStore.open(path), 1)


def test_missing_and_corrupt_stores_give_clear_errors(tmp_path):
    with pytest.raises(EpisodeStoreError, match='does not exist'):
        EpisodeStore.open(tmp_path / 'nothing.zarr')
    with pytest.raises(EpisodeStoreError, match='not a readable zarr'):
        EpisodeStore.open(tmp_path)
    path = tmp_path / 'demo.zarr'
    EpisodeStore.create(path).add_episode(make_episode(0))
    (path / 'meta' / 'episode_ends' / '.zarray').write_text('{not json')
    with pytest.raises(EpisodeStoreError, match='demo.zarr'):
        EpisodeStore.open(path)
    other = tmp_path / 'plain.zarr'
    zarr.open_group(other, mode='w', zarr_format=2).create_group('data')
    with pytest.raises(EpisodeStoreError, match='ReplayBuffer layout'):
        EpisodeStore.open(other)
    short = tmp_path / 'short.zarr'
    EpisodeStore.create(short).add_episode(make_episode(0))
    zarr.open_group(short, mode='r+')['data/action'].resize((2, 8))
    with pytest.raises(EpisodeStoreError, match='data/action has 2 rows'):
        EpisodeStore.open(short)


def write_pusht_like_store(path, lengths):
    """Write the layout of diffusion_policy's pusht_cchi_v7_replay.zarr with plain zarr v2."""
    rng = np.random.default_rng(0)
    total = int(sum(lengths))
    root = zarr.open_group(path, mode='w', zarr_format=2)
    blosc = numcodecs.Blosc(cname='lz4', clevel=5, shuffle=numcodecs.Blosc.NOSHUFFLE)
    contents = {
        'img': rng.random((total, 96, 96, 3)).astype(np.float32) * 255,
        'state': rng.random((total, 5)).astype(np.float32),
        'action': rng.random((total, 2)).astype(np.float32),
        'keypoint': rng.random((total, 9, 2)).astype(np.float32),
        'n_contacts': rng.integers(0, 3, (total, 1)).astype(np.float32),
    }
    for key, value in contents.items():
        array = root.create_array(f'data/{key}', shape=value.shape, dtype=value.dtype,
                                  chunks=(100, *value.shape[1:]), compressors=blosc)
        array[:] = value
    ends = root.create_array('meta/episode_ends', shape=(len(lengths),), dtype='int64',
                             chunks=(len(lengths),), compressors=blosc)
    ends[:] = np.cumsum(lengths)
    return contents


def test_diffusion_policy_replay_buffer_layout_loads(tmp_path):
    path = tmp_path / 'pusht_cchi_v7_replay.zarr'
    lengths = [161, 118, 140]
    contents = write_pusht_like_store(path, lengths)
    archive = tmp_path / 'pusht_cchi_v7_replay.zarr.zip'
    with zipfile.ZipFile(archive, 'w', zipfile.ZIP_STORED) as bundle:
        for folder, _, files in os.walk(path):
            for name in files:
                full = os.path.join(folder, name)
                bundle.write(full, os.path.relpath(full, path))
    for source in (path, archive):
        store = EpisodeStore.open(source)
        assert store.n_episodes == 3 and store.n_steps == sum(lengths)
        assert store.keys == sorted(contents)
        second = store.get_episode(1)
        for key, value in contents.items():
            np.testing.assert_array_equal(second[key], value[161:279], err_msg=key)
        np.testing.assert_array_equal(store['state'], contents['state'])
    with pytest.raises(EpisodeStoreError, match='read-only'):
        EpisodeStore.open(archive, mode='a')
    appendable = EpisodeStore.open(path, mode='a')
    appendable.add_episode({key: value[:10] for key, value in contents.items()})
    assert EpisodeStore.open(path).episode_lengths.tolist() == [161, 118, 140, 10]


def run_child(script: str, *args: str) -> subprocess.Popen:
    code = EPISODE_SOURCE + textwrap.dedent(script)
    return subprocess.Popen([sys.executable, '-c', code, *args], stdout=subprocess.PIPE,
                            text=True)


def test_sigkill_between_rows_and_commit_keeps_earlier_episodes(tmp_path):
    path = tmp_path / 'demo.zarr'
    child = run_child('''
        import os, signal, sys
        from dp_tt_ros.data.episode_store import EpisodeStore
        store = EpisodeStore.create(sys.argv[1])
        for index in range(2):
            store.add_episode(make_episode(index))
        EpisodeStore._commit = lambda self, end: os.kill(os.getpid(), signal.SIGKILL)
        store.add_episode(make_episode(2))
    ''', str(path))
    assert child.wait(timeout=60) == -signal.SIGKILL
    store = EpisodeStore.open(path)
    assert_episodes_exact(store, 2)
    raw_rows = zarr.open_group(path, mode='r')['data/action'].shape[0]
    assert raw_rows == store.n_steps + len(make_episode(2)['action']), 'rows were left behind'
    appending = EpisodeStore.open(path, mode='a')
    appending.add_episode(make_episode(2))
    assert_episodes_exact(EpisodeStore.open(path), 3)
    assert zarr.open_group(path, mode='r')['data/action'].shape[0] == appending.n_steps


def test_sigkill_inside_the_commit_drops_only_the_unfinished_episode(tmp_path):
    path = tmp_path / 'demo.zarr'
    child = run_child('''
        import os, signal, sys
        import zarr
        from dp_tt_ros.data.episode_store import EpisodeStore
        store = EpisodeStore.create(sys.argv[1])
        for index in range(2):
            store.add_episode(make_episode(index))
        def half_commit(self, end):
            self._root['meta/episode_ends'].resize((self.n_episodes + 1,))
            os.kill(os.getpid(), signal.SIGKILL)
        EpisodeStore._commit = half_commit
        store.add_episode(make_episode(2))
    ''', str(path))
    assert child.wait(timeout=60) == -signal.SIGKILL
    assert zarr.open_group(path, mode='r')['meta/episode_ends'].shape == (3,)
    assert_episodes_exact(EpisodeStore.open(path), 2)
    EpisodeStore.open(path, mode='a').add_episode(make_episode(2))
    assert_episodes_exact(EpisodeStore.open(path), 3)


@pytest.mark.parametrize('delay', [0.0, 0.013, 0.031])
def test_sigkill_at_an_arbitrary_moment_keeps_every_committed_episode(tmp_path, delay):
    path = tmp_path / 'demo.zarr'
    child = run_child('''
        import sys
        from dp_tt_ros.data.episode_store import EpisodeStore
        store = EpisodeStore.create(sys.argv[1])
        index = 0
        while True:
            store.add_episode(make_episode(index))
            index += 1
            print(index, flush=True)
    ''', str(path))
    try:
        while int(child.stdout.readline() or 0) < 3:
            assert child.poll() is None, 'the writer died before committing 3 episodes'
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=60) == -signal.SIGKILL
    finally:
        child.stdout.close()
        if child.poll() is None:
            child.kill()
    store = EpisodeStore.open(path)
    assert store.n_episodes >= 3
    assert_episodes_exact(store, store.n_episodes)
    appending = EpisodeStore.open(path, mode='a')
    appending.add_episode(make_episode(store.n_episodes))
    assert_episodes_exact(EpisodeStore.open(path), store.n_episodes + 1)
