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
The perception node: camera images and joint states in, encoded policy context out.

It runs the checkpoint's own encoders (``Policy.encode_observations``), so the policy node only
runs the action head and images never cross the graph twice. Inputs, all remappable:

* ``/joint_states`` (sensor_msgs/JointState, sensor-data QoS): ``joint_pos`` / ``joint_vel`` as in
  training (7 arm joints, gripper opening = mean of the two fingers).
* one Image topic per image key of the checkpoint (parameter ``image_topics``, in the order of the
  checkpoint's ``image_keys``; default ``/camera/image_raw``; unused by low-dim checkpoints),
  sensor-data QoS.
* ``/sim/object_state`` (std_msgs/Float64MultiArray, sensor-data QoS) when the checkpoint uses
  ``object_state``: ground-truth object features in the simulator's layout. The message has no
  header, so samples are stamped with this node's clock on arrival.
* ``/goal`` (geometry_msgs/PoseStamped, RELIABLE) when the checkpoint has a goal: its position is
  the 3-d goal. The latest goal is used until another arrives; goals do not go stale.
* ``/sim/task_status``: a new ``episode`` value drops the observation history.

Every time a new complete observation exists (the capture time = the newest instant every sensor
has reported, see :mod:`dp_tt_ros.data.history`) and at least one policy period has passed since
the last published context, the history on the checkpoint's ``dt`` grid is encoded and published
on ``/policy/context`` (layout in :mod:`dp_tt_ros.ros.context`). Publishing on arrival instead of
on a timer keeps the capture-to-context latency at the encoder's run time. While any sensor is
stale or missing, nothing is published and ``/diagnostics`` says which and why.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float32MultiArray, Float64MultiArray

from dp_tt_ros.data.history import (
    align_history, seconds_to_ns, stale_reasons, StampedBuffer)
from dp_tt_ros.policies.checkpoint import checkpoint_id, CheckpointError, load_policy
from dp_tt_ros.ros.context import (
    declare_parameters, encode_context, joint_state_vectors, key_values,
    NodeConfigError, resolve_checkpoint, RollingSamples, spin, stamp_to_ns, task_episode)
from dp_tt_ros.ros.conversions import msg_to_rgb
from dp_tt_ros.ros.process import (
    CPU_WAKEUP_LATENCY_PARAMETER, float_range, hold_cpu_wakeup_latency,
    REALTIME_PRIORITY_PARAMETER, request_realtime, run_node_process)

NODE_NAME = 'perception'
LOWDIM_SOURCES = {'joint_pos': '/joint_states', 'joint_vel': '/joint_states',
                  'object_state': '/sim/object_state'}
# A context is due once its capture time is this fraction of a period past the last one, so
# sensor jitter around the policy period never halves the context rate.
PERIOD_TOLERANCE = 0.1


PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    'checkpoint': ('', 'checkpoint directory; empty = models/<policy_type>_<task>', {}),
    'policy_type': ('diffusion', 'diffusion, transformer, bc or sac (must match the checkpoint)',
                    {}),
    'task': ('reach', 'task of the shipped default checkpoint', {}),
    'device': ('cpu', 'torch device for the encoders: cpu or cuda', {}),
    'rate_hz': (0.0, 'most contexts per second; 0 = one per policy dt of the checkpoint',
                float_range(0.0, 1000.0)),
    'stale_timeout': (0.5, 'seconds after which a sensor without news counts as stale',
                      float_range(0.001, 60.0)),
    'image_topics': (['/camera/image_raw'], "Image topics for the checkpoint's image_keys, in "
                     'order; entries beyond the number of image keys are unused', {}),
    'diagnostics_period': (1.0, 'seconds between /diagnostics messages',
                           float_range(0.05, 3600.0)),
    'realtime_priority': REALTIME_PRIORITY_PARAMETER,
    'cpu_wakeup_latency_us': CPU_WAKEUP_LATENCY_PARAMETER,
}


class PerceptionNode(Node):
    """Align sensor streams on the policy's time grid and publish encoded contexts."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        params = declare_parameters(self, PARAMETERS)
        self.realtime_priority: int = params['realtime_priority']
        self.scheduling = 'normal'  # what main's request_realtime got
        self.cpu_wakeup_latency_us: int = params['cpu_wakeup_latency_us']
        self.cpu_wakeup_latency = 'system setting'  # what main's hold_cpu_wakeup_latency got
        if params['device'] not in ('cpu', 'cuda'):
            raise NodeConfigError(f"parameter device={params['device']!r}; expected cpu or cuda")
        directory = resolve_checkpoint(params['checkpoint'], params['policy_type'], params['task'])
        self.policy = load_policy(directory, device=params['device'])
        self.checkpoint_id = checkpoint_id(directory)
        spec = self.policy.spec
        self.spec = spec
        self.dt_ns = seconds_to_ns(spec.dt)
        rate_hz = params['rate_hz'] or 1.0 / spec.dt
        self.min_interval_ns = int(seconds_to_ns(1.0 / rate_hz) * (1.0 - PERIOD_TOLERANCE))
        self.stale_timeout_ns = seconds_to_ns(params['stale_timeout'])
        span_ns = (spec.n_obs_steps - 1) * self.dt_ns + self.stale_timeout_ns
        unknown = [key for key in spec.lowdim_keys if key not in LOWDIM_SOURCES]
        if unknown:
            raise NodeConfigError(f'checkpoint {directory} observes {unknown}; this node provides '
                                  f'{sorted(LOWDIM_SOURCES)} and image keys')
        if spec.goal_dim not in (0, 3):
            raise NodeConfigError(f'checkpoint {directory} has a {spec.goal_dim}-d goal; /goal '
                                  '(PoseStamped) provides a 3-d position')
        if len(params['image_topics']) < len(spec.image_keys):
            raise NodeConfigError(f"parameter image_topics={list(params['image_topics'])} must "
                                  f'name one topic per checkpoint image key {spec.image_keys}')
        image_topics = list(params['image_topics'])[:len(spec.image_keys)]

        self.buffers = {key: StampedBuffer[np.ndarray](span_ns) for key in spec.obs_shapes}
        self.sources = {key: LOWDIM_SOURCES.get(key, '') for key in spec.lowdim_keys}
        self.sources.update(zip(spec.image_keys, image_topics))
        self.goal: np.ndarray | None = None
        self.episode: str | None = None
        self.last_context_ns: int | None = None
        self.counts = {'contexts': 0, 'rejected_images': 0, 'rejected_joint_states': 0,
                       'held_back_stale': 0}
        self.encode_ms = RollingSamples()
        self.stale: dict[str, str] = {}

        self.context_pub = self.create_publisher(Float32MultiArray, '/policy/context',
                                                 QoSProfile(depth=1))
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics',
                                                     QoSProfile(depth=10))
        # The episode change and the goal are created first, so that of messages waiting
        # together they are taken first: the bridge publishes both before the reset arm's state,
        # and a context must not pair the new arm with the old goal or history.
        self.create_subscription(DiagnosticStatus, '/sim/task_status', self._on_task_status,
                                 QoSProfile(depth=10))
        if spec.goal_dim:
            self.create_subscription(PoseStamped, '/goal', self._on_goal, QoSProfile(depth=1))
        if {'joint_pos', 'joint_vel'} & set(spec.obs_shapes):
            self.create_subscription(JointState, '/joint_states', self._on_joint_state,
                                     qos_profile_sensor_data)
        if 'object_state' in spec.obs_shapes:
            self.create_subscription(Float64MultiArray, '/sim/object_state',
                                     self._on_object_state, qos_profile_sensor_data)
        for key, topic in zip(spec.image_keys, image_topics):
            self.create_subscription(Image, topic, self._image_callback(key),
                                     qos_profile_sensor_data)
        self.create_timer(params['diagnostics_period'], self._publish_diagnostics)
        self.get_logger().info(
            f'encoding {sorted(spec.obs_shapes)} from {directory} (checkpoint '
            f'{self.checkpoint_id}): {spec.n_obs_steps} steps {spec.dt:g} s apart, '
            f'up to {rate_hz:g} contexts/s, goal {"from /goal" if spec.goal_dim else "none"}')

    # ------------------------------------------------------------------ inputs
    def _stamp_or_now(self, stamp_ns: int) -> int:
        """Return the header stamp; an unstamped (zero) message counts as taken on arrival."""
        return stamp_ns if stamp_ns else self.get_clock().now().nanoseconds

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            joint_pos, joint_vel = joint_state_vectors(msg.name, msg.position, msg.velocity)
        except ValueError as error:
            self.counts['rejected_joint_states'] += 1
            self.get_logger().warning(f'rejected /joint_states: {error}',
                                      throttle_duration_sec=5.0)
            return
        stamp = self._stamp_or_now(stamp_to_ns(msg.header.stamp))
        for key, value in (('joint_pos', joint_pos), ('joint_vel', joint_vel)):
            if key in self.buffers:
                self.buffers[key].add(stamp, value)
        self._publish_if_due()

    def _on_object_state(self, msg: Float64MultiArray) -> None:
        expected = self.spec.obs_shapes['object_state']
        values = np.asarray(msg.data, dtype=np.float32)
        if list(values.shape) != list(expected):
            self.get_logger().warning(
                f'rejected /sim/object_state with {values.size} values; the checkpoint expects '
                f'shape {expected}', throttle_duration_sec=5.0)
            return
        self.buffers['object_state'].add(self.get_clock().now().nanoseconds, values)
        self._publish_if_due()

    def _image_callback(self, key: str) -> Callable[[Image], None]:
        expected = tuple(self.spec.obs_shapes[key])

        def on_image(msg: Image) -> None:
            try:
                rgb = msg_to_rgb(msg)
                if rgb.shape != expected:
                    raise ValueError(f'image is {rgb.shape[1]}x{rgb.shape[0]}; the checkpoint '
                                     f'expects {expected[1]}x{expected[0]} (width x height)')
            except ValueError as error:
                self.counts['rejected_images'] += 1
                self.get_logger().warning(f'rejected image on {self.sources[key]}: {error}',
                                          throttle_duration_sec=5.0)
                return
            self.buffers[key].add(self._stamp_or_now(stamp_to_ns(msg.header.stamp)), rgb)
            self._publish_if_due()
        return on_image

    def _on_goal(self, msg: PoseStamped) -> None:
        position = msg.pose.position
        self.goal = np.array([position.x, position.y, position.z], dtype=np.float32)
        self._publish_if_due()

    def _on_task_status(self, msg: DiagnosticStatus) -> None:
        episode = task_episode(msg)
        if episode is None or episode == self.episode:
            return
        if self.episode is not None:
            self.get_logger().info(f'episode {episode} started: observation history dropped')
        self.episode = episode
        for buffer in self.buffers.values():
            buffer.clear()
        self.last_context_ns = None

    # ------------------------------------------------------------------ output
    def _publish_if_due(self) -> None:
        newest = [buffer.newest_stamp for buffer in self.buffers.values()]
        if any(stamp is None for stamp in newest) or (self.spec.goal_dim and self.goal is None):
            return
        capture_ns = min(stamp for stamp in newest if stamp is not None)
        if (self.last_context_ns is not None
                and capture_ns - self.last_context_ns < self.min_interval_ns):
            return
        self.stale = self._stale_reasons()
        if self.stale:
            self.counts['held_back_stale'] += 1
            return
        history = align_history(self.buffers, self.spec.n_obs_steps, self.dt_ns)
        if history is None:
            return
        started = time.perf_counter()
        obs = {key: values[None] for key, values in history.observations.items()}
        context = self.policy.encode_observations(obs)[0]
        self.context_pub.publish(encode_context(
            context, self.goal if self.spec.goal_dim else None, history.stamp_ns,
            self.checkpoint_id))
        self.encode_ms.add(1e3 * (time.perf_counter() - started))
        self.last_context_ns = history.stamp_ns
        self.counts['contexts'] += 1
        if self.counts['contexts'] == 1:
            self.get_logger().info('first context published')

    def _stale_reasons(self) -> dict[str, str]:
        newest = {self.sources[key]: buffer.newest_stamp for key, buffer in self.buffers.items()}
        reasons = stale_reasons(newest, self.get_clock().now().nanoseconds,
                                self.stale_timeout_ns)
        if self.spec.goal_dim and self.goal is None:
            reasons['/goal'] = 'no goal received yet'
        return reasons

    def _publish_diagnostics(self) -> None:
        self.stale = self._stale_reasons()
        status = DiagnosticStatus(name=f'{NODE_NAME}: sensors', hardware_id=NODE_NAME)
        if self.stale:
            status.level = DiagnosticStatus.WARN
            status.message = 'stale or missing: ' + '; '.join(
                f'{name}: {reason}' for name, reason in sorted(self.stale.items()))
        else:
            status.level = DiagnosticStatus.OK
            status.message = 'publishing contexts'
        status.values = key_values(self.counts.items())
        status.values += key_values((f'stale {name}', reason)
                                    for name, reason in sorted(self.stale.items()))
        status.values += self.encode_ms.key_values('encode_ms')
        status.values += key_values([('checkpoint_id', self.checkpoint_id),
                                     ('episode', self.episode or ''),
                                     ('scheduling', self.scheduling),
                                     ('cpu_wakeup_latency', self.cpu_wakeup_latency)])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    """Run the perception node until shutdown; returns 2 for a bad parameter or checkpoint."""
    def run(node: PerceptionNode) -> None:
        node.scheduling = request_realtime(node, node.realtime_priority)
        node.cpu_wakeup_latency = hold_cpu_wakeup_latency(node, node.cpu_wakeup_latency_us)
        spin(node)

    return run_node_process(NODE_NAME, args, PerceptionNode, run,
                            (NodeConfigError, CheckpointError))
