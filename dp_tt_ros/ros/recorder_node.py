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
The recorder node: teleoperated or scripted demonstrations from live topics into an episode store.

It writes the same EpisodeStore layout as ``dp-tt-ros collect`` (diffusion_policy's ReplayBuffer:
``data/<key>``, ``meta/episode_ends``), so recorded demos train exactly like simulated ones:

* ``joint_pos`` / ``joint_vel`` from ``/joint_states`` (sensor-data QoS, training layout);
* one image key per entry of ``image_keys`` from the matching ``image_topics`` entry;
* ``goal`` from ``/goal`` (PoseStamped position) when ``record_goal``; ``object_state`` from
  ``/sim/object_state`` when ``record_object_state``;
* ``action`` from ``/forward_position_controller/commands`` (the 8 values in ``joints`` order,
  reordered to the robot's command order), plus ``reward`` (0) and ``success`` per step.

Steps are taken every ``control_dt`` of the node clock, one step behind: the step at time ``t``
holds every sensor's newest sample at or before ``t`` and, as its action, the newest command at or
before ``t + control_dt`` -- the target the robot was driven to over that control period, which is
what a scripted expert's action means in ``collect``. Steps where a sensor or the command is
missing or older than ``stale_timeout`` are skipped, so a stalled camera never leaves duplicated
frames in a demo.

Services: ``~/start_episode`` (std_srvs/Trigger), ``~/stop_episode`` (std_srvs/SetBool, ``data`` =
the demonstration succeeded) writes the episode, ``~/cancel_episode`` (Trigger) discards it.
Episodes are buffered in memory and appended in one ``add_episode`` call, which the store makes
crash-safe: a crash mid-episode loses that episode only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from sensor_msgs.msg import Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool, Trigger

from dp_tt_ros.data.episode_store import EpisodeStore, EpisodeStoreError
from dp_tt_ros.data.history import seconds_to_ns, StampedBuffer
from dp_tt_ros.robot import COMMAND_JOINTS
from dp_tt_ros.ros.context import (
    declare_parameters, joint_state_vectors, key_values, NodeConfigError, spin, stamp_to_ns)
from dp_tt_ros.ros.conversions import msg_to_rgb
from dp_tt_ros.ros.process import float_range, run_node_process

NODE_NAME = 'recorder'


PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    'store': ('', 'episode store path (.zarr); created if missing, appended to otherwise', {}),
    'task': ('teleop', 'task name written to the store attributes of a new store', {}),
    'control_dt': (0.1, 'seconds between recorded steps (the policies\' dt)',
                   float_range(0.001, 10.0)),
    'stale_timeout': (0.5, 'seconds after which a sensor or the command counts as stale',
                      float_range(0.001, 60.0)),
    'image_keys': (['image'], 'store keys of the recorded cameras (empty = no images)', {}),
    'image_topics': (['/camera/image_raw'], 'Image topic per entry of image_keys', {}),
    'record_goal': (True, 'record goal (3) from /goal', {}),
    'record_object_state': (False, 'record object_state from /sim/object_state', {}),
    'joints': (list(COMMAND_JOINTS), 'order of the values in the command topic', {}),
    'diagnostics_period': (1.0, 'seconds between /diagnostics messages',
                           float_range(0.05, 3600.0)),
}


class RecorderNode(Node):
    """Sample live topics on the control grid and append whole episodes to a store."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        params = declare_parameters(self, PARAMETERS)
        if not params['store']:
            raise NodeConfigError('parameter store is empty; expected the path of an episode '
                                  'store (.zarr) to create or append to')
        image_keys, image_topics = list(params['image_keys']), list(params['image_topics'])
        if len(image_keys) != len(image_topics):
            raise NodeConfigError(f'parameters image_keys={image_keys} and image_topics='
                                  f'{image_topics} must have the same length')
        joints = list(params['joints'])
        if sorted(joints) != sorted(COMMAND_JOINTS):
            raise NodeConfigError(f'parameter joints={joints} must list each of '
                                  f'{list(COMMAND_JOINTS)} exactly once')
        self.to_command_order = np.array([joints.index(name) for name in COMMAND_JOINTS])
        self.control_dt = params['control_dt']
        self.dt_ns = seconds_to_ns(self.control_dt)
        self.stale_ns = seconds_to_ns(params['stale_timeout'])
        keys = ['joint_pos', 'joint_vel', *image_keys]
        keys += ['object_state'] if params['record_object_state'] else []
        stored_keys = keys + ['action', 'reward', 'success'] + (
            ['goal'] if params['record_goal'] else [])
        self.store = self._open_store(Path(params['store']).expanduser(), params['task'],
                                      stored_keys)

        span = 2 * self.dt_ns + self.stale_ns
        self.buffers = {key: StampedBuffer[np.ndarray](span) for key in keys}
        self.action = StampedBuffer[np.ndarray](span)
        self.goal: np.ndarray | None = None
        self.record_goal = bool(params['record_goal'])
        self.steps: list[dict[str, np.ndarray]] | None = None
        self.counts = {'episodes_saved': 0, 'skipped_steps': 0, 'rejected_messages': 0}
        self.last_skip_reason = ''

        sensor = qos_profile_sensor_data
        self.create_subscription(JointState, '/joint_states', self._on_joint_state, sensor)
        for key, topic in zip(image_keys, image_topics):
            self.create_subscription(Image, topic, self._image_callback(key, topic), sensor)
        if self.record_goal:
            self.create_subscription(PoseStamped, '/goal', self._on_goal, QoSProfile(depth=1))
        if params['record_object_state']:
            self.create_subscription(Float64MultiArray, '/sim/object_state',
                                     self._on_object_state, sensor)
        self.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                                 self._on_command, QoSProfile(depth=10))
        self.create_service(Trigger, '~/start_episode', self._on_start)
        self.create_service(SetBool, '~/stop_episode', self._on_stop)
        self.create_service(Trigger, '~/cancel_episode', self._on_cancel)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics',
                                                     QoSProfile(depth=10))
        self.create_timer(self.control_dt, self._record_step)
        self.create_timer(params['diagnostics_period'], self._publish_diagnostics)
        self.get_logger().info(f'recording {keys + (["goal"] if self.record_goal else [])} + '
                               f'action every {self.control_dt:g} s into {params["store"]} '
                               f'({self.store.n_episodes} episodes so far)')

    def _open_store(self, path: Path, task: str, keys: list[str]) -> EpisodeStore:
        """Create the store, or open it and check now that our episodes will fit it."""
        if not path.exists():
            return EpisodeStore.create(path, attrs={'task': task, 'control_dt': self.control_dt,
                                                    'source': NODE_NAME})
        store = EpisodeStore.open(path, 'a')
        stored_dt = store.attrs.get('control_dt')
        if stored_dt is not None and abs(float(stored_dt) - self.control_dt) > 1e-9:
            raise NodeConfigError(f'store {path} was recorded with control_dt {stored_dt}; '
                                  f'parameter control_dt is {self.control_dt}')
        if store.n_episodes and (sorted(store.keys) != sorted(keys)
                                 or store.meta_keys != ['episode_success']):
            raise NodeConfigError(f'store {path} holds keys {sorted(store.keys)} and episode '
                                  f'values {store.meta_keys}; this recorder writes '
                                  f'{sorted(keys)} and [\'episode_success\'] (check '
                                  'image_keys, record_goal, record_object_state)')
        return store

    # ------------------------------------------------------------------ inputs
    def _reject(self, reason: str) -> None:
        self.counts['rejected_messages'] += 1
        self.get_logger().warning(reason, throttle_duration_sec=5.0)

    def _stamp_or_now(self, stamp_ns: int) -> int:
        return stamp_ns if stamp_ns else self.get_clock().now().nanoseconds

    def _on_joint_state(self, msg: JointState) -> None:
        try:
            joint_pos, joint_vel = joint_state_vectors(msg.name, msg.position, msg.velocity)
        except ValueError as error:
            self._reject(f'rejected /joint_states: {error}')
            return
        stamp = self._stamp_or_now(stamp_to_ns(msg.header.stamp))
        self.buffers['joint_pos'].add(stamp, joint_pos)
        self.buffers['joint_vel'].add(stamp, joint_vel)

    def _image_callback(self, key: str, topic: str) -> Callable[[Image], None]:
        def on_image(msg: Image) -> None:
            try:
                rgb = msg_to_rgb(msg)
            except ValueError as error:
                self._reject(f'rejected image on {topic}: {error}')
                return
            self.buffers[key].add(self._stamp_or_now(stamp_to_ns(msg.header.stamp)), rgb)
        return on_image

    def _on_goal(self, msg: PoseStamped) -> None:
        position = msg.pose.position
        self.goal = np.array([position.x, position.y, position.z], dtype=np.float32)

    def _on_object_state(self, msg: Float64MultiArray) -> None:
        self.buffers['object_state'].add(self.get_clock().now().nanoseconds,
                                         np.asarray(msg.data, dtype=np.float32))

    def _on_command(self, msg: Float64MultiArray) -> None:
        values = np.asarray(msg.data, dtype=np.float64)
        if values.shape != (len(COMMAND_JOINTS),) or not np.all(np.isfinite(values)):
            self._reject(f'rejected command with {values.size} values (expected '
                         f'{len(COMMAND_JOINTS)} finite values)')
            return
        self.action.add(self.get_clock().now().nanoseconds,
                        values[self.to_command_order].astype(np.float32))

    # ------------------------------------------------------------------ recording
    def _record_step(self) -> None:
        if self.steps is None:
            return
        end_ns = self.get_clock().now().nanoseconds
        step_ns = end_ns - self.dt_ns
        step: dict[str, np.ndarray] = {}
        sources: list[tuple[str, StampedBuffer[np.ndarray], int]] = [
            (key, buffer, step_ns) for key, buffer in self.buffers.items()]
        sources.append(('action', self.action, end_ns))
        for key, buffer, at_ns in sources:
            value = buffer.at_or_before(at_ns)
            newest = buffer.newest_stamp
            if value is None or newest is None or end_ns - newest > self.stale_ns:
                self._skip(f'{key} is missing or older than the stale timeout')
                return
            step[key] = value
        if self.record_goal:
            if self.goal is None:
                self._skip('no goal received yet')
                return
            step['goal'] = self.goal
        self.steps.append(step)
        self.last_skip_reason = ''

    def _skip(self, reason: str) -> None:
        self.counts['skipped_steps'] += 1
        self.last_skip_reason = reason
        self.get_logger().warning(f'step skipped: {reason}', throttle_duration_sec=5.0)

    def _on_start(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        if self.steps is not None:
            response.success = False
            response.message = (f'episode {self.store.n_episodes} is already recording '
                                f'({len(self.steps)} steps); stop or cancel it first')
            return response
        self.steps = []
        response.success = True
        response.message = f'recording episode {self.store.n_episodes}'
        self.get_logger().info(response.message)
        return response

    def _on_stop(self, request: SetBool.Request, response: SetBool.Response) -> SetBool.Response:
        if not self.steps:
            response.success = False
            response.message = ('no episode is recording' if self.steps is None else
                                'the episode has no steps yet (are sensors and commands '
                                f'arriving? last skip: {self.last_skip_reason or "none"})')
            return response
        steps, self.steps = self.steps, None
        episode = {key: np.stack([step[key] for step in steps]) for key in steps[0]}
        episode['reward'] = np.zeros(len(steps), np.float32)
        episode['success'] = np.zeros(len(steps), np.bool_)
        episode['success'][-1] = request.data
        index = self.store.n_episodes
        try:
            self.store.add_episode(episode, meta={'episode_success': bool(request.data)})
        except (EpisodeStoreError, OSError) as error:
            self.steps = steps
            response.success = False
            response.message = (f'could not write episode {index}: {error}; still recording, '
                                'call ~/cancel_episode to discard it')
            self.get_logger().error(response.message)
            return response
        self.counts['episodes_saved'] += 1
        response.success = True
        response.message = (f'saved episode {index} with {len(steps)} steps '
                            f'({"success" if request.data else "failure"})')
        self.get_logger().info(response.message)
        return response

    def _on_cancel(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        response.success = self.steps is not None
        response.message = ('discarded the recording' if self.steps is not None
                            else 'no episode is recording')
        self.steps = None
        return response

    def _publish_diagnostics(self) -> None:
        recording = self.steps is not None
        status = DiagnosticStatus(
            name=f'{NODE_NAME}: episodes', hardware_id=NODE_NAME, level=DiagnosticStatus.OK,
            message=(f'recording episode {self.store.n_episodes}' if recording else 'idle'))
        if recording and self.last_skip_reason:
            status.level = DiagnosticStatus.WARN
            status.message += f'; skipping steps: {self.last_skip_reason}'
        status.values = key_values([*self.counts.items(),
                                    ('recorded_steps', len(self.steps or [])),
                                    ('episodes_in_store', self.store.n_episodes)])
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    """Run the recorder until shutdown; returns 2 for a bad parameter or store."""
    return run_node_process(NODE_NAME, args, RecorderNode, spin,
                            (NodeConfigError, EpisodeStoreError))
