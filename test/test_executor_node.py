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
The executor node over real rclpy/DDS, in lockstep with a simulated clock.

The executor runs in its own context (its own DDS participant) and thread with
``use_sim_time``; a probe node in the main thread owns ``/clock``. The probe advances the clock
by exactly one control period and waits for the command of that tick, so every command is paired
with the simulated time it was computed for, and timing properties (watchdog, seams) are checked
exactly in simulated time, never on the wall clock.
"""

import threading
import time
from typing import Callable

from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
import numpy as np
import pytest
import rclpy
from rcl_interfaces.msg import Log
from rclpy.context import Context
from rclpy.duration import Duration
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import SetBool
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dp_tt_ros.robot import (ARM_JOINTS, COMMAND_JOINTS, FINGER_JOINTS, HOME_POSITION,
                             PANDA_LIMITS)
from dp_tt_ros.ros.executor_node import (ExecutorConfigError, ExecutorNode, IMMEDIATE_LABEL,
                                         LoopStats)

RATE = 200.0
PERIOD_NS = 5_000_000
PERIOD = PERIOD_NS * 1e-9
START_NS = 10_000_000_000  # simulated time starts at 10 s
DT = 0.1
H = 16
VELOCITY = np.array([0.3, -0.2, 0.25, 0.2, -0.3, 0.2, 0.3, -0.01])


def stamp(seconds: float) -> Time:
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def chunk_msg(capture: float, points: np.ndarray, names=COMMAND_JOINTS,
              dt: float = DT) -> JointTrajectory:
    msg = JointTrajectory(joint_names=list(names))
    msg.header.stamp = stamp(capture)
    msg.points = [JointTrajectoryPoint(positions=[float(v) for v in row],
                                       time_from_start=Duration(seconds=(i + 1) * dt).to_msg())
                  for i, row in enumerate(points)]
    return msg


def line(start: float, times: np.ndarray, origin: np.ndarray = HOME_POSITION) -> np.ndarray:
    """Positions of a constant-velocity motion that leaves ``origin`` at time ``start``."""
    return origin[None, :] + (np.asarray(times)[:, None] - start) * VELOCITY[None, :]


class Probe(Node):
    """Owns /clock, feeds joint states, chunks and task status; records commands."""

    def __init__(self, context: Context) -> None:
        super().__init__('executor_probe', context=context)
        reliable = QoSProfile(depth=100)
        self.clock_pub = self.create_publisher(Clock, '/clock', 10)
        self.joint_state_pub = self.create_publisher(JointState, '/joint_states', 10)
        self.chunk_pub = self.create_publisher(JointTrajectory, '/policy/action_chunk', 10)
        self.status_pub = self.create_publisher(DiagnosticStatus, '/sim/task_status', 10)
        self.commands: list[np.ndarray] = []  # the grid: one command per control period
        self.immediate: list[tuple[int, np.ndarray]] = []  # (grid commands before, command)
        self.trajectories: list[JointTrajectory] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.logs: list[str] = []
        self.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                                 self._on_command, reliable)
        self.create_subscription(JointTrajectory, '/joint_trajectory_controller/joint_trajectory',
                                 self.trajectories.append, reliable)
        self.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append,
                                 reliable)
        self.create_subscription(Log, '/rosout', lambda msg: self.logs.append(msg.msg),
                                 reliable)
        self.enable_client = self.create_client(SetBool, '/executor/enable')
        self.spinner_ = SingleThreadedExecutor(context=context)
        self.spinner_.add_node(self)
        self.now_ns = START_NS
        self.chunks_handled: Callable[[], int] = lambda: 0
        self.times: list[float] = []  # simulated time of each entry in self.stream
        self.stream: list[np.ndarray] = []

    def _on_command(self, msg: Float64MultiArray) -> None:
        if [dim.label for dim in msg.layout.dim] == [IMMEDIATE_LABEL]:
            self.immediate.append((len(self.commands), np.array(msg.data)))
        else:
            self.commands.append(np.array(msg.data))

    @property
    def now(self) -> float:
        return self.now_ns * 1e-9

    def spin_until(self, done: Callable[[], bool], limit_s: float = 10.0) -> None:
        deadline = time.monotonic() + limit_s
        while not done():
            assert time.monotonic() < deadline, 'executor did not answer in time'
            self.spinner_.spin_once(timeout_sec=0.01)

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.spinner_.spin_once(timeout_sec=0.01)

    def publish_clock(self) -> None:
        self.clock_pub.publish(Clock(clock=stamp(self.now)))

    def send(self, msg: JointTrajectory | DiagnosticStatus) -> None:
        """Publish to the executor and wait until it has handled the message."""
        if isinstance(msg, JointTrajectory):
            handled = self.chunks_handled()
            self.chunk_pub.publish(msg)
            self.spin_until(lambda: self.chunks_handled() > handled)
        else:
            self.status_pub.publish(msg)
            self.spin_for(0.2)

    def step(self, ticks: int = 1) -> np.ndarray:
        """Advance the clock tick by tick; return the command computed for the last tick."""
        for _ in range(ticks):
            self.now_ns += PERIOD_NS
            count = len(self.commands)
            self.spin_until(lambda: self._republish_clock(count))
            assert len(self.commands) == count + 1, 'one command per control period'
            self.times.append(self.now)
            self.stream.append(self.commands[-1])
        return self.stream[-1]

    def _republish_clock(self, count: int) -> bool:
        """Publish the current time until a command arrives (/clock is best effort)."""
        self.publish_clock()
        end = time.monotonic() + 0.3
        while len(self.commands) == count and time.monotonic() < end:
            self.spinner_.spin_once(timeout_sec=0.005)
        return len(self.commands) > count

    def wait_for_log(self, fragment: str) -> None:
        """Wait until the executor logs a line containing ``fragment`` on /rosout."""
        self.spin_until(lambda: any(fragment in line for line in self.logs))

    def set_enabled(self, enabled: bool) -> SetBool.Response:
        assert self.enable_client.wait_for_service(timeout_sec=10.0)
        future = self.enable_client.call_async(SetBool.Request(data=enabled))
        self.spin_until(future.done)
        return future.result()

    def diagnostic_values(self) -> dict[str, str]:
        count = len(self.diagnostics)
        self.spin_until(lambda: len(self.diagnostics) > count)
        return {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}


class Harness:
    """An ExecutorNode in its own context and thread, plus a probe in another context."""

    def __init__(self, **parameters) -> None:
        self.executor_context, self.probe_context = Context(), Context()
        rclpy.init(context=self.executor_context)
        rclpy.init(context=self.probe_context)
        overrides = [Parameter('use_sim_time', value=True),
                     Parameter('diagnostics_period', value=0.2)]
        overrides += [Parameter(name, value=value) for name, value in parameters.items()]
        self.probe = Probe(self.probe_context)
        self.probe.publish_clock()
        self.node = ExecutorNode(context=self.executor_context, parameter_overrides=overrides)
        self.probe.chunks_handled = lambda: (self.node.counts()['chunks_accepted']
                                             + self.node.counts()['chunks_rejected'])
        self.spinner = SingleThreadedExecutor(context=self.executor_context)
        self.spinner.add_node(self.node)
        self.thread = threading.Thread(target=self.spinner.spin, daemon=True)
        self.thread.start()
        probe = self.probe
        probe.spin_until(lambda: all(pub.get_subscription_count() > 0 for pub in (
            probe.clock_pub, probe.joint_state_pub, probe.chunk_pub, probe.status_pub)))
        # Both sides must have discovered each other: a volatile publisher drops samples for
        # subscribers it has not matched yet, even when the subscriber already sees it.
        outputs = ('/forward_position_controller/commands' if parameters.get(
            'controller_mode', 'forward_position') == 'forward_position' else
            '/joint_trajectory_controller/joint_trajectory', '/diagnostics', '/rosout')
        probe.spin_until(lambda: all(self.node.count_subscribers(topic) > 0 for topic in outputs))
        probe.spin_until(self._clock_synchronised)

    def _clock_synchronised(self) -> bool:
        self.probe.publish_clock()
        self.probe.spin_for(0.02)
        return self.node.get_clock().now().nanoseconds == self.probe.now_ns

    def start_holding(self, position: np.ndarray = HOME_POSITION,
                      capture: float | None = None) -> None:
        """Give the executor a joint state (taken now, or at ``capture``) and wait for the hold."""
        msg = self._joint_state(position, capture)

        def holding() -> bool:
            # Joint states are best effort: the first ones may precede discovery.
            self.probe.joint_state_pub.publish(msg)
            self.probe.spin_for(0.02)
            return self.node.state() == 'holding'

        self.probe.spin_until(holding)
        np.testing.assert_allclose(self.probe.step(), position)

    def _joint_state(self, command: np.ndarray, capture: float | None = None) -> JointState:
        msg = JointState(name=list(ARM_JOINTS + FINGER_JOINTS))
        msg.header.stamp = stamp(self.probe.now if capture is None else capture)
        msg.position = [float(v) for v in command[:7]] + [float(command[7])] * 2
        return msg

    def close(self) -> None:
        self.node.close()
        self.spinner.shutdown()
        self.node.destroy_node()
        self.probe.destroy_node()
        rclpy.try_shutdown(context=self.executor_context)
        rclpy.try_shutdown(context=self.probe_context)
        self.thread.join(timeout=5.0)


@pytest.fixture
def harness_factory():
    harnesses: list[Harness] = []

    def make(**parameters) -> Harness:
        harnesses.append(Harness(**parameters))
        return harnesses[-1]

    yield make
    for harness in harnesses:
        harness.close()


def assert_within_limits(commands: list[np.ndarray]) -> None:
    values = np.array(commands)
    assert np.all(values >= PANDA_LIMITS.lower) and np.all(values <= PANDA_LIMITS.upper)
    steps = np.abs(np.diff(values, axis=0))
    assert np.all(steps <= PANDA_LIMITS.max_velocity * PERIOD + 1e-9)


def test_publishes_nothing_before_joint_states_then_holds_them(harness_factory):
    harness = harness_factory(control_rate=RATE)
    probe = harness.probe
    for _ in range(3):
        probe.now_ns += PERIOD_NS
        probe.publish_clock()
        probe.spin_for(0.05)
    assert probe.commands == []
    chunk = line(probe.now, probe.now + DT * np.arange(1, H + 1))
    probe.send(chunk_msg(probe.now, chunk))
    assert 'no /joint_states yet' in probe.diagnostic_values()['last_rejection']
    start = HOME_POSITION - 0.01
    harness.start_holding(start)
    for command in [probe.step() for _ in range(20)]:
        np.testing.assert_allclose(command, start)
    assert probe.diagnostic_values()['state'] == 'holding'


@pytest.mark.parametrize('blend', ['replace', 'crossfade', 'temporal_ensemble'])
def test_chunk_seams_with_latency_give_a_continuous_stream(harness_factory, blend):
    """A constant-velocity motion split into chunks, each 120 ms late, stays on the line."""
    harness = harness_factory(control_rate=RATE, blend=blend, exec_latency=0.02)
    probe = harness.probe
    harness.start_holding()
    start = probe.now
    for _ in range(5):
        capture = probe.now - 0.12  # the observation is 120 ms old when the chunk arrives
        rows = line(start, capture + DT * np.arange(1, H + 1))
        probe.send(chunk_msg(capture, rows))
        probe.step(20)  # the next chunk arrives 100 ms later, well within h = 8 rows
    times, commands = np.array(probe.times), np.array(probe.stream)
    steady = times >= start + 0.3  # after the first chunk's blend from the hold
    np.testing.assert_allclose(commands[steady], line(start, times[steady]), atol=1e-9)
    steps = np.abs(np.diff(commands[steady], axis=0))
    assert steps.max(axis=0) == pytest.approx(np.abs(VELOCITY) * PERIOD, rel=1e-6)
    assert_within_limits(probe.stream)
    values = probe.diagnostic_values()
    assert {'command_rate_hz', 'missed_ticks', 'state'} <= set(values)
    assert values['chunks_accepted'] == '5' and values['chunks_rejected'] == '0'
    assert int(values['points_dropped']) == 5  # the first row of each chunk was 20 ms late


def test_bad_chunks_are_rejected_logged_and_the_plan_kept(harness_factory):
    harness = harness_factory(control_rate=RATE, blend='replace')
    probe = harness.probe
    harness.start_holding()
    start = probe.now
    probe.send(chunk_msg(start, line(start, start + DT * np.arange(1, H + 1))))
    probe.step(4)
    nan_rows = line(start, start + DT * np.arange(1, H + 1))
    nan_rows[3, 2] = np.nan
    far = np.tile(HOME_POSITION, (H, 1))
    far[:, 0] = 5.0
    renamed = list(COMMAND_JOINTS[:7]) + ['panda_finger_joint1']
    bad = {
        'NaN/Inf': chunk_msg(probe.now, nan_rows),
        'outside its limits': chunk_msg(probe.now, far),
        'do not match the executor joints': chunk_msg(probe.now, far * 0 + HOME_POSITION,
                                                      names=renamed),
        'in the past': chunk_msg(probe.now - 3.0, np.tile(HOME_POSITION, (H, 1))),
        'time_from_start': chunk_msg(probe.now, np.tile(HOME_POSITION, (H, 1)), dt=0.0),
    }
    for reason, msg in bad.items():
        probe.send(msg)
        probe.wait_for_log(reason)
        probe.step(4)
    times, commands = np.array(probe.times), np.array(probe.stream)
    following = times >= start + 0.2
    np.testing.assert_allclose(commands[following], line(start, times[following]), atol=1e-9)
    values = probe.diagnostic_values()
    assert values['chunks_rejected'] == str(len(bad)) and values['chunks_accepted'] == '1'
    assert_within_limits(probe.stream)


def test_targets_slightly_outside_the_limits_are_clamped(harness_factory):
    harness = harness_factory(control_rate=RATE)
    probe = harness.probe
    harness.start_holding(PANDA_LIMITS.upper - 0.001)
    beyond = np.tile(PANDA_LIMITS.upper + 0.02 * (PANDA_LIMITS.upper - PANDA_LIMITS.lower),
                     (H, 1))
    probe.send(chunk_msg(probe.now, beyond))
    probe.step(60)
    np.testing.assert_allclose(probe.stream[-1], PANDA_LIMITS.upper)
    assert_within_limits(probe.stream)


def test_watchdog_holds_within_stale_timeout_plus_one_period(harness_factory):
    stale_timeout = 0.25
    harness = harness_factory(control_rate=RATE, stale_timeout=stale_timeout, exec_latency=0.0)
    probe = harness.probe
    harness.start_holding()
    start = probe.now
    for _ in range(3):
        probe.send(chunk_msg(probe.now, line(start, probe.now + DT * np.arange(1, H + 1))))
        last_chunk = probe.now
        probe.step(20)
    # The policy dies: its last chunk still covers 1.6 s of motion, but only 0.25 s is used.
    probe.step(int(round((stale_timeout + 0.2) / PERIOD)))
    times, commands = np.array(probe.times), np.array(probe.stream)
    moving = np.any(np.diff(commands, axis=0) != 0.0, axis=1)
    last_move = times[1:][moving].max()
    assert last_chunk + stale_timeout - PERIOD <= last_move <= last_chunk + stale_timeout + PERIOD
    assert probe.diagnostic_values()['state'] == 'stale_hold'
    probe.wait_for_log('holding position')
    # A fresh chunk resumes from the held position without a jump.
    probe.send(chunk_msg(probe.now, line(probe.now, probe.now + DT * np.arange(1, H + 1),
                                         origin=commands[-1])))
    probe.step(20)
    assert_within_limits(probe.stream)
    assert probe.diagnostic_values()['state'] == 'executing'


def test_enable_service_is_an_estop_that_holds_without_jumps(harness_factory):
    harness = harness_factory(control_rate=RATE)
    probe = harness.probe
    harness.start_holding()
    start = probe.now
    probe.send(chunk_msg(start, line(start, start + DT * np.arange(1, H + 1))))
    probe.step(20)
    response = probe.set_enabled(False)
    assert response.success and 'disabled' in response.message
    held = probe.step()
    for _ in range(10):
        np.testing.assert_array_equal(probe.step(), held)
    probe.send(chunk_msg(probe.now, line(start, probe.now + DT * np.arange(1, H + 1))))
    probe.wait_for_log('disabled')
    np.testing.assert_array_equal(probe.step(5), held)
    assert probe.diagnostic_values()['state'] == 'disabled'
    assert probe.set_enabled(True).success
    np.testing.assert_array_equal(probe.step(5), held)
    probe.send(chunk_msg(probe.now, line(start, probe.now + DT * np.arange(1, H + 1))))
    probe.step(40)
    assert not np.allclose(probe.stream[-1], held)
    assert_within_limits(probe.stream)


def test_new_episode_drops_the_plan_and_holds_the_reset_arm(harness_factory):
    harness = harness_factory(control_rate=RATE)
    probe = harness.probe
    status = DiagnosticStatus(name='task', values=[KeyValue(key='episode', value='0')])
    probe.send(status)
    harness.start_holding()
    old_capture = probe.now
    probe.send(chunk_msg(old_capture, line(old_capture, old_capture + DT * np.arange(1, H + 1))))
    probe.step(10)
    probe.send(DiagnosticStatus(name='task', values=[KeyValue(key='episode', value='1')]))
    probe.spin_until(lambda: harness.node.state() == 'waiting_for_joint_states')
    count = len(probe.commands)
    probe.now_ns += PERIOD_NS
    probe.publish_clock()
    probe.spin_for(0.1)
    assert len(probe.commands) == count, 'no command before the reset arm is measured'
    reset_position = HOME_POSITION + np.r_[np.full(7, -0.05), -0.02]
    # The bridge stamps the reset arm's state at the reset, a little before the status is taken.
    reset_capture = probe.now - 0.001
    harness.start_holding(reset_position, reset_capture)
    # A chunk the policy computed from an observation of the old episode must not run.
    probe.send(chunk_msg(reset_capture - 0.005, np.tile(HOME_POSITION, (H, 1))))
    probe.wait_for_log('0.005 s before episode 1 began')
    for _ in range(10):
        np.testing.assert_allclose(probe.step(), reset_position)
    # One computed from the reset arm's own joint state is the episode's first plan.
    rows = line(reset_capture, reset_capture + DT * np.arange(1, H + 1), reset_position)
    probe.send(chunk_msg(reset_capture, rows))
    moved = probe.step(10) - reset_position
    assert np.all(moved[:7] * VELOCITY[:7] > 0), moved


def test_joint_trajectory_mode_sends_the_remaining_plan_and_holds(harness_factory):
    harness = harness_factory(control_rate=RATE, controller_mode='joint_trajectory',
                              blend='replace', stale_timeout=0.3, exec_latency=0.02,
                              joints=list(reversed(COMMAND_JOINTS)))
    probe = harness.probe
    probe.spin_until(lambda: probe.joint_state_pub.publish(harness._joint_state(HOME_POSITION))
                     or len(probe.trajectories) == 1)  # the initial hold
    capture = probe.now - 0.05
    rows = line(probe.now, capture + DT * np.arange(1, H + 1))
    probe.send(chunk_msg(capture, rows))
    probe.spin_until(lambda: len(probe.trajectories) == 2)
    sent = probe.trajectories[-1]
    assert list(sent.joint_names) == list(reversed(COMMAND_JOINTS))
    assert sent.header.stamp == stamp(probe.now)
    offsets = [p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in sent.points]
    # Rows due at now + 0.05 > now + exec_latency stay: all H rows.
    np.testing.assert_allclose(offsets, 0.05 + DT * np.arange(H), atol=1e-9)
    positions = np.array([p.positions for p in sent.points])[:, ::-1]
    np.testing.assert_allclose(positions, rows, atol=1e-9)
    for _ in range(int(0.35 / 0.05)):
        probe.now_ns += 10 * PERIOD_NS
        probe.publish_clock()
        probe.spin_for(0.05)
    probe.spin_until(lambda: len(probe.trajectories) == 3)
    hold = probe.trajectories[-1]
    assert len(hold.points) == 1 and probe.commands == [] and probe.immediate == []


def advance_between_ticks(harness: Harness) -> None:
    """Move simulated time half a period past the last tick; the executor's clock follows."""
    probe = harness.probe
    probe.now_ns += PERIOD_NS // 2
    probe.spin_until(harness._clock_synchronised)


def test_immediate_command_on_chunk_arrival_is_filtered_and_keeps_the_grid(harness_factory):
    """A chunk between ticks is commanded at once, within the velocity budget; the grid stays."""
    harness = harness_factory(control_rate=RATE, blend='replace', exec_latency=0.0)
    probe = harness.probe
    harness.start_holding()
    last_tick = probe.now
    advance_between_ticks(harness)
    jump = np.zeros(8)
    jump[0], jump[1] = 1.0, 0.01  # joint 1 within its velocity limit, joint 0 far beyond
    probe.send(chunk_msg(probe.now, HOME_POSITION + np.tile(jump, (H, 1))))
    probe.spin_until(lambda: len(probe.immediate) == 1)
    grid_before, immediate = probe.immediate[0]
    assert grid_before == len(probe.commands)  # sent before the next tick, not with it
    # The next tick's target (replace: from the hold towards row 0, due one dt after capture),
    # stepped at most max_velocity * (time since the last tick).
    elapsed = probe.now - last_tick
    target_step = jump * (last_tick + PERIOD - probe.now) / DT
    budget = PANDA_LIMITS.max_velocity * elapsed
    np.testing.assert_allclose(immediate, HOME_POSITION + np.clip(target_step, -budget, budget),
                               atol=1e-12)
    assert abs(immediate[0] - HOME_POSITION[0]) == pytest.approx(budget[0])
    # The grid is not re-phased: the next command is the tick at last_tick + PERIOD, which may
    # move only the rest of the period's budget (a re-phased loop would not tick before
    # now + PERIOD, and step() would time out).
    probe.now_ns -= PERIOD_NS // 2
    tick = probe.step()
    assert probe.times[-1] == pytest.approx(last_tick + PERIOD)
    assert np.all(np.abs(tick - immediate) <= PANDA_LIMITS.max_velocity * (PERIOD - elapsed)
                  + 1e-12)
    probe.step(20)
    assert len(probe.immediate) == 1
    assert_within_limits(probe.stream)
    assert probe.diagnostic_values()['immediate_commands'] == '1'


def test_immediate_command_is_clamped_and_never_sent_for_a_rejected_chunk(harness_factory):
    harness = harness_factory(control_rate=RATE, exec_latency=0.0)
    probe = harness.probe
    start = PANDA_LIMITS.upper - 0.001
    harness.start_holding(start)
    advance_between_ticks(harness)
    beyond = PANDA_LIMITS.upper + 0.02 * (PANDA_LIMITS.upper - PANDA_LIMITS.lower)
    nan_rows = np.tile(start, (H, 1))
    nan_rows[0, 3] = np.nan
    probe.send(chunk_msg(probe.now, nan_rows))
    probe.wait_for_log('NaN/Inf')
    probe.send(chunk_msg(probe.now, np.tile(beyond, (H, 1))))
    probe.spin_until(lambda: len(probe.immediate) == 1)
    immediate = probe.immediate[0][1]
    assert np.all(immediate <= PANDA_LIMITS.upper) and immediate[0] == PANDA_LIMITS.upper[0]
    probe.step(5)
    assert len(probe.immediate) == 1
    assert_within_limits(probe.stream)


def test_bad_parameters_are_named():
    context = Context()
    rclpy.init(context=context)
    try:
        for name, value, message in (
                ('controller_mode', 'velocity', 'controller_mode'),
                ('blend', 'average', 'blend'),
                ('joints', list(COMMAND_JOINTS[:7]), 'exactly once'),
                ('max_velocity', [1.0] * 7, 'max_velocity'),
                ('position_lower', list(PANDA_LIMITS.upper), 'not below upper limit')):
            with pytest.raises(ExecutorConfigError, match=message):
                ExecutorNode(context=context, parameter_overrides=[Parameter(name, value=value)])
    finally:
        rclpy.try_shutdown(context=context)


def test_loop_stats_report_rate_and_period_jitter():
    stats = LoopStats(PERIOD)
    late = np.zeros(101)
    late[50] = 0.002  # one tick 2 ms late: two periods off by 2 ms
    for index in range(101):
        stats.ticks.append(10.0 + index * PERIOD + late[index])
    summary = stats.summary()
    assert summary['command_rate_hz'] == pytest.approx(RATE)
    assert summary['period_jitter_max_ms'] == pytest.approx(2.0)
    assert summary['period_jitter_p50_ms'] == pytest.approx(0.0, abs=1e-9)
    assert stats.summary() == {'command_rate_hz': 0.0}  # the window was consumed
