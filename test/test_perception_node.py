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

"""Perception node over real rclpy/DDS: alignment, malformed images, stale sensors."""

from __future__ import annotations

from pathlib import Path
import threading
import time
from typing import Callable, Iterator

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray
import torch

from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.checkpoint import checkpoint_id, load_policy, save_checkpoint
from dp_tt_ros.policies.diffusion.modeling import DiffusionPolicy
from dp_tt_ros.robot import ARM_JOINTS, FINGER_JOINTS
from dp_tt_ros.ros.context import decode_context, NodeConfigError, ns_to_stamp, PolicyContext
from dp_tt_ros.ros.conversions import image_to_msg
from dp_tt_ros.ros.perception_node import PerceptionNode

SIZE = 32
MS = 1_000_000
JOINT_NAMES = list(ARM_JOINTS + FINGER_JOINTS)


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a tiny untrained image + low-dim diffusion policy with a goal."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    spec = PolicySpec(policy_type='diffusion', image_keys=['image'], goal_dim=3, horizon=8,
                      n_action_steps=4, n_obs_steps=2, dt=0.1,
                      obs_shapes={'joint_pos': [8], 'joint_vel': [8], 'image': [SIZE, SIZE, 3]})
    data = {'joint_pos': rng.standard_normal((50, 8)), 'joint_vel': rng.standard_normal((50, 8)),
            'goal': rng.standard_normal((50, 3)), 'action': rng.standard_normal((50, 8)),
            'image': rng.integers(0, 256, (50, SIZE, SIZE, 3))}
    policy = DiffusionPolicy.build(
        data, spec, unet={'down_dims': [16, 32], 'step_embed_dim': 16},
        encoder={'num_keypoints': 8, 'image_feature_dim': 16})
    return save_checkpoint(policy, tmp_path_factory.mktemp('perception') / 'ckpt')


class Probe(Node):
    """Publishes sensors like the bridge does and records what perception publishes."""

    def __init__(self, context: rclpy.Context) -> None:
        super().__init__('perception_probe', context=context)
        self.joints = self.create_publisher(JointState, '/joint_states', QoSProfile(depth=50))
        self.images = self.create_publisher(Image, '/camera/image_raw', QoSProfile(depth=10))
        self.goal = self.create_publisher(PoseStamped, '/goal', QoSProfile(depth=1))
        self.contexts: list[PolicyContext] = []
        self.diagnostics: list[DiagnosticStatus] = []
        self.create_subscription(Float32MultiArray, '/policy/context',
                                 lambda msg: self.contexts.append(decode_context(msg)),
                                 QoSProfile(depth=50))
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                 QoSProfile(depth=50))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics.extend(s for s in msg.status if s.name.startswith('perception'))

    def now_ns(self) -> int:
        return self.get_clock().now().nanoseconds

    def publish_joints(self, stamp_ns: int, position: np.ndarray) -> None:
        """Publish 9 joints whose 8-d observation is ``position`` (fingers both at the mean)."""
        msg = JointState(name=JOINT_NAMES)
        msg.header.stamp = ns_to_stamp(stamp_ns)
        msg.position = [float(v) for v in position[:7]] + [float(position[7])] * 2
        msg.velocity = [float(v) for v in -position[:7]] + [float(-position[7])] * 2
        self.joints.publish(msg)

    def publish_image(self, stamp_ns: int, rgb: np.ndarray) -> None:
        self.images.publish(image_to_msg(rgb, ns_to_stamp(stamp_ns), 'camera'))

    def publish_goal(self, goal: np.ndarray) -> None:
        msg = PoseStamped()
        msg.pose.position.x, msg.pose.position.y, msg.pose.position.z = map(float, goal)
        self.goal.publish(msg)

    def latest_diagnostic(self) -> dict[str, str] | None:
        if not self.diagnostics:
            return None
        status = self.diagnostics[-1]
        return {'level': status.level, 'message': status.message,
                **{item.key: item.value for item in status.values}}


def wait_for(condition: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met before the deadline')
        time.sleep(0.01)


def deliver(publish: Callable[[], None], received: Callable[[], bool]) -> None:
    """
    Publish until ``received`` holds (a best-effort sample can be lost on a busy machine).

    Resend quickly: a sample resent only after its stamp is ``stale_timeout`` old would be
    (rightly) held back as stale by the node.
    """
    for _ in range(100):
        publish()
        try:
            wait_for(received, timeout=0.1)
            return
        except AssertionError:
            continue
    raise AssertionError('the node never received the sample')


@pytest.fixture
def graph(checkpoint: Path) -> Iterator[tuple[PerceptionNode, Probe]]:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = PerceptionNode(context=context, parameter_overrides=[
        Parameter('checkpoint', value=str(checkpoint)), Parameter('rate_hz', value=1000.0),
        Parameter('stale_timeout', value=3.0), Parameter('diagnostics_period', value=0.2)])
    probe = Probe(context)
    executor = MultiThreadedExecutor(num_threads=2, context=context)
    executor.add_node(node)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    wait_for(lambda: probe.joints.get_subscription_count() > 0
             and probe.images.get_subscription_count() > 0
             and probe.goal.get_subscription_count() > 0)
    try:
        yield node, probe
    finally:
        executor.shutdown()
        thread.join()
        node.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=context)


def test_context_is_the_encoded_history_on_the_dt_grid(
        graph: tuple[PerceptionNode, Probe], checkpoint: Path) -> None:
    node, probe = graph
    rng = np.random.default_rng(1)
    joints = rng.uniform(-1, 1, (7, 8)).astype(np.float32)
    joints[:, 7] = rng.uniform(0, 0.04, 7)
    images = rng.integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    goal = np.array([0.5, -0.2, 0.3], np.float32)
    base = probe.now_ns() - 300 * MS
    deliver(lambda: probe.publish_goal(goal), lambda: node.goal is not None)
    # Sensor-data QoS is best effort: resend until each sample is in the node's history.
    for k in range(7):  # joint states every 50 ms: base + 0 .. base + 300 ms
        deliver(lambda: probe.publish_joints(base + k * 50 * MS, joints[k]),
                lambda: node.buffers['joint_pos'].newest_stamp == base + k * 50 * MS)
    for k in range(2):
        deliver(lambda: probe.publish_image(base + (k + 1) * 100 * MS, images[k]),
                lambda: node.buffers['image'].newest_stamp == base + (k + 1) * 100 * MS)
    wait_for(lambda: any(c.stamp_ns == base + 200 * MS for c in probe.contexts))
    assert all(c.stamp_ns <= base + 200 * MS for c in probe.contexts)
    context = next(c for c in probe.contexts if c.stamp_ns == base + 200 * MS)
    # Grid base + 100 ms, base + 200 ms: joint samples k = 2 and 4, both images.
    policy = load_policy(checkpoint)
    expected = policy.encode_observations({
        'joint_pos': joints[[2, 4]][None], 'joint_vel': -joints[[2, 4]][None],
        'image': images[None]})
    np.testing.assert_allclose(context.context, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(context.goal, goal[None])
    assert context.checkpoint_id == checkpoint_id(checkpoint)


def test_malformed_images_are_rejected_and_the_node_keeps_working(
        graph: tuple[PerceptionNode, Probe]) -> None:
    node, probe = graph
    deliver(lambda: probe.publish_goal(np.zeros(3, np.float32)), lambda: node.goal is not None)
    now = probe.now_ns()
    deliver(lambda: probe.publish_joints(now, np.zeros(8, np.float32)),
            lambda: node.buffers['joint_pos'].newest_stamp == now)
    good = np.zeros((SIZE, SIZE, 3), np.uint8)
    wrong_encoding = image_to_msg(good, ns_to_stamp(now), 'camera')
    wrong_encoding.encoding = '16UC1'
    bad_step = image_to_msg(good, ns_to_stamp(now), 'camera')
    bad_step.step = SIZE * 3 - 1
    wrong_size = image_to_msg(np.zeros((SIZE, SIZE + 8, 3), np.uint8), ns_to_stamp(now), 'cam')
    for count, msg in enumerate((wrong_encoding, bad_step, wrong_size), start=1):
        deliver(lambda: probe.images.publish(msg),
                lambda: node.counts['rejected_images'] >= count)
    assert probe.contexts == [] and len(node.buffers['image']) == 0
    deliver(lambda: probe.publish_image(now, good), lambda: len(probe.contexts) >= 1)
    assert probe.contexts[0].stamp_ns == now
    rejected = str(node.counts['rejected_images'])
    wait_for(lambda: (probe.latest_diagnostic() or {}).get('rejected_images') == rejected)


def test_stale_camera_gives_no_context_and_a_diagnostic(
        graph: tuple[PerceptionNode, Probe]) -> None:
    node, probe = graph
    wait_for(lambda: 'no message received yet' in (probe.latest_diagnostic() or {}).get(
        'stale /camera/image_raw', ''))
    deliver(lambda: probe.publish_goal(np.zeros(3, np.float32)), lambda: node.goal is not None)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    for _ in range(5):  # a camera lagging 5 s behind the joint states (stale_timeout is 3 s)
        now = probe.now_ns()
        probe.publish_joints(now, np.zeros(8, np.float32))
        probe.publish_image(now - 5_000 * MS, image)
        time.sleep(0.05)
    wait_for(lambda: node.counts['held_back_stale'] > 0)
    wait_for(lambda: 's old' in (probe.latest_diagnostic() or {}).get(
        'stale /camera/image_raw', ''))
    status = probe.latest_diagnostic()
    assert status is not None and status['level'] == DiagnosticStatus.WARN
    assert '/camera/image_raw' in status['message']
    assert probe.contexts == [] and node.counts['contexts'] == 0


def test_new_episode_drops_the_history(graph: tuple[PerceptionNode, Probe]) -> None:
    node, probe = graph
    status_pub = probe.create_publisher(DiagnosticStatus, '/sim/task_status',
                                        QoSProfile(depth=10))
    wait_for(lambda: status_pub.get_subscription_count() > 0)
    deliver(lambda: probe.publish_goal(np.zeros(3, np.float32)), lambda: node.goal is not None)
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    now = probe.now_ns()
    for k, stamp in enumerate((now - 100 * MS, now)):
        deliver(lambda: probe.publish_joints(stamp, np.full(8, float(k), np.float32)),
                lambda: node.buffers['joint_pos'].newest_stamp == stamp)
        deliver(lambda: probe.publish_image(stamp, image),
                lambda: node.buffers['image'].newest_stamp == stamp)
    wait_for(lambda: any(c.stamp_ns == now for c in probe.contexts))
    for episode in ('0', '1'):
        status_pub.publish(DiagnosticStatus(values=[KeyValue(key='episode', value=episode)]))
    wait_for(lambda: node.episode == '1')
    assert all(len(buffer) == 0 for buffer in node.buffers.values())
    later = probe.now_ns()
    deliver(lambda: probe.publish_joints(later, np.full(8, 5.0, np.float32)),
            lambda: node.buffers['joint_pos'].newest_stamp == later)
    deliver(lambda: probe.publish_image(later, image),
            lambda: any(c.stamp_ns == later for c in probe.contexts))
    # Only the new episode's sample is in the history: the first grid step is padded with it.
    context = next(c for c in probe.contexts if c.stamp_ns == later).context[0]
    np.testing.assert_array_equal(context[0], context[1])


def test_too_few_image_topics_is_a_clear_configuration_error(checkpoint: Path) -> None:
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        with pytest.raises(NodeConfigError, match=r"image_topics=\[\] must name one topic"):
            PerceptionNode(context=context, parameter_overrides=[
                Parameter('checkpoint', value=str(checkpoint)),
                Parameter('image_topics')])  # what an empty YAML list arrives as
    finally:
        rclpy.shutdown(context=context)
