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

"""Training windows: exact indices, diffusion_policy-style edge padding, no episode crossing."""

import numpy as np
import pytest
import torch

from dp_tt_ros.data.sequence import episode_bounds, make_windows, SequenceDataset
from dp_tt_ros.policies.base import PolicySpec

EPISODE_ENDS = np.array([3, 4, 8])  # lengths 3, 1, 4


def reference_sequences(episode_ends, sequence_length, pad_before, pad_after):
    """
    Spell out diffusion_policy's SequenceSampler: buffer slice + first/last-step padding.

    For each start position ``idx`` (relative to the episode, may be negative) it copies the
    in-episode rows and fills the sample's head with the first copied row and its tail with the
    last one. Returns (global rows, is_pad) per sample.
    """
    samples = []
    start = 0
    for end in episode_ends:
        length = end - start
        for idx in range(-pad_before, length - sequence_length + pad_after + 1):
            buffer_start = max(idx, 0) + start
            buffer_end = min(idx + sequence_length, length) + start
            sample_start = buffer_start - (idx + start)
            sample_end = sequence_length - ((idx + sequence_length + start) - buffer_end)
            rows = np.empty(sequence_length, dtype=np.int64)
            rows[sample_start:sample_end] = np.arange(buffer_start, buffer_end)
            rows[:sample_start] = buffer_start
            rows[sample_end:] = buffer_end - 1
            is_pad = np.ones(sequence_length, dtype=bool)
            is_pad[sample_start:sample_end] = False
            samples.append((rows, is_pad))
        start = end
    return samples


def test_episode_bounds_and_bad_ends():
    starts, ends = episode_bounds(EPISODE_ENDS)
    assert starts.tolist() == [0, 3, 4]
    assert ends.tolist() == [3, 4, 8]
    with pytest.raises(ValueError, match='episode 1 ends at 3 but starts at 3'):
        episode_bounds([3, 3, 5])


def test_windows_by_hand():
    windows = make_windows(EPISODE_ENDS, before=1, after=2)
    assert len(windows) == 8  # every step anchors one window
    assert windows.offsets.tolist() == [-1, 0, 1, 2]
    rows, is_pad = windows.gather(np.arange(8))
    assert rows.tolist() == [
        [0, 0, 1, 2], [0, 1, 2, 2], [1, 2, 2, 2],  # episode 0: rows 0..2
        [3, 3, 3, 3],  # episode 1: a single row, padded on both sides
        [4, 4, 5, 6], [4, 5, 6, 7], [5, 6, 7, 7], [6, 7, 7, 7],  # episode 2: rows 4..7
    ]
    assert is_pad.astype(int).tolist() == [
        [1, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1],
        [1, 0, 1, 1],
        [1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [0, 0, 1, 1],
    ]


def test_windows_without_padding_stay_inside_episodes():
    windows = make_windows(EPISODE_ENDS, before=1, after=2, pad_before=0, pad_after=0)
    rows, is_pad = windows.gather(np.arange(len(windows)))
    assert rows.tolist() == [[4, 5, 6, 7]]  # only episode 2 is long enough for 4 rows
    assert not is_pad.any()


@pytest.mark.parametrize('n_obs_steps,horizon,pad_after',
                         [(2, 4, 3), (2, 4, 1), (3, 2, 1), (1, 5, 4)])
def test_windows_match_diffusion_policy_sampler(n_obs_steps, horizon, pad_after):
    ends = np.array([5, 6, 13, 15])
    windows = make_windows(ends, n_obs_steps - 1, horizon - 1, pad_after=pad_after)
    rows, is_pad = windows.gather(np.arange(len(windows)))
    expected = reference_sequences(ends, n_obs_steps + horizon - 1, n_obs_steps - 1, pad_after)
    assert len(expected) == len(windows)
    for i, (expected_rows, expected_pad) in enumerate(expected):
        np.testing.assert_array_equal(rows[i], expected_rows)
        np.testing.assert_array_equal(is_pad[i], expected_pad)


def test_make_windows_rejects_bad_padding():
    with pytest.raises(ValueError, match='pad_after in 0..2, got pad_before=1, pad_after=3'):
        make_windows(EPISODE_ENDS, before=1, after=2, pad_after=3)
    with pytest.raises(IndexError, match='expected 0..7'):
        make_windows(EPISODE_ENDS, before=1, after=2).gather([8])


def make_data(ends):
    """Rows whose values encode their own global index, so every gathered row is checkable."""
    n = int(ends[-1])
    index = np.arange(n, dtype=np.float64)
    return {
        'joint_pos': np.stack([index + 0.25 * j for j in range(8)], axis=1),
        'goal': np.stack([1000 + index] * 3, axis=1),
        'action': np.stack([-index - 0.5 * j for j in range(8)], axis=1),
        'image': np.broadcast_to((index % 256).astype(np.uint8)[:, None, None, None],
                                 (n, 4, 5, 3)).copy(),
    }


def test_sequence_dataset_contents():
    data = make_data(EPISODE_ENDS)
    dataset = SequenceDataset(data, EPISODE_ENDS, obs_keys=['joint_pos', 'image'],
                              n_obs_steps=2, horizon=3)
    assert len(dataset) == 8
    batch = dataset.get_batch([0, 3, 6])
    assert batch['obs.joint_pos'].shape == (3, 2, 8)
    assert batch['obs.joint_pos'].dtype == torch.float32
    assert batch['obs.image'].shape == (3, 2, 4, 5, 3)
    assert batch['obs.image'].dtype == torch.uint8
    assert batch['goal'].shape == (3, 3)
    assert batch['action'].shape == (3, 3, 8)
    assert batch['action_is_pad'].dtype == torch.bool
    # Window 0: anchor row 0 (first step of episode 0): history repeats row 0.
    assert batch['obs.joint_pos'][0, :, 0].tolist() == [0, 0]
    assert batch['goal'][0].tolist() == [1000, 1000, 1000]
    assert batch['action'][0, :, 0].tolist() == [0, -1, -2]
    assert batch['action_is_pad'][0].tolist() == [False, False, False]
    # Window 3: the one-step episode (row 3): everything repeats row 3, the future is padding.
    assert batch['obs.joint_pos'][1, :, 0].tolist() == [3, 3]
    assert batch['obs.image'][1, :, 0, 0, 0].tolist() == [3, 3]
    assert batch['action'][1, :, 0].tolist() == [-3, -3, -3]
    assert batch['action_is_pad'][1].tolist() == [False, True, True]
    # Window 6: anchor row 6 (third step of episode 2): last action repeated once.
    assert batch['obs.joint_pos'][2, :, 0].tolist() == [5, 6]
    assert batch['goal'][2, 0].item() == 1006
    assert batch['action'][2, :, 0].tolist() == [-6, -7, -7]
    assert batch['action'][2, :, 1].tolist() == [-6.5, -7.5, -7.5]
    assert batch['action_is_pad'][2].tolist() == [False, False, True]


def test_sequence_dataset_never_crosses_episodes():
    ends = np.array([7, 9, 20, 21, 30])
    data = make_data(ends)
    dataset = SequenceDataset(data, ends, obs_keys=['joint_pos'], n_obs_steps=3, horizon=6)
    episode_of_row = np.searchsorted(ends, np.arange(ends[-1]), side='right')
    batch = dataset.get_batch(np.arange(len(dataset)))
    obs_rows = batch['obs.joint_pos'][:, :, 0].numpy().astype(int)
    action_rows = -batch['action'][:, :, 0].numpy().astype(int)
    anchors = obs_rows[:, -1]
    assert anchors.tolist() == list(range(ends[-1]))
    assert (action_rows[:, 0] == anchors).all()  # the chunk starts at the newest observation
    for rows in (obs_rows, action_rows):
        assert (episode_of_row[rows] == episode_of_row[anchors][:, None]).all()


def test_getitem_matches_batch_and_spec_constructor():
    data = make_data(EPISODE_ENDS)
    spec = PolicySpec(policy_type='diffusion', obs_shapes={'joint_pos': [8]}, goal_dim=3,
                      horizon=4, n_action_steps=2, n_obs_steps=2)
    dataset = SequenceDataset.from_spec(data, EPISODE_ENDS, spec)
    batch = dataset.get_batch([5])
    item = dataset[5]
    assert sorted(item) == ['action', 'action_is_pad', 'goal', 'obs.joint_pos']
    for key, value in item.items():
        assert torch.equal(value, batch[key][0])


def test_sequence_dataset_reports_missing_keys():
    data = make_data(EPISODE_ENDS)
    with pytest.raises(KeyError, match="lacks keys \\['object_state'\\]"):
        SequenceDataset(data, EPISODE_ENDS, obs_keys=['object_state'], n_obs_steps=2, horizon=3)
    with pytest.raises(ValueError, match='fewer rows than episode_ends'):
        SequenceDataset(data, [3, 40], obs_keys=['joint_pos'], n_obs_steps=2, horizon=3)
