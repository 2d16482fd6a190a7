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
The executor node: action chunks in, a safe, time-aligned command stream out.

Chunks from ``/policy/action_chunk`` go into a :class:`~dp_tt_ros.control.plan.TimedPlan`
(time alignment, receding horizon, seam blending); every command passes the
:class:`~dp_tt_ros.control.safety.SafetyFilter`. The node itself only wires ROS to that core.

Threads: subscriptions and the ``~/enable`` service run on a single-threaded executor; the
control loop runs in its own thread with absolute deadlines (an rclpy timer would be dispatched
through the executor's Python wait loop, behind whatever callback is running). Both share the
plan under one lock held for microseconds. The loop follows ROS time: with ``use_sim_time`` its
ticks are deadlines on the ``/clock`` time line (a paused simulation gets no new commands), on
wall time it sleeps to deadlines on the monotonic clock and reads ROS time for the plan.

Behaviour worth knowing:

* Until the first ``/joint_states`` message nothing is published (there is no safe command
  before the arm's position is known); from then until the first chunk the measured position is
  held. Chunks before that are rejected.
* ``forward_position``: a Float64MultiArray in ``joints`` order every control period.
  With ``immediate_command`` an accepted chunk also sends one command at once, off the grid:
  the command the next tick would send (the plan at the next grid time), so a new chunk reaches
  the controller without waiting up to a period for the tick. It goes through the same
  SafetyFilter, with the velocity budget of the time since the last grid tick; the next tick
  gets the rest of the period's budget, so consecutive grid commands still move at most
  ``max_velocity * period`` and no command moves faster than the limit allows in the time since
  the previous one. None is sent when the tick is due anyway. The grid itself is never
  re-phased (the period jitter is that of the ticks), and an immediate command is labelled
  ``immediate`` in its (otherwise empty) layout so that a receiver can tell the two apart.
  ``joint_trajectory``: the plan's remaining points (safety-filtered) as one JointTrajectory per
  accepted chunk, and a one-point hold trajectory when the plan turns into a hold.
* Watchdog: when no valid chunk arrived for ``stale_timeout`` seconds the plan becomes a hold of
  the last command. ``~/enable`` false is the e-stop: the last command is held (and keeps being
  published in forward_position mode, so the arm stays put); chunks are rejected until it is
  enabled again, which resumes from the held command without a jump.
* When ``/sim/task_status`` reports a new ``episode`` the plan is dropped and the next joint
  state (the reset arm) is held; chunks stamped before that joint state are rejected, one
  computed from it is the episode's first plan.
* ``realtime_priority`` > 0 (config/executor.yaml: 50, as ros2_control's controller_manager)
  runs the control loop, and in ``main`` every thread of the process, under SCHED_FIFO; where
  that is not permitted the node warns and runs with the normal scheduler. On a loaded machine
  this is what keeps the period jitter low (see ``dp-tt-ros bench executor``).
  ``cpu_wakeup_latency_us`` 0 (config) keeps idle CPUs polling while the node runs, so that a
  tick or a chunk never waits for a CPU to come out of a deep idle state.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
from rclpy.clock import JumpThreshold
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data, QoSProfile
from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray, MultiArrayDimension
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dp_tt_ros.control.joints import measured_command, reorder_joints
from dp_tt_ros.control.plan import BLEND_MODES, ChunkVerdict, TimedPlan
from dp_tt_ros.control.safety import SafetyFilter
from dp_tt_ros.robot import COMMAND_JOINTS, JointLimits, PANDA_LIMITS
from dp_tt_ros.ros.conversions import seconds_to_stamp, stamp_to_seconds
from dp_tt_ros.ros.process import (
    CPU_WAKEUP_LATENCY_PARAMETER, hold_cpu_wakeup_latency, make_thread_realtime, request_realtime,
    run_node_process)

NODE_NAME = 'executor'
CONTROLLER_MODES = ('forward_position', 'joint_trajectory')
DT_TOLERANCE_S = 1e-6
STATS_WINDOW = 4000  # control ticks kept for the jitter statistics (20 s at 200 Hz)
IMMEDIATE_LABEL = 'immediate'  # layout label of an off-grid command sent on chunk arrival


class ExecutorConfigError(ValueError):
    """A parameter value the executor cannot run with."""


def _floats(low: float, high: float) -> dict:
    return {'floating_point_range': [FloatingPointRange(from_value=low, to_value=high,
                                                        step=0.0)]}


def _ints(low: int, high: int) -> dict:
    return {'integer_range': [IntegerRange(from_value=low, to_value=high, step=1)]}


# name -> (default, description, descriptor ranges); limits are declared after ``joints``.
PARAMETERS: dict[str, tuple[object, str, dict]] = {
    'controller_mode': ('forward_position', 'forward_position: Float64MultiArray stream at '
                        'control_rate; joint_trajectory: remaining points to a JTC', {}),
    'control_rate': (200.0, 'command rate in Hz (ROS time)', _floats(1.0, 2000.0)),
    'n_action_steps': (8, 'h: chunk rows executed before the continuation (rows h..H-1)',
                       _ints(1, 1000)),
    'exec_latency': (0.01, 'seconds: rows due before now + exec_latency are dropped',
                     _floats(0.0, 1.0)),
    'blend': ('crossfade', 'seam blending: replace, crossfade or temporal_ensemble', {}),
    'crossfade_steps': (2, 'crossfade length in chunk steps (dt each)', _ints(0, 1000)),
    'ensemble_decay': (0.1, 'temporal_ensemble weight exp(-decay * k), k = 0 the oldest chunk',
                       _floats(-10.0, 10.0)),
    'stale_timeout': (1.0, 'seconds without a valid chunk before the watchdog holds position',
                      _floats(0.001, 3600.0)),
    'out_of_limit_margin': (0.05, 'reject chunks further outside the position limits than '
                            'this fraction of the joint range (closer ones are clamped)',
                            _floats(0.0, 1.0)),
    'immediate_command': (True, 'forward_position: on accepting a chunk, send the next tick\'s '
                          'command at once (safety-filtered, off the control grid)', {}),
    'start_enabled': (True, 'start executing chunks without a ~/enable call', {}),
    'diagnostics_period': (1.0, 'wall seconds between /diagnostics messages',
                           _floats(0.05, 3600.0)),
    'realtime_priority': (0, 'SCHED_FIFO priority of the control loop and, when run as its own '
                          'process, of all its threads; 0 keeps the normal scheduler; without '
                          'CAP_SYS_NICE it warns and keeps it too', _ints(0, 99)),
    'cpu_wakeup_latency_us': CPU_WAKEUP_LATENCY_PARAMETER,
    'joints': (list(COMMAND_JOINTS), 'order of command values and of the limit arrays: the 7 '
               'arm joints and panda_gripper, each once', {}),
}
LIMIT_PARAMETERS: dict[str, tuple[np.ndarray, str]] = {
    'position_lower': (PANDA_LIMITS.lower, 'lower position limits in joints order (rad, m)'),
    'position_upper': (PANDA_LIMITS.upper, 'upper position limits in joints order (rad, m)'),
    'max_velocity': (PANDA_LIMITS.max_velocity, 'velocity limits in joints order (rad/s, m/s)'),
}


@dataclass(frozen=True)
class ExecutorSettings:
    """Checked parameter values."""

    joints: tuple[str, ...]
    controller_mode: str
    control_rate: float
    n_action_steps: int
    exec_latency: float
    blend: str
    crossfade_steps: int
    ensemble_decay: float
    stale_timeout: float
    out_of_limit_margin: float
    immediate_command: bool
    start_enabled: bool
    diagnostics_period: float
    realtime_priority: int
    cpu_wakeup_latency_us: int
    limits: JointLimits


def chunk_from_msg(msg: JointTrajectory) -> tuple[float, float, list[str], np.ndarray]:
    """
    Return ``(stamp, dt, joint_names, points)`` of an action chunk message.

    The contract is point ``i`` at ``time_from_start = (i + 1) * dt``; anything else is refused
    with a ValueError rather than silently re-timed.
    """
    names = list(msg.joint_names)
    if not msg.points:
        raise ValueError('chunk has no points')
    sizes = {len(point.positions) for point in msg.points}
    if sizes != {len(names)}:
        raise ValueError(f'chunk points have {sorted(sizes)} positions for {len(names)} '
                         f'joint names')
    offsets = np.array([point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
                        for point in msg.points])
    dt = float(offsets[0])
    expected = dt * np.arange(1, len(offsets) + 1)
    if dt <= 0.0 or np.max(np.abs(offsets - expected)) > DT_TOLERANCE_S:
        raise ValueError(f'time_from_start must be (i + 1) * dt with dt > 0, got '
                         f'{offsets[:4].round(6).tolist()}...')
    points = np.array([point.positions for point in msg.points], dtype=float)
    return stamp_to_seconds(msg.header.stamp), dt, names, points


def task_status_episode(status: DiagnosticStatus) -> str | None:
    """Return the ``episode`` key-value of a ``/sim/task_status`` message, if present."""
    return next((item.value for item in status.values if item.key == 'episode'), None)


class LoopStats:
    """Tick times of the control loop (on its own time line), for rate and jitter diagnostics."""

    def __init__(self, period_s: float) -> None:
        self.period_s = period_s
        self.ticks: deque[float] = deque(maxlen=STATS_WINDOW)
        self.missed = 0

    def summary(self) -> dict[str, float]:
        """Rate and period jitter (|period - nominal|) over the ticks since the last call."""
        ticks = np.array(self.ticks)
        self.ticks.clear()
        if ticks.size < 2:
            return {'command_rate_hz': 0.0}
        periods = np.diff(ticks)
        jitter_ms = 1e3 * np.abs(periods - self.period_s)
        return {'command_rate_hz': float(periods.size / (ticks[-1] - ticks[0])),
                'period_jitter_p50_ms': float(np.percentile(jitter_ms, 50)),
                'period_jitter_p99_ms': float(np.percentile(jitter_ms, 99)),
                'period_jitter_max_ms': float(jitter_ms.max())}


class ExecutorNode(Node):
    """Streams the time-aligned plan to a position or trajectory controller."""

    def __init__(self, **node_kwargs) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.settings = self._read_parameters()
        settings = self.settings
        self.joints = list(settings.joints)
        self.period_s = 1.0 / settings.control_rate
        self.period_ns = int(round(1e9 / settings.control_rate))
        self.sim_time = bool(self.get_parameter('use_sim_time').value)
        self.plan = TimedPlan(settings.limits, n_action_steps=settings.n_action_steps,
                              exec_latency=settings.exec_latency, blend=settings.blend,
                              crossfade_steps=settings.crossfade_steps,
                              ensemble_decay=settings.ensemble_decay,
                              out_of_limit_margin=settings.out_of_limit_margin)
        self.safety = SafetyFilter(settings.limits, self.period_s)

        self._lock = threading.Lock()
        # Held from computing a forward_position command to publishing it, by the tick and by
        # an immediate command alike, so commands leave in the order they were computed.
        self._send_lock = threading.Lock()
        self._command: np.ndarray | None = None
        self._tick_time = -math.inf  # ROS time of the last grid tick
        self._budget_used = 0.0  # s of this period's velocity budget spent by immediate commands
        self._enabled = settings.start_enabled
        self._executing = False  # following chunks (not holding)
        self._stale = False
        self._last_chunk_time = -math.inf
        self._episode: str | None = None
        self._episode_start: float | None = -math.inf
        self._counts = {'chunks_accepted': 0, 'chunks_rejected': 0, 'points_dropped': 0,
                        'stale_events': 0, 'immediate_commands': 0}
        self._last_rejection = ''
        self._announced_hold = False
        self._stats = LoopStats(self.period_s)
        self._scheduling = 'normal'
        self.cpu_wakeup_latency = 'system setting'  # what main's hold_cpu_wakeup_latency got

        reliable = QoSProfile(depth=10)
        forward = settings.controller_mode == 'forward_position'
        self._immediate = forward and settings.immediate_command
        self._command_pub = (
            self.create_publisher(Float64MultiArray, '/forward_position_controller/commands',
                                  reliable) if forward else None)
        self._trajectory_pub = (
            None if forward else self.create_publisher(
                JointTrajectory, '/joint_trajectory_controller/joint_trajectory', reliable))
        self._diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', reliable)
        # Created first, so that of messages waiting together the episode change is taken
        # first: the bridge publishes it before the reset arm's joint state.
        self.create_subscription(DiagnosticStatus, '/sim/task_status', self._on_task_status,
                                 reliable)
        self.create_subscription(JointState, '/joint_states', self._on_joint_state,
                                 qos_profile_sensor_data)
        self.create_subscription(JointTrajectory, '/policy/action_chunk', self._on_chunk,
                                 reliable)
        self.create_service(SetBool, '~/enable', self._on_enable)

        self._stop = threading.Event()
        self._clock_moved = threading.Event()
        self._jump_handle = None
        if self.sim_time:
            self._jump_handle = self.get_clock().create_jump_callback(
                JumpThreshold(min_forward=Duration(nanoseconds=1), min_backward=None,
                              on_clock_change=True),
                post_callback=lambda _jump: self._clock_moved.set())
        self._thread = threading.Thread(target=self._run_loop, name='executor-control',
                                        daemon=True)
        self._thread.start()
        self.get_logger().info(
            f'{settings.controller_mode} at {settings.control_rate:g} Hz of '
            f'{"simulated" if self.sim_time else "wall"} time, h={settings.n_action_steps}, '
            f'blend {settings.blend}, exec_latency {settings.exec_latency:g} s, '
            f'{"immediate commands on chunk arrival, " if self._immediate else ""}'
            f'stale_timeout {settings.stale_timeout:g} s, '
            f'{"enabled" if self._enabled else "disabled until ~/enable"}; waiting for '
            f'/joint_states')

    # ------------------------------------------------------------------ parameters
    def _read_parameters(self) -> ExecutorSettings:
        for name, (default, description, extras) in PARAMETERS.items():
            self.declare_parameter(name, default, ParameterDescriptor(
                description=description, read_only=True, **extras))
        value = {name: self.get_parameter(name).value for name in PARAMETERS}
        joints = list(value['joints'])
        if sorted(joints) != sorted(COMMAND_JOINTS):
            raise ExecutorConfigError(f'parameter joints={joints} must list each of '
                                      f'{list(COMMAND_JOINTS)} exactly once')
        if value['controller_mode'] not in CONTROLLER_MODES:
            raise ExecutorConfigError(f'parameter controller_mode='
                                      f'{value["controller_mode"]!r} must be one of '
                                      f'{list(CONTROLLER_MODES)}')
        if value['blend'] not in BLEND_MODES:
            raise ExecutorConfigError(f'parameter blend={value["blend"]!r} must be one of '
                                      f'{list(BLEND_MODES)}')
        order = [COMMAND_JOINTS.index(name) for name in joints]
        arrays = {}
        for name, (default, description) in LIMIT_PARAMETERS.items():
            self.declare_parameter(name, default[order].tolist(), ParameterDescriptor(
                description=description, read_only=True))
            values = np.asarray(self.get_parameter(name).value, dtype=float)
            if values.shape != (len(joints),) or not np.all(np.isfinite(values)):
                raise ExecutorConfigError(f'parameter {name}={values.tolist()} must be '
                                          f'{len(joints)} finite numbers in joints order '
                                          f'{joints}')
            arrays[name] = values
        limits = JointLimits(tuple(joints), arrays['position_lower'], arrays['position_upper'],
                             arrays['max_velocity'])
        try:
            SafetyFilter(limits, 1.0 / value['control_rate'])
        except ValueError as error:
            raise ExecutorConfigError(f'joint limit parameters: {error}') from error
        return ExecutorSettings(
            joints=tuple(joints), controller_mode=value['controller_mode'],
            control_rate=value['control_rate'], n_action_steps=value['n_action_steps'],
            exec_latency=value['exec_latency'], blend=value['blend'],
            crossfade_steps=value['crossfade_steps'], ensemble_decay=value['ensemble_decay'],
            stale_timeout=value['stale_timeout'],
            out_of_limit_margin=value['out_of_limit_margin'],
            immediate_command=value['immediate_command'], start_enabled=value['start_enabled'],
            diagnostics_period=value['diagnostics_period'],
            realtime_priority=value['realtime_priority'],
            cpu_wakeup_latency_us=value['cpu_wakeup_latency_us'], limits=limits)

    # ------------------------------------------------------------------ time
    def now(self) -> float:
        """Return ROS time in seconds: simulated with use_sim_time, system time otherwise."""
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ callbacks
    def _on_joint_state(self, msg: JointState) -> None:
        try:
            measured = measured_command(msg.name, msg.position, self.joints)
        except ValueError as error:
            self.get_logger().warning(f'/joint_states ignored: {error}',
                                      throttle_duration_sec=5.0)
            return
        if not np.all(np.isfinite(measured)):
            self.get_logger().warning(f'/joint_states ignored: non-finite {measured.tolist()}',
                                      throttle_duration_sec=5.0)
            return
        with self._lock:
            if self._command is not None:
                return
            now = self.now()
            self._command = measured
            self.plan.hold(measured, now)
            self._executing = False
            if self._episode_start is None:
                self._episode_start = stamp_to_seconds(msg.header.stamp) or now
        self._send_hold(measured)
        # An info line from this real-time process, just as perception takes the same joint
        # state, delayed perception by about 0.5 ms (bench ros): only the first hold gets one;
        # later ones, after each episode reset, show as state 'holding' on /diagnostics.
        log = self.get_logger().debug if self._announced_hold else self.get_logger().info
        self._announced_hold = True
        log(f'holding the measured position {np.round(measured, 4).tolist()}')

    def _on_chunk(self, msg: JointTrajectory) -> None:
        trajectory = None
        try:
            stamp, dt, names, points = chunk_from_msg(msg)
            points = reorder_joints(names, points, self.joints)
        except ValueError as error:
            verdict = ChunkVerdict(False, str(error))
        else:
            with self._send_lock:
                verdict, trajectory = self._add_chunk(stamp, dt, points)
        with self._lock:
            self._counts['points_dropped'] += verdict.n_dropped
            self._counts['chunks_accepted' if verdict.accepted else 'chunks_rejected'] += 1
            if not verdict.accepted:
                self._last_rejection = verdict.reason
        if not verdict.accepted:
            self.get_logger().warning(f'chunk rejected: {verdict.reason}; keeping the current '
                                      f'plan')
        elif trajectory is not None:
            self._trajectory_pub.publish(trajectory)

    def _add_chunk(self, stamp: float, dt: float, points: np.ndarray
                   ) -> tuple[ChunkVerdict, JointTrajectory | None]:
        """Merge a chunk into the plan (send lock held); return the verdict and a JTC goal."""
        trajectory = immediate = None
        with self._lock:
            now = self.now()
            if not self._enabled:
                verdict = ChunkVerdict(False, 'executor is disabled (~/enable)')
            elif self._command is None:
                verdict = ChunkVerdict(False, 'no /joint_states yet: the start position is '
                                       'unknown')
            elif self._episode_start is not None and stamp < self._episode_start:
                verdict = ChunkVerdict(False, f'stamped {self._episode_start - stamp:.3f} s '
                                       f'before episode {self._episode} began')
            else:
                verdict = self.plan.add_chunk(stamp, dt, points, now)
            if verdict.accepted:
                self._executing, self._stale = True, False
                self._last_chunk_time = now
                if self._trajectory_pub is not None:
                    trajectory = self._remaining_trajectory(now)
                elif self._immediate and self._tick_time < now < self._tick_time + self.period_s:
                    # Not when the tick is due anyway, nor at the tick's own time (no budget).
                    immediate = self._immediate_command(now)
        if immediate is not None:
            self._publish_command(immediate, immediate=True)
        return verdict, trajectory

    def _immediate_command(self, now: float) -> np.ndarray:
        """
        Return the next tick's command as far as the time since the last tick allows (locked).

        The velocity budget spent here is taken from the next tick's, so the grid stream keeps
        its per-period bound however many chunks arrive in between.
        """
        budget = max(now - self._tick_time - self._budget_used, 0.0)
        self._command = self.safety.filter(self.plan.target(self._tick_time + self.period_s),
                                           self._command, budget)
        self._budget_used += budget
        self._counts['immediate_commands'] += 1
        return self._command

    def _on_task_status(self, msg: DiagnosticStatus) -> None:
        episode = task_status_episode(msg)
        if episode is None or episode == self._episode:
            return
        with self._lock:
            first = self._episode is None
            self._episode = episode
            if first:
                return
            self._episode_start = None  # the stamp of the reset arm's joint state, once held
            self.plan.clear()
            self._command = None
            self._executing = self._stale = False
        self.get_logger().info(f'episode {episode}: plan dropped, waiting for the reset arm\'s '
                               f'joint state')

    def _on_enable(self, request: SetBool.Request, response: SetBool.Response
                   ) -> SetBool.Response:
        with self._lock:
            self._enabled = bool(request.data)
            now = self.now()
            command = self._command
            if command is not None:
                self.plan.hold(command, now)
            self._executing = self._stale = False
        state = 'enabled' if request.data else 'disabled (e-stop): holding position'
        self.get_logger().warning(f'executor {state}')
        if command is not None:
            self._send_hold(command)
        response.success = True
        response.message = state
        return response

    # ------------------------------------------------------------------ control loop
    def _run_loop(self) -> None:
        # Like ros2_control's controller_manager: ask for SCHED_FIFO, warn if refused.
        self._scheduling = make_thread_realtime(self.settings.realtime_priority)
        if self._scheduling.startswith('normal ('):
            self.get_logger().warning(f'realtime_priority {self.settings.realtime_priority}: '
                                      f'{self._scheduling}; the control loop keeps it')
        next_diagnostics = time.monotonic() + self.settings.diagnostics_period
        wait = self._wait_sim_tick if self.sim_time else self._wait_wall_tick
        deadline: int | None = None
        while not self._stop.is_set():
            deadline, due = wait(deadline)
            if due:
                self._tick()
            if time.monotonic() >= next_diagnostics:
                next_diagnostics += self.settings.diagnostics_period
                self._publish_diagnostics()

    def _wait_wall_tick(self, deadline: int | None) -> tuple[int, bool]:
        """Sleep to the next absolute deadline on the monotonic clock (ns); skip missed ones."""
        now = time.monotonic_ns()
        if deadline is None:
            return now + self.period_ns, False
        if deadline > now:
            self._stop.wait((deadline - now) * 1e-9)
            now = time.monotonic_ns()
            if now < deadline:
                return deadline, False
        missed = (now - deadline) // self.period_ns
        self._stats.missed += int(missed)
        return deadline + (missed + 1) * self.period_ns, True

    def _wait_sim_tick(self, deadline: int | None) -> tuple[int, bool]:
        """Wait until ROS time passes the next deadline on the period grid (ns)."""
        self._clock_moved.clear()
        now = self.get_clock().now().nanoseconds
        if deadline is None or now < deadline - 2 * self.period_ns:  # start or time reset
            return (now // self.period_ns + 1) * self.period_ns, False
        if now < deadline:
            self._clock_moved.wait(0.1)
            return deadline, False
        missed = (now - deadline) // self.period_ns
        self._stats.missed += int(missed)
        return deadline + (missed + 1) * self.period_ns, True

    def _tick(self) -> None:
        with self._send_lock:
            command, stale = self._grid_command()
            if command is not None and self._command_pub is not None:
                self._publish_command(command, immediate=False)
        if stale:
            self.get_logger().warning(f'no valid chunk for {self.settings.stale_timeout:g} s: '
                                      f'holding position')
            self._send_hold(command)

    def _grid_command(self) -> tuple[np.ndarray | None, bool]:
        """Compute this tick's command (send lock held); return it and whether it went stale."""
        stale = False
        with self._lock:
            if self._command is None:
                return None, False
            now = self.now()
            if self._enabled:
                if self._executing and now - self._last_chunk_time > self.settings.stale_timeout:
                    self.plan.hold(self._command, now)
                    self._executing, self._stale = False, True
                    self._counts['stale_events'] += 1
                    stale = True
                self._command = self.safety.filter(self.plan.target(now), self._command,
                                                   self.period_s - self._budget_used)
            self._tick_time, self._budget_used = now, 0.0
            command = self._command
        self._stats.ticks.append(now if self.sim_time else time.monotonic())
        return command, stale

    # ------------------------------------------------------------------ output helpers
    def _publish_command(self, command: np.ndarray, immediate: bool) -> None:
        msg = Float64MultiArray()
        if immediate:
            size = len(command)
            msg.layout.dim = [MultiArrayDimension(label=IMMEDIATE_LABEL, size=size, stride=size)]
        msg.data = command.tolist()
        self._command_pub.publish(msg)

    def _remaining_trajectory(self, now: float) -> JointTrajectory:
        """Safety-filtered remaining plan as a JTC trajectory starting now (lock held)."""
        times, points = self.plan.remaining(now)
        filtered = self.safety.filter_trajectory(self._command, now, times, points)
        return self._trajectory(now, times - now, filtered)

    def _trajectory(self, now: float, offsets: Sequence[float],
                    points: np.ndarray) -> JointTrajectory:
        msg = JointTrajectory()
        msg.header.stamp = seconds_to_stamp(now)
        msg.joint_names = list(self.joints)
        msg.points = [JointTrajectoryPoint(positions=row.tolist(),
                                           time_from_start=Duration(seconds=offset).to_msg())
                      for offset, row in zip(offsets, points)]
        return msg

    def _send_hold(self, command: np.ndarray) -> None:
        """
        In joint_trajectory mode, make the controller hold ``command`` (a one-point goal).

        The goal is stamped 0 ("start on arrival"): a hold stamped ``now`` that ends one period
        later would already lie in the past after any delivery delay, and a JTC rejects it.
        """
        if self._trajectory_pub is not None:
            self._trajectory_pub.publish(self._trajectory(0.0, [self.period_s], command[None]))

    def counts(self) -> dict[str, int]:
        """Return the chunk counters published on /diagnostics (accepted, rejected, ...)."""
        with self._lock:
            return dict(self._counts)

    def state(self) -> str:
        """Return what the executor is doing: the ``state`` value of its diagnostics."""
        with self._lock:
            return self._state(self.now())

    def _state(self, now: float) -> str:
        if not self._enabled:
            return 'disabled'
        if self._command is None:
            return 'waiting_for_joint_states'
        if self._executing:
            return 'continuation' if self.plan.in_continuation(now) else 'executing'
        return 'stale_hold' if self._stale else 'holding'

    def _publish_diagnostics(self) -> None:
        now = self.now()
        with self._lock:
            values: dict[str, object] = dict(self._counts)
            values['state'] = self._state(now)
            values['last_rejection'] = self._last_rejection
            values['episode'] = self._episode or ''
        values.update(self._stats.summary())
        values['missed_ticks'] = self._stats.missed
        values.update(controller_mode=self.settings.controller_mode,
                      control_rate=self.settings.control_rate, blend=self.settings.blend,
                      time_source='sim' if self.sim_time else 'wall',
                      loop_scheduling=self._scheduling,
                      cpu_wakeup_latency=self.cpu_wakeup_latency)
        level = DiagnosticStatus.OK
        if values['state'] in ('stale_hold', 'continuation', 'disabled'):
            level = DiagnosticStatus.WARN
        status = DiagnosticStatus(
            level=level, name=f'{NODE_NAME}: command stream', hardware_id=self.get_name(),
            message=str(values['state']),
            values=[KeyValue(key=key, value=f'{value:.4g}' if isinstance(value, float)
                             else str(value)) for key, value in values.items()])
        msg = DiagnosticArray(status=[status])
        msg.header.stamp = self.get_clock().now().to_msg()
        self._diagnostics_pub.publish(msg)

    def close(self) -> None:
        """Stop the control thread (before destroy_node, so it never publishes on a dead node)."""
        self._stop.set()
        self._clock_moved.set()
        self._thread.join(timeout=5.0)
        if self._jump_handle is not None:
            self._jump_handle.unregister()
            self._jump_handle = None


def main(args: list[str] | None = None) -> int:
    """Run the executor until shutdown; returns 2 for a bad parameter value."""
    # Wake the control thread promptly when a callback holds the GIL (default switch is 5 ms).
    sys.setswitchinterval(0.0005)

    def run(node: ExecutorNode) -> None:
        executor = SingleThreadedExecutor()
        executor.add_node(node)
        request_realtime(node, node.settings.realtime_priority)
        node.cpu_wakeup_latency = hold_cpu_wakeup_latency(node,
                                                          node.settings.cpu_wakeup_latency_us)
        executor.spin()

    return run_node_process(NODE_NAME, args, ExecutorNode, run, (ExecutorConfigError,),
                            release=ExecutorNode.close)
