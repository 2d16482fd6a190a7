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

"""Recorder node in a real process: episodes round-trip through services, a kill loses one only."""

from __future__ import annotations

import os
from pathlib import Path
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Iterator

from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from dp_tt_ros.data.episode_store import EpisodeStore
from dp_tt_ros.robot import ARM_JOINTS, FINGER_JOINTS
from dp_tt_ros.ros.conversions import image_to_msg

JOINTS = ['panda_gripper', *ARM_JOINTS]  # command order differs from the robot's on purpose
SIZE = 16


def wait_for(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met before the deadline')
        time.sleep(0.02)


class Teleop(Node):
    """Streams joint states, camera frames, a goal and commands whose values count up."""

    def __init__(self, context: rclpy.Context) -> None:
        super().__init__('teleop_probe', context=context)
        self.joint_pub = self.create_publisher(JointState, '/joint_states', QoSProfile(depth=10))
        self.image_pub = self.create_publisher(Image, '/camera/image_raw', QoSProfile(depth=10))
        self.goal_pub = self.create_publisher(PoseStamped, '/goal', QoSProfile(depth=1))
        self.command_pub = self.create_publisher(
            Float64MultiArray, '/forward_position_controller/commands', QoSProfile(depth=10))
        self.start = self.create_client(Trigger, '/recorder/start_episode')
        self.stop = self.create_client(SetBool, '/recorder/stop_episode')
        self.tick = 0
        self.recorded_steps = 0
        self.create_timer(0.02, self._publish)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                 QoSProfile(depth=10))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name.startswith('recorder'):
                values = {item.key: item.value for item in status.values}
                self.recorded_steps = int(values['recorded_steps'])

    def _publish(self) -> None:
        """Every 20 ms: sensors showing value ``tick``, a command asking for ``tick + 0.5``."""
        self.tick += 1
        value = float(self.tick)
        stamp = self.get_clock().now().to_msg()
        joints = JointState(name=list(ARM_JOINTS + FINGER_JOINTS),
                            position=[value] * 9, velocity=[-value] * 9)
        joints.header.stamp = stamp
        self.joint_pub.publish(joints)
        rgb = np.full((SIZE, SIZE, 3), self.tick % 256, np.uint8)
        self.image_pub.publish(image_to_msg(rgb, stamp, 'camera'))
        goal = PoseStamped()
        goal.pose.position.x, goal.pose.position.y, goal.pose.position.z = 0.5, -0.1, 0.3
        self.goal_pub.publish(goal)
        # Gripper first in this topic's order, then the arm: [g, j1..j7].
        self.command_pub.publish(Float64MultiArray(data=[1000.0 + value] + [value + 0.5] * 7))

    def call(self, client, request) -> object:
        assert client.wait_for_service(timeout_sec=30.0)
        future = client.call_async(request)
        wait_for(future.done)
        return future.result()


@pytest.fixture
def teleop() -> Iterator[Teleop]:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = Teleop(context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    try:
        yield node
    finally:
        executor.shutdown()
        thread.join()
        node.destroy_node()
        rclpy.shutdown(context=context)


def start_recorder(store: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, '-m', 'dp_tt_ros', 'node', 'recorder', '--ros-args',
         '-p', f'store:={store}', '-p', 'control_dt:=0.1', '-p', f'joints:={JOINTS}',
         '-p', 'diagnostics_period:=0.1'],
        env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_recorded_episode_round_trips_and_a_killed_recording_loses_only_itself(
        teleop: Teleop, tmp_path: Path) -> None:
    store_path = tmp_path / 'demos.zarr'
    recorder = start_recorder(store_path)
    try:
        assert teleop.call(teleop.start, Trigger.Request()).success
        wait_for(lambda: teleop.recorded_steps >= 5)
        response = teleop.call(teleop.stop, SetBool.Request(data=True))
        assert response.success, response.message
        assert teleop.call(teleop.start, Trigger.Request()).success
        wait_for(lambda: teleop.recorded_steps >= 2)
        first = EpisodeStore.open(store_path).get_episode(0)
        recorder.send_signal(signal.SIGKILL)
        recorder.wait(timeout=30)
    finally:
        if recorder.poll() is None:
            recorder.kill()
        output = recorder.communicate()[0]

    store = EpisodeStore.open(store_path)
    assert store.n_episodes == 1, output
    episode = store.get_episode(0)
    assert sorted(episode) == ['action', 'goal', 'image', 'joint_pos', 'joint_vel', 'reward',
                               'success']
    for key, values in first.items():
        np.testing.assert_array_equal(episode[key], values)
    steps = len(episode['action'])
    assert f'with {steps} steps' in response.message
    assert steps >= 5
    ticks = episode['joint_pos'][:, 0]
    # Steps are 0.1 s of 20 ms ticks apart, each an observation the teleop really sent.
    assert np.all(np.diff(ticks) > 0)
    np.testing.assert_array_equal(episode['joint_pos'], np.repeat(ticks[:, None], 8, axis=1))
    np.testing.assert_array_equal(episode['joint_vel'], -episode['joint_pos'])
    np.testing.assert_array_equal(episode['image'][:, 0, 0, 0], ticks % 256)
    # Actions are reordered into the robot's order (arm, then gripper) and were commanded
    # after the observation of their step.
    arm, gripper = episode['action'][:, :7], episode['action'][:, 7]
    np.testing.assert_array_equal(arm, np.repeat(arm[:, :1], 7, axis=1))
    np.testing.assert_array_equal(gripper - 1000.0, arm[:, 0] - 0.5)
    assert np.all(arm[:, 0] - 0.5 > ticks)
    np.testing.assert_allclose(episode['goal'], np.tile([0.5, -0.1, 0.3], (steps, 1)),
                               rtol=1e-6)
    assert episode['success'].tolist() == [False] * (steps - 1) + [True]
    assert store.episode_meta('episode_success').tolist() == [True]


def test_bad_store_parameter_exits_with_a_clear_error(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, '-m', 'dp_tt_ros', 'node', 'recorder'], capture_output=True,
        text=True, timeout=60)
    assert result.returncode == 2
    assert 'parameter store is empty' in result.stderr
