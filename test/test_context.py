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

"""Context / chunk message layouts shared by the perception, policy and recorder nodes."""

import json
from pathlib import Path
import threading

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
import numpy as np
import pytest
from std_msgs.msg import Float32MultiArray

from dp_tt_ros.policies.checkpoint import CheckpointError, FORMAT_VERSION
from dp_tt_ros.robot import ARM_JOINTS, COMMAND_JOINTS, FINGER_JOINTS
from dp_tt_ros.ros.context import (
    ChunkMessage, chunk_to_trajectory, decode_context, encode_context, joint_state_vectors,
    LatestOnly, NodeConfigError, ns_to_stamp, resolve_checkpoint, RollingSamples, stamp_to_ns,
    task_episode)

STAMP = 1_732_560_000_123_456_789  # beyond float64's exact integers: must survive exactly


def test_context_round_trip_is_exact_with_goal_and_stamp() -> None:
    rng = np.random.default_rng(0)
    context = rng.standard_normal((2, 5)).astype(np.float32)
    goal = np.array([0.4, -0.1, 0.3], np.float32)
    msg = encode_context(context, goal, STAMP, 'abc123')
    decoded = decode_context(msg)
    assert decoded.stamp_ns == STAMP
    assert decoded.checkpoint_id == 'abc123'
    np.testing.assert_array_equal(decoded.context, context[None])
    np.testing.assert_array_equal(decoded.goal, goal[None])
    # The layout is a valid MultiArrayLayout for the (1, To, C) context after the goal.
    assert msg.layout.data_offset == 3
    assert [(d.size, d.stride) for d in msg.layout.dim] == [(1, 10), (2, 10), (5, 5)]
    assert msg.layout.dim[1].label == 'obs_steps'


def test_context_without_goal_decodes_to_none() -> None:
    decoded = decode_context(encode_context(np.ones((1, 4), np.float32), None, 7, 'x'))
    assert decoded.goal is None and decoded.context.shape == (1, 1, 4)


def test_malformed_context_messages_are_explained() -> None:
    msg = encode_context(np.ones((2, 3), np.float32), None, 5, 'id')
    msg.data = msg.data[:-1]
    with pytest.raises(ValueError, match='expected 1 x'):
        decode_context(msg)
    with pytest.raises(ValueError, match='expected'):
        decode_context(Float32MultiArray())
    msg = encode_context(np.ones((2, 3), np.float32), None, 5, 'id')
    msg.layout.dim[0].label = 'capture_stamp_ns=-5'
    with pytest.raises(ValueError, match='non-negative integer'):
        decode_context(msg)
    msg.layout.dim[0].label = 'stamp=5'
    with pytest.raises(ValueError, match='capture_stamp_ns='):
        decode_context(msg)
    with pytest.raises(ValueError, match='obs_steps, features'):
        encode_context(np.ones(3, np.float32), None, 5, 'id')


def test_chunk_to_trajectory_anchors_points_at_the_capture_time() -> None:
    chunk = np.arange(3 * 8, dtype=np.float32).reshape(3, 8)
    msg = chunk_to_trajectory(chunk, COMMAND_JOINTS, 0.1, STAMP)
    assert stamp_to_ns(msg.header.stamp) == STAMP
    assert msg.joint_names == list(COMMAND_JOINTS)
    times = [p.time_from_start.sec * 10**9 + p.time_from_start.nanosec for p in msg.points]
    assert times == [100_000_000, 200_000_000, 300_000_000]
    np.testing.assert_array_equal([p.positions for p in msg.points], chunk)
    with pytest.raises(ValueError, match='does not match 7 joints'):
        chunk_to_trajectory(chunk, ARM_JOINTS, 0.1, STAMP)


def test_chunk_message_is_refilled_in_place() -> None:
    writer = ChunkMessage(COMMAND_JOINTS, 0.1, 3)
    first = writer.fill(np.zeros((3, 8)), STAMP)
    chunk = np.arange(3 * 8, dtype=np.float64).reshape(3, 8)
    second = writer.fill(chunk, STAMP + 10**8)
    assert second is first and stamp_to_ns(second.header.stamp) == STAMP + 10**8
    np.testing.assert_array_equal([p.positions for p in second.points], chunk)
    times = [p.time_from_start.sec * 10**9 + p.time_from_start.nanosec for p in second.points]
    assert times == [100_000_000, 200_000_000, 300_000_000]
    with pytest.raises(ValueError, match='does not match 3 points of 8 joints'):
        writer.fill(np.zeros((4, 8)), STAMP)


def test_stamp_conversions_are_inverse() -> None:
    stamp = ns_to_stamp(STAMP)
    assert (stamp.sec, stamp.nanosec) == (1_732_560_000, 123_456_789)
    assert stamp_to_ns(stamp) == STAMP


def test_joint_state_vectors_average_the_fingers_in_any_name_order() -> None:
    names = list(reversed(ARM_JOINTS + FINGER_JOINTS))
    values = {name: float(i) for i, name in enumerate(ARM_JOINTS)}
    values.update({FINGER_JOINTS[0]: 0.02, FINGER_JOINTS[1]: 0.04})
    positions = [values[name] for name in names]
    pos, vel = joint_state_vectors(names, positions, [])
    np.testing.assert_allclose(pos, [0, 1, 2, 3, 4, 5, 6, 0.03], rtol=1e-6)
    np.testing.assert_array_equal(vel, np.zeros(8))
    with pytest.raises(ValueError, match='lacks joints'):
        joint_state_vectors(names[1:], positions[1:], [])
    with pytest.raises(ValueError, match='equal counts'):
        joint_state_vectors(names, positions, [0.0])


def test_task_episode_reads_the_episode_key() -> None:
    status = DiagnosticStatus(values=[KeyValue(key='seed', value='3'),
                                      KeyValue(key='episode', value='2')])
    assert task_episode(status) == '2'
    assert task_episode(DiagnosticStatus()) is None


def test_latest_only_keeps_the_newest_item_and_counts_replacements() -> None:
    mailbox: LatestOnly[int] = LatestOnly()
    assert mailbox.take(timeout=0.0) is None
    for item in (1, 2, 3):
        mailbox.put(item)
    assert mailbox.take(timeout=0.0) == 3
    assert mailbox.replaced == 2
    assert mailbox.take(timeout=0.0) is None
    mailbox.put(4)
    mailbox.clear()
    assert mailbox.take(timeout=0.0) is None

    taken: list[int | None] = []
    waiter = threading.Thread(target=lambda: taken.append(mailbox.take()))
    waiter.start()
    mailbox.put(5)
    waiter.join(timeout=10.0)
    assert taken == [5]
    waiter = threading.Thread(target=lambda: taken.append(mailbox.take()))
    waiter.start()
    mailbox.close()
    waiter.join(timeout=10.0)
    assert taken == [5, None] and not waiter.is_alive()


def test_rolling_samples_summarise_the_window() -> None:
    samples = RollingSamples(size=100)
    assert samples.key_values('inference_ms') == []
    for value in range(1, 201):
        samples.add(float(value))
    values = {item.key: float(item.value) for item in samples.key_values('inference_ms')}
    assert values['inference_ms_p50'] == pytest.approx(150.5)
    assert values['inference_ms_max'] == 200.0 and samples.count == 200


def test_resolve_checkpoint_checks_type_and_location(tmp_path: Path) -> None:
    with pytest.raises(NodeConfigError, match="policy_type='gpt'"):
        resolve_checkpoint('', 'gpt', 'reach')
    with pytest.raises(CheckpointError, match='does not exist'):
        resolve_checkpoint(str(tmp_path / 'missing'), 'diffusion', 'reach')
    (tmp_path / 'config.json').write_text(
        json.dumps({'format_version': FORMAT_VERSION, 'policy_type': 'bc', 'policy': {}}))
    with pytest.raises(CheckpointError, match="holds a 'bc' policy"):
        resolve_checkpoint(str(tmp_path), 'diffusion', 'reach')
    assert resolve_checkpoint(str(tmp_path), 'bc', 'reach') == tmp_path
