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

"""Time-grid alignment of observation histories (pure logic, no ROS)."""

import numpy as np
import pytest

from dp_tt_ros.data.history import (
    align_history, grid_stamps, seconds_to_ns, stale_reasons, StampedBuffer)

MS = 1_000_000


def test_grid_stamps_end_at_newest_and_are_dt_apart() -> None:
    assert grid_stamps(1_000 * MS, 3, 100 * MS) == [800 * MS, 900 * MS, 1_000 * MS]
    assert grid_stamps(5, 1, 100) == [5]
    with pytest.raises(ValueError, match='n_steps'):
        grid_stamps(0, 0, 100)
    with pytest.raises(ValueError, match='dt'):
        grid_stamps(0, 2, 0)


def test_seconds_to_ns_is_exact_for_typical_stamps() -> None:
    assert seconds_to_ns(0.1) == 100_000_000
    assert seconds_to_ns(12.000000001) == 12_000_000_001


def test_at_or_before_picks_newest_not_nearest() -> None:
    buffer: StampedBuffer[int] = StampedBuffer(span_ns=10**12)
    for stamp, value in [(0, 0), (100, 1), (200, 2)]:
        buffer.add(stamp, value)
    assert buffer.at_or_before(199) == 1
    assert buffer.at_or_before(200) == 2
    assert buffer.at_or_before(10_000) == 2
    assert buffer.at_or_before(-1) is None
    assert buffer.at_or_before(-1, pad=True) == 0


def test_out_of_order_samples_are_sorted_and_equal_stamps_replace() -> None:
    buffer: StampedBuffer[str] = StampedBuffer(span_ns=10**12)
    buffer.add(300, 'c')
    buffer.add(100, 'a')
    buffer.add(200, 'b')
    buffer.add(200, 'B')
    assert len(buffer) == 3
    assert [buffer.at_or_before(t) for t in (100, 250, 300)] == ['a', 'B', 'c']
    assert buffer.newest_stamp == 300 and buffer.newest_value == 'c'


def test_pruning_keeps_one_sample_older_than_the_span() -> None:
    buffer: StampedBuffer[int] = StampedBuffer(span_ns=250)
    for stamp in range(0, 1_001, 100):
        buffer.add(stamp, stamp)
    # newest 1000, span 250 -> keeps 800, 900, 1000 and 700 for a grid time between 700 and 750.
    assert len(buffer) == 4
    assert buffer.at_or_before(750) == 700
    buffer.clear()
    assert len(buffer) == 0 and buffer.newest_stamp is None


def test_align_history_uses_the_slowest_sensor_as_capture_time() -> None:
    dt = 100 * MS
    joints: StampedBuffer[np.ndarray] = StampedBuffer(span_ns=10**10)
    camera: StampedBuffer[np.ndarray] = StampedBuffer(span_ns=10**10)
    for k in range(0, 31):  # joint states every 10 ms from 0 to 300 ms
        joints.add(k * 10 * MS, np.array([k], dtype=np.float32))
    for stamp in (5 * MS, 105 * MS, 205 * MS):  # camera every 100 ms, offset by 5 ms
        camera.add(stamp, np.array([stamp / MS], dtype=np.float32))
    history = align_history({'joint_pos': joints, 'image': camera}, n_steps=3, dt_ns=dt)
    assert history is not None
    assert history.stamp_ns == 205 * MS
    # grid 5, 105, 205 ms: joint samples at or before are 0, 100, 200 ms (k = 0, 10, 20).
    np.testing.assert_array_equal(history.observations['joint_pos'][:, 0], [0, 10, 20])
    np.testing.assert_array_equal(history.observations['image'][:, 0], [5, 105, 205])


def test_align_history_pads_with_the_first_sample_and_waits_for_every_sensor() -> None:
    joints: StampedBuffer[np.ndarray] = StampedBuffer(span_ns=10**10)
    goal: StampedBuffer[np.ndarray] = StampedBuffer(span_ns=10**10)
    joints.add(50 * MS, np.array([1.0]))
    assert align_history({'joint_pos': joints, 'goal': goal}, 2, 100 * MS) is None
    goal.add(40 * MS, np.array([7.0]))
    history = align_history({'joint_pos': joints, 'goal': goal}, 2, 100 * MS)
    assert history is not None and history.stamp_ns == 40 * MS
    # Grid -60 ms and 40 ms both precede the only joint sample: padded with it.
    np.testing.assert_array_equal(history.observations['joint_pos'][:, 0], [1.0, 1.0])
    with pytest.raises(ValueError, match='at least one'):
        align_history({}, 2, 100)


def test_stale_reasons_cover_missing_old_and_future_stamps() -> None:
    now = 10_000 * MS
    reasons = stale_reasons({'camera': None, 'joints': now - 600 * MS, 'goal': now - 10 * MS,
                             'clock': now + 2_000 * MS}, now, 500 * MS)
    assert set(reasons) == {'camera', 'joints', 'clock'}
    assert 'no message' in reasons['camera']
    assert '0.600 s old' in reasons['joints']
    assert 'use_sim_time' in reasons['clock']
