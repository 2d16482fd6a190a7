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
The PyBullet bridge: a simulated Panda behind the ROS interfaces of a ros2_control robot.

Physics advances in fixed steps from one loop that also serves ROS callbacks between steps, paced
against the wall clock by ``real_time_factor`` (0 = as fast as possible). With ``publish_clock``
the bridge is the graph's clock: it publishes ``/clock`` and stamps every message with simulated
time, which stays monotonic across episode resets. Sensors and the camera are published at their
own simulated-time rates, so an expensive render only delays the next step, it never skips one.

Besides the ros2_control-like interfaces the bridge plays the task's part: ``/goal``
(PoseStamped, with every task status) and ``/sim/object_state`` (Float64MultiArray, the task's
ground-truth object features, with every joint state) for low-dimensional policies.
"""

from __future__ import annotations

import math
import statistics
import time as walltime
from typing import Any, Callable

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
import numpy as np
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dp_tt_ros.control.trajectory import plan_trajectory, TimedTrajectory, TrajectoryRejected
from dp_tt_ros.robot import ARM_JOINTS, COMMAND_JOINTS, FINGER_JOINTS
from dp_tt_ros.ros.conversions import image_to_msg, seconds_to_stamp, stamp_to_seconds
from dp_tt_ros.ros.process import float_range, int_range, run_node_process
from dp_tt_ros.sim.world import PandaWorld

NODE_NAME = 'pybullet_bridge'
# When the loop falls this far behind its wall-clock schedule (a slow render, a stalled machine)
# it re-anchors instead of bursting through the backlog; the shortfall shows in the achieved RTF.
MAX_LAG_S = 0.25
GOAL_FRAME_ID = 'world'
# Running flat out (real_time_factor 0) or catching up, callbacks are served at most this often
# in wall time: one executor pass costs more than a physics step, so serving after every step
# would halve the step rate.
CATCH_UP_SERVE_PERIOD_S = 0.001


class BridgeConfigError(ValueError):
    """A parameter value the bridge cannot run with."""


class _SimSchedule:
    """Fires at a fixed period of simulated time; rate 0 never fires."""

    def __init__(self, rate_hz: float) -> None:
        self.period = 1.0 / rate_hz if rate_hz > 0 else math.inf
        self.next_time = 0.0 if rate_hz > 0 else math.inf

    def due(self, sim_time: float) -> bool:
        if sim_time + 1e-9 < self.next_time:
            return False
        self.next_time += self.period
        if self.next_time <= sim_time:
            self.next_time = sim_time + self.period
        return True


class _RateWindow:
    """Counts events and durations between two diagnostics messages."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.durations: dict[str, list[float]] = {}

    def count(self, name: str) -> None:
        self.counts[name] = self.counts.get(name, 0) + 1

    def duration(self, name: str, seconds: float) -> None:
        self.durations.setdefault(name, []).append(seconds)

    def clear(self) -> None:
        self.counts.clear()
        self.durations.clear()


# name -> (default, description, descriptor extras, changeable while running)
PARAMETERS: dict[str, tuple[object, str, dict, bool]] = {
    'task': ('reach', 'simulated task: reach, avoid, push or pick_place', {}, False),
    'seed': (0, 'seed of episode 0; each /sim/reset starts episode i with seed + i',
             int_range(0, 2**31 - 1), False),
    'gui': (False, "open PyBullet's window (headless when false)", {}, False),
    'paused': (False, 'hold physics and publishing (set to false to start the episode clock)',
               {}, True),
    'physics_hz': (240.0, 'fixed physics step rate in Hz',
                   float_range(10.0, 10000.0), False),
    'real_time_factor': (1.0, 'simulated seconds per wall second; 0 runs as fast as possible',
                         float_range(0.0, 1000.0), True),
    'publish_clock': (True, 'publish /clock and stamp messages with simulated time', {}, False),
    'clock_every_n_steps': (1, 'publish /clock after every n-th physics step',
                            int_range(1, 1000), False),
    'joint_state_rate': (100.0, '/joint_states rate in Hz of simulated time',
                         float_range(0.0, 10000.0), False),
    'camera_rate': (10.0, 'camera image and info rate in Hz of simulated time; 0 turns it off',
                    float_range(0.0, 1000.0), False),
    'camera_width': (96, 'camera image width in pixels',
                     int_range(8, 4096), False),
    'camera_height': (96, 'camera image height in pixels',
                      int_range(8, 4096), False),
    'camera_frame_id': ('camera_optical_frame', 'frame_id of camera messages', {}, False),
    'task_status_rate': (10.0, '/sim/task_status rate in Hz of simulated time',
                         float_range(0.0, 1000.0), False),
    'diagnostics_period': (1.0, 'wall seconds between /diagnostics messages',
                           float_range(0.05, 3600.0), False),
    'warn_throttle_period': (1.0, 'wall seconds between repeated rejected-command warnings',
                             float_range(0.0, 3600.0), False),
    'joints': (list(COMMAND_JOINTS), 'order of the values in /forward_position_controller/'
               'commands: the 7 arm joints and panda_gripper, each once', {}, False),
}


class BridgeNode(Node):
    """Owns one PandaWorld and exposes it as joint states, a camera and two controllers."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        for name, (default, description, extras, dynamic) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(
                description=description, read_only=not dynamic, **extras))
        value = self._parameter_values()
        self.joints: list[str] = list(value['joints'])
        if sorted(self.joints) != sorted(COMMAND_JOINTS):
            raise BridgeConfigError(f'parameter joints={self.joints} must list each of '
                                    f'{list(COMMAND_JOINTS)} exactly once')
        self.to_world_order = np.array([self.joints.index(j) for j in COMMAND_JOINTS])
        self.task: str = value['task']
        self.base_seed: int = value['seed']
        self.paused: bool = value['paused']
        self.real_time_factor: float = value['real_time_factor']
        self.publish_clock: bool = value['publish_clock']
        self.clock_every_n_steps: int = value['clock_every_n_steps']
        self.camera_size = (value['camera_width'], value['camera_height'])
        self.camera_frame_id: str = value['camera_frame_id']
        self.diagnostics_period: float = value['diagnostics_period']
        self.warn_throttle_period: float = value['warn_throttle_period']
        self.add_on_set_parameters_callback(self._on_set_parameters)

        try:
            self.world = PandaWorld(self.task, gui=value['gui'], physics_hz=value['physics_hz'],
                                    seed=self.base_seed)
        except ValueError as error:
            raise BridgeConfigError(f'parameter task={self.task!r}: {error}') from error
        self.physics_dt: float = self.world.physics_dt
        self.steps = 0
        self.episode = 0
        self.seed = self.base_seed
        self.trajectory: TimedTrajectory | None = None
        self.last_target: np.ndarray | None = None
        self.rejected_commands = 0

        self.joint_state_schedule = _SimSchedule(value['joint_state_rate'])
        self.camera_schedule = _SimSchedule(value['camera_rate'])
        self.status_schedule = _SimSchedule(value['task_status_rate'])
        self.window = _RateWindow()
        self.window_start = walltime.monotonic()
        self.window_sim_start = 0.0

        reliable = QoSProfile(depth=10)
        self.clock_pub = self.create_publisher(Clock, '/clock', QoSProfile(depth=1))
        self.joint_state_pub = self.create_publisher(JointState, '/joint_states', reliable)
        self.image_pub = self.create_publisher(Image, '/camera/image_raw', QoSProfile(depth=5))
        self.camera_info_pub = self.create_publisher(CameraInfo, '/camera/camera_info',
                                                     QoSProfile(depth=5))
        self.object_state_pub = self.create_publisher(Float64MultiArray, '/sim/object_state',
                                                      reliable)
        self.goal_pub = self.create_publisher(PoseStamped, '/goal', reliable)
        self.status_pub = self.create_publisher(DiagnosticStatus, '/sim/task_status', reliable)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', reliable)
        self.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                                 self._on_forward_command, reliable)
        self.create_subscription(JointTrajectory, '/joint_trajectory_controller/joint_trajectory',
                                 self._on_trajectory, reliable)
        self.create_service(Trigger, '/sim/reset', self._on_reset)
        self._publish_task_status()
        self.get_logger().info(
            f'{self.task} world ready (episode 0, seed {self.base_seed}, '
            f'{1.0 / self.physics_dt:.0f} Hz physics, real_time_factor {self.real_time_factor}, '
            f'{"sim time" if self.publish_clock else "wall time"}'
            f'{", paused" if self.paused else ""})')

    def _parameter_values(self) -> dict[str, object]:
        return {name: self.get_parameter(name).value for name in PARAMETERS}

    def _on_set_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        for parameter in parameters:
            if parameter.name == 'paused':
                self.paused = bool(parameter.value)
            elif parameter.name == 'real_time_factor':
                self.real_time_factor = float(parameter.value)
        return SetParametersResult(successful=True)

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        """Return the time commands and stamps refer to: simulated, or the node's clock."""
        if self.publish_clock:
            return self.steps * self.physics_dt
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ loop
    def spin(self, executor: Executor, should_stop: Callable[[], bool] = lambda: False) -> None:
        """Step physics at the paced rate, serving ROS callbacks between steps."""
        anchor_wall, anchor_steps = walltime.monotonic(), self.steps
        last_served = -math.inf
        while self.context.ok() and not should_stop():
            if self.paused:
                executor.spin_once(timeout_sec=0.05)
                self._publish_diagnostics_if_due()
                anchor_wall, anchor_steps = walltime.monotonic(), self.steps
                continue
            rtf = self.real_time_factor
            if rtf > 0.0:
                deadline = anchor_wall + (self.steps + 1 - anchor_steps) * self.physics_dt / rtf
                remaining = deadline - walltime.monotonic()
                while remaining > 0.0:
                    executor.spin_once(timeout_sec=remaining)
                    last_served = walltime.monotonic()
                    remaining = deadline - last_served
                if -remaining > MAX_LAG_S:
                    anchor_wall, anchor_steps = walltime.monotonic(), self.steps
            else:
                anchor_wall, anchor_steps = walltime.monotonic(), self.steps
            if walltime.monotonic() - last_served >= CATCH_UP_SERVE_PERIOD_S:
                executor.spin_once(timeout_sec=0.0)
                last_served = walltime.monotonic()
            if self.paused or not self.context.ok():
                continue
            if rtf != self.real_time_factor:
                anchor_wall, anchor_steps = walltime.monotonic(), self.steps
            self.step()

    def step(self) -> None:
        """Advance physics by one step and publish whatever is due at the new time."""
        if self.trajectory is not None:
            self._apply(self.trajectory.sample(self.now()))
        started = walltime.perf_counter()
        self.world.step_physics(1)
        self.window.duration('step', walltime.perf_counter() - started)
        self.steps += 1
        self.window.count('step')
        sim_time = self.steps * self.physics_dt
        if self.publish_clock and self.steps % self.clock_every_n_steps == 0:
            self.clock_pub.publish(Clock(clock=seconds_to_stamp(sim_time)))
            self.window.count('clock')
        if self.joint_state_schedule.due(sim_time):
            self._publish_joint_states()
        if self.camera_schedule.due(sim_time):
            self._publish_camera()
        if self.status_schedule.due(sim_time):
            self._publish_task_status()
        self._publish_diagnostics_if_due()

    # ------------------------------------------------------------------ commands
    def _apply(self, target: np.ndarray) -> None:
        """Send a target in ``joints`` order to the world, remembering it for trajectories."""
        self.last_target = target
        self.world.set_command(target[self.to_world_order])

    def _reject(self, interface: str, reason: str) -> None:
        self.rejected_commands += 1
        self.get_logger().warning(f'{interface}: dropped ({reason}); holding the last command',
                                  throttle_duration_sec=self.warn_throttle_period)

    def _on_forward_command(self, msg: Float64MultiArray) -> None:
        values = np.asarray(msg.data, dtype=float)
        if values.shape != (len(self.joints),):
            self._reject('forward_position_controller',
                         f'{values.size} values, expected {len(self.joints)} for {self.joints}')
            return
        if not np.all(np.isfinite(values)):
            self._reject('forward_position_controller', f'non-finite values {values.tolist()}')
            return
        self.trajectory = None
        self._apply(values)

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        now = self.now()
        position, velocity = self._measured_command_state()
        start = self.last_target if self.last_target is not None else position
        has_velocities = bool(msg.points) and all(len(p.velocities) > 0 for p in msg.points)
        try:
            self.trajectory = plan_trajectory(
                self.joints, list(msg.joint_names), stamp_to_seconds(msg.header.stamp),
                [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in msg.points],
                [p.positions for p in msg.points],
                [p.velocities for p in msg.points] if has_velocities else None,
                now, start, velocity)
        except TrajectoryRejected as error:
            self._reject('joint_trajectory_controller', str(error))
            return

    def _measured_command_state(self) -> tuple[np.ndarray, np.ndarray]:
        """Return the measured state as 8 command values (fingers averaged) in ``joints`` order."""
        names, position, velocity = self.world.joint_state()
        index = {name: i for i, name in enumerate(names)}
        fingers = [index[name] for name in FINGER_JOINTS]
        by_name = {name: (position[index[name]], velocity[index[name]]) for name in ARM_JOINTS}
        by_name[COMMAND_JOINTS[-1]] = (float(np.mean(position[fingers])),
                                       float(np.mean(velocity[fingers])))
        return (np.array([by_name[j][0] for j in self.joints]),
                np.array([by_name[j][1] for j in self.joints]))

    # ------------------------------------------------------------------ reset
    def _on_reset(self, request: Trigger.Request, response: Trigger.Response) -> Trigger.Response:
        self.episode += 1
        self.seed = self.base_seed + self.episode
        self.world.reset(self.seed)
        self.trajectory = None
        self.last_target = None
        self._publish_task_status()
        self._publish_joint_states()
        response.success = True
        response.message = f'episode {self.episode} seed {self.seed}'
        self.get_logger().info(f'reset: {response.message}')
        return response

    # ------------------------------------------------------------------ publishing
    def _stamp(self) -> Time:
        return seconds_to_stamp(self.now())

    def _publish_joint_states(self) -> None:
        names, position, velocity = self.world.joint_state()
        msg = JointState()
        msg.header.stamp = self._stamp()
        msg.name = list(names)
        msg.position = np.asarray(position, dtype=float).tolist()
        msg.velocity = np.asarray(velocity, dtype=float).tolist()
        self.joint_state_pub.publish(msg)
        self.object_state_pub.publish(Float64MultiArray(
            data=np.asarray(self.world.scene.object_state(), dtype=float).tolist()))
        self.window.count('joint_states')

    def _publish_camera(self) -> None:
        width, height = self.camera_size
        started = walltime.perf_counter()
        rgb = self.world.render(width, height)
        self.window.duration('render', walltime.perf_counter() - started)
        stamp = self._stamp()
        self.image_pub.publish(image_to_msg(rgb, stamp, self.camera_frame_id))
        intrinsics = self.world.camera_info(width, height)
        fx, fy, cx, cy = (float(intrinsics[key]) for key in ('fx', 'fy', 'cx', 'cy'))
        info = CameraInfo()
        info.header.stamp = stamp
        info.header.frame_id = self.camera_frame_id
        info.width, info.height = width, height
        info.distortion_model = 'plumb_bob'
        info.d = [0.0] * 5
        info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
        info.r = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
        info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
        self.camera_info_pub.publish(info)
        self.window.count('camera')

    def _publish_task_status(self) -> None:
        status = self.world.status()
        time_to_goal = status.time_to_goal
        values = {
            'episode': str(self.episode),
            'seed': str(self.seed),
            'success': str(bool(status.success)).lower(),
            'n_collisions': str(int(status.n_collisions)),
            'collision_time': f'{status.collision_time:.9f}',
            'elapsed': f'{status.elapsed:.9f}',
            'time_to_goal': '' if time_to_goal is None else f'{time_to_goal:.9f}',
            'reward': f'{status.reward:.6f}',
            'collision': str(bool(status.collision)).lower(),
        }
        goal = PoseStamped()
        goal.header.stamp = self._stamp()
        goal.header.frame_id = GOAL_FRAME_ID
        goal.pose.position.x, goal.pose.position.y, goal.pose.position.z = (
            float(value) for value in self.world.scene.goal)
        goal.pose.orientation.w = 1.0
        self.goal_pub.publish(goal)
        self.status_pub.publish(DiagnosticStatus(
            level=DiagnosticStatus.OK, name=f'{NODE_NAME}: task {self.task}',
            message=f'episode {self.episode} seed {self.seed}', hardware_id='pybullet',
            values=[KeyValue(key=key, value=value) for key, value in values.items()]))

    def _publish_diagnostics_if_due(self) -> None:
        now = walltime.monotonic()
        elapsed = now - self.window_start
        if elapsed < self.diagnostics_period:
            return
        sim_elapsed = self.steps * self.physics_dt - self.window_sim_start
        counts, durations = self.window.counts, self.window.durations
        values = {
            'real_time_factor': sim_elapsed / elapsed,
            'physics_steps_per_s': counts.get('step', 0) / elapsed,
            'clock_hz': counts.get('clock', 0) / elapsed,
            'joint_states_hz': counts.get('joint_states', 0) / elapsed,
            'camera_hz': counts.get('camera', 0) / elapsed,
            'step_ms_median': 1e3 * statistics.median(durations.get('step', [0.0])),
            'render_ms_median': 1e3 * statistics.median(durations.get('render', [0.0])),
        }
        lagging = (not self.paused and self.real_time_factor > 0.0
                   and values['real_time_factor'] < 0.9 * self.real_time_factor)
        status = DiagnosticStatus(
            level=DiagnosticStatus.WARN if lagging else DiagnosticStatus.OK,
            name=f'{NODE_NAME}: rates', hardware_id='pybullet',
            message=('paused' if self.paused else
                     f'real time factor {values["real_time_factor"]:.2f} of '
                     f'{self.real_time_factor:g} requested' if lagging else 'running'))
        status.values = [KeyValue(key=key, value=f'{value:.3f}') for key, value in values.items()]
        status.values += [KeyValue(key='episode', value=str(self.episode)),
                          KeyValue(key='sim_time', value=f'{self.steps * self.physics_dt:.3f}'),
                          KeyValue(key='rejected_commands', value=str(self.rejected_commands))]
        array = DiagnosticArray(status=[status])
        array.header.stamp = self._stamp()
        self.diagnostics_pub.publish(array)
        self.window.clear()
        self.window_start, self.window_sim_start = now, self.steps * self.physics_dt

    def close(self) -> None:
        """Disconnect from PyBullet."""
        self.world.close()


def main(args: list[str] | None = None) -> int:
    """Run the bridge until shutdown; returns 2 for a bad parameter value."""
    def run(node: BridgeNode) -> None:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        node.spin(executor)

    return run_node_process(NODE_NAME, args, BridgeNode, run, (BridgeConfigError,),
                            release=BridgeNode.close)
