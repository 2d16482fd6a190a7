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
The PyBullet bridge over real rclpy/DDS: rates, both controller interfaces, rejection, reset.

One bridge (real PyBullet physics, in its own thread and executor) serves the whole module; a
probe node in the main thread publishes commands and records what the bridge publishes. Rates
are checked on message stamps (simulated time), never on wall-clock timing.
"""

import subprocess
import sys
import threading
import time
from typing import Callable

from builtin_interfaces.msg import Duration
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
import numpy as np
import pytest
import rclpy
from rclpy.context import Context
from rclpy.exceptions import InvalidParameterValueException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dp_tt_ros.robot import ARM_JOINTS, COMMAND_JOINTS, FINGER_JOINTS, HOME_POSITION
from dp_tt_ros.ros.bridge_node import _SimSchedule, BridgeConfigError, BridgeNode
from dp_tt_ros.ros.conversions import msg_to_rgb, stamp_to_seconds
from dp_tt_ros.sim.world import PandaWorld

SEED = 11
PHYSICS_HZ = 240.0
JOINT_STATE_RATE = 60.0
CAMERA_RATE = 12.0
CAMERA_SIZE = (40, 32)
# Forward commands in reversed order prove that the ``joints`` parameter sets the order.
JOINTS = list(reversed(COMMAND_JOINTS))
TOLERANCE = 0.02
TARGET = HOME_POSITION + np.array([0.25, 0.15, -0.2, 0.2, 0.1, -0.15, 0.2, -0.02])


class Probe(Node):
    """Records everything the bridge publishes and sends commands to it."""

    def __init__(self, context: Context) -> None:
        super().__init__('bridge_probe', context=context)
        self.received: dict[str, list] = {'clock': [], 'joint_states': [], 'image': [],
                                          'camera_info': [], 'status': [], 'diagnostics': [],
                                          'goal': [], 'object_state': []}
        for msg_type, topic, key, qos in (
                (Clock, '/clock', 'clock', QoSProfile(depth=1000)),
                (JointState, '/joint_states', 'joint_states', qos_profile_sensor_data),
                (Image, '/camera/image_raw', 'image', qos_profile_sensor_data),
                (CameraInfo, '/camera/camera_info', 'camera_info', qos_profile_sensor_data),
                (DiagnosticStatus, '/sim/task_status', 'status', QoSProfile(depth=100)),
                (PoseStamped, '/goal', 'goal', QoSProfile(depth=10)),
                (Float64MultiArray, '/sim/object_state', 'object_state', qos_profile_sensor_data),
                (DiagnosticArray, '/diagnostics', 'diagnostics', QoSProfile(depth=100))):
            self.create_subscription(msg_type, topic, self.received[key].append, qos)
        self.forward = self.create_publisher(
            Float64MultiArray, '/forward_position_controller/commands', 10)
        self.trajectory = self.create_publisher(
            JointTrajectory, '/joint_trajectory_controller/joint_trajectory', 10)
        self.reset_client = self.create_client(Trigger, '/sim/reset')
        self.spinner = SingleThreadedExecutor(context=context)
        self.spinner.add_node(self)

    def spin_until(self, done: Callable[[], bool], limit_s: float = 20.0) -> None:
        deadline = time.monotonic() + limit_s
        while not done():
            assert time.monotonic() < deadline, 'bridge did not answer in time'
            self.spinner.spin_once(timeout_sec=0.02)

    def sim_now(self) -> float:
        self.spin_until(lambda: bool(self.received['joint_states']))
        return stamp_to_seconds(self.received['joint_states'][-1].header.stamp)

    def spin_sim(self, seconds: float) -> None:
        """Spin until the bridge's simulated time has advanced by ``seconds``."""
        end = self.sim_now() + seconds
        self.spin_until(lambda: self.sim_now() >= end)

    def command_state(self) -> np.ndarray:
        """Return the latest joint state as 8 command values in COMMAND_JOINTS order."""
        msg = self.received['joint_states'][-1]
        position = dict(zip(msg.name, msg.position))
        fingers = np.mean([position[name] for name in FINGER_JOINTS])
        return np.array([position[name] for name in ARM_JOINTS] + [fingers])

    def fresh_command_state(self) -> np.ndarray:
        """Return the command state from a joint state published after this call."""
        self.received['joint_states'].clear()
        # The first arrivals may have been in flight before the call; a few later is fresh.
        self.spin_until(lambda: len(self.received['joint_states']) >= 3)
        return self.command_state()

    def send_forward(self, values_in_joints_order: list[float]) -> None:
        self.forward.publish(Float64MultiArray(data=[float(v) for v in values_in_joints_order]))

    def rejected(self) -> int:
        """Return the rejected-command count of the bridge's newest diagnostics."""
        values = {kv.key: kv.value for kv in self.received['diagnostics'][-1].status[0].values}
        return int(values['rejected_commands'])

    def reset(self) -> Trigger.Response:
        assert self.reset_client.wait_for_service(timeout_sec=10.0)
        future = self.reset_client.call_async(Trigger.Request())
        self.spin_until(future.done)
        return future.result()


def in_joints_order(command: np.ndarray) -> list[float]:
    return [float(command[COMMAND_JOINTS.index(name)]) for name in JOINTS]


def trajectory(points: list[tuple[float, np.ndarray]], names=COMMAND_JOINTS,
               stamp: float = 0.0) -> JointTrajectory:
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp.sec, msg.header.stamp.nanosec = int(stamp), int(round(stamp % 1 * 1e9))
    for offset, positions in points:
        msg.points.append(JointTrajectoryPoint(
            positions=[float(v) for v in positions],
            time_from_start=Duration(sec=int(offset), nanosec=int(round(offset % 1 * 1e9)))))
    return msg


@pytest.fixture(scope='module')
def probe():
    context = Context()
    rclpy.init(context=context)
    bridge = BridgeNode(context=context, parameter_overrides=[
        Parameter('task', value='reach'), Parameter('seed', value=SEED),
        Parameter('physics_hz', value=PHYSICS_HZ), Parameter('real_time_factor', value=3.0),
        Parameter('joint_state_rate', value=JOINT_STATE_RATE),
        Parameter('camera_rate', value=CAMERA_RATE),
        Parameter('camera_width', value=CAMERA_SIZE[0]),
        Parameter('camera_height', value=CAMERA_SIZE[1]),
        Parameter('diagnostics_period', value=0.2), Parameter('joints', value=JOINTS)])
    bridge_executor = SingleThreadedExecutor(context=context)
    bridge_executor.add_node(bridge)
    stop = threading.Event()
    thread = threading.Thread(target=bridge.spin, args=(bridge_executor, stop.is_set))
    thread.start()
    probe = None
    try:
        probe = Probe(context)
        probe.spin_until(lambda: len(probe.received['diagnostics']) >= 2)
        yield probe
    finally:
        stop.set()
        thread.join()
        if probe is not None:
            probe.destroy_node()
        bridge.close()
        bridge.destroy_node()
        rclpy.try_shutdown(context=context)


def goal_of(msg: PoseStamped) -> np.ndarray:
    return np.array([msg.pose.position.x, msg.pose.position.y, msg.pose.position.z])


def median_period(messages: list) -> float:
    stamps = np.array([stamp_to_seconds(m.header.stamp if hasattr(m, 'header') else m.clock)
                       for m in messages])
    return float(np.median(np.diff(stamps)))


def test_publishes_every_stream_at_its_simulated_rate(probe: Probe) -> None:
    probe.spin_sim(1.5)
    received = probe.received
    assert median_period(received['clock']) == pytest.approx(1.0 / PHYSICS_HZ, abs=1e-6)
    assert median_period(received['joint_states']) == pytest.approx(1 / JOINT_STATE_RATE, 1e-6)
    assert median_period(received['image']) == pytest.approx(1.0 / CAMERA_RATE, abs=1e-6)
    joint_state = received['joint_states'][-1]
    assert list(joint_state.name) == list(ARM_JOINTS + FINGER_JOINTS)
    assert len(joint_state.velocity) == len(joint_state.position) == 9
    image = received['image'][-1]
    assert (image.encoding, image.width, image.height) == ('rgb8', *CAMERA_SIZE)
    rgb = msg_to_rgb(image)
    assert rgb.shape == (CAMERA_SIZE[1], CAMERA_SIZE[0], 3) and rgb.std() > 0
    info = received['camera_info'][-1]
    assert info.header.stamp == image.header.stamp
    assert (info.width, info.height) == CAMERA_SIZE
    assert info.k[2] == pytest.approx(CAMERA_SIZE[0] / 2) and info.k[0] > 0
    status = {kv.key: kv.value for kv in received['status'][-1].values}
    assert {'episode', 'seed', 'success', 'n_collisions', 'collision_time', 'elapsed',
            'time_to_goal'} <= set(status)
    assert (status['episode'], status['seed']) == ('0', str(SEED))
    rates = {kv.key: float(kv.value) for kv in received['diagnostics'][-1].status[0].values}
    assert rates['physics_steps_per_s'] > 0 and rates['camera_hz'] > 0
    reference = PandaWorld('reach', seed=SEED)
    try:
        np.testing.assert_allclose(goal_of(received['goal'][-1]), reference.scene.goal)
        np.testing.assert_allclose(received['object_state'][-1].data,
                                   reference.scene.object_state(), atol=1e-3)
    finally:
        reference.close()


def test_forward_commands_in_joints_order_drive_the_arm(probe: Probe) -> None:
    probe.send_forward(in_joints_order(TARGET))
    probe.spin_sim(2.0)
    np.testing.assert_allclose(probe.command_state(), TARGET, atol=TOLERANCE)


def test_bad_forward_commands_are_dropped_and_the_arm_holds(probe: Probe) -> None:
    probe.send_forward(in_joints_order(TARGET))
    probe.spin_sim(1.0)
    before = probe.rejected()
    probe.send_forward(in_joints_order(HOME_POSITION)[:7])
    probe.send_forward([float('nan')] + in_joints_order(HOME_POSITION)[1:])
    probe.send_forward([float('inf')] * 8)
    probe.spin_sim(1.0)
    probe.spin_until(lambda: probe.rejected() == before + 3)
    np.testing.assert_allclose(probe.command_state(), TARGET, atol=TOLERANCE)


def test_joint_trajectory_is_interpolated_to_its_last_point(probe: Probe) -> None:
    probe.send_forward(in_joints_order(HOME_POSITION))
    probe.spin_sim(1.5)
    middle = (HOME_POSITION + TARGET) / 2
    probe.trajectory.publish(trajectory([(0.8, middle), (1.6, TARGET)]))
    probe.spin_sim(0.8)
    halfway = probe.command_state()
    assert np.abs(halfway - HOME_POSITION).max() > 0.05
    assert np.abs(halfway - TARGET).max() > 0.05
    probe.spin_sim(1.5)
    np.testing.assert_allclose(probe.command_state(), TARGET, atol=TOLERANCE)


def test_a_new_trajectory_replaces_the_running_one(probe: Probe) -> None:
    probe.trajectory.publish(trajectory([(3.0, HOME_POSITION)]))
    probe.spin_sim(0.3)
    # Joint order in the message differs from the controller's; values follow the names.
    names = list(reversed(COMMAND_JOINTS))
    probe.trajectory.publish(trajectory([(0.5, TARGET[::-1])], names=names))
    probe.spin_sim(1.5)
    np.testing.assert_allclose(probe.command_state(), TARGET, atol=TOLERANCE)


def test_invalid_trajectories_are_rejected_and_the_arm_holds(probe: Probe) -> None:
    probe.send_forward(in_joints_order(TARGET))
    probe.spin_sim(1.0)
    before = probe.rejected()
    now = probe.sim_now()
    probe.trajectory.publish(trajectory([(0.5, HOME_POSITION[:7])], names=ARM_JOINTS))
    probe.trajectory.publish(trajectory([(0.5, HOME_POSITION), (0.5, HOME_POSITION)]))
    probe.trajectory.publish(trajectory([(0.2, HOME_POSITION)], stamp=now - 1.0))
    probe.spin_sim(1.0)
    probe.spin_until(lambda: probe.rejected() == before + 3)
    np.testing.assert_allclose(probe.command_state(), TARGET, atol=TOLERANCE)


def test_reset_starts_the_next_episode_with_its_seed(probe: Probe) -> None:
    first = probe.reset()
    assert first.success and first.message == f'episode 1 seed {SEED + 1}'
    probe.spin_until(lambda: any(kv.key == 'episode' and kv.value == '1'
                                 for kv in probe.received['status'][-1].values))
    after_reset = probe.fresh_command_state()
    reference = PandaWorld('reach', seed=SEED + 1)
    try:
        _, position, _ = reference.joint_state()
        probe.spin_until(lambda: np.allclose(goal_of(probe.received['goal'][-1]),
                                             reference.scene.goal))
    finally:
        reference.close()
    expected = np.append(position[:7], position[7:].mean())
    np.testing.assert_allclose(after_reset, expected, atol=5e-3)
    second = probe.reset()
    assert second.message == f'episode 2 seed {SEED + 2}'
    probe.spin_until(lambda: any(kv.key == 'episode' and kv.value == '2'
                                 for kv in probe.received['status'][-1].values))
    assert np.abs(probe.fresh_command_state() - expected).max() > 1e-2


def test_bad_parameters_fail_with_the_name_and_the_expectation() -> None:
    context = Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(BridgeConfigError, match='joints'):
            BridgeNode(context=context, parameter_overrides=[
                Parameter('joints', value=list(ARM_JOINTS))])
        with pytest.raises(InvalidParameterValueException, match='physics_hz'):
            BridgeNode(context=context, parameter_overrides=[Parameter('physics_hz', value=-1.0)])
    finally:
        rclpy.try_shutdown(context=context)


def test_unknown_task_exits_with_status_2_and_names_it() -> None:
    result = subprocess.run(
        [sys.executable, '-m', 'dp_tt_ros', 'node', 'pybullet_bridge', '--ros-args',
         '-p', 'task:=juggle'], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "task='juggle'" in result.stderr and 'reach' in result.stderr


def test_schedules_fire_once_per_period_of_simulated_time() -> None:
    off = _SimSchedule(0.0)
    assert not any(off.due(step / 240) for step in range(2400))
    ten_hz = _SimSchedule(10.0)
    fired = [step for step in range(1, 241) if ten_hz.due(step / 240)]
    # The first step publishes; after that, the period grid of simulated time (0.1 s, 0.2 s...).
    assert fired == [1, *range(24, 241, 24)]
