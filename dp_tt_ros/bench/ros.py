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
``dp-tt-ros bench ros``: observation capture to first command, through the real node graph.

The perception, policy and executor nodes run as separate processes, exactly as ``dp-tt-ros
sim`` starts them (same parameter files, wall time). This process stands in for the robot: it
publishes ``/joint_states`` (and a goal, object state and camera frame when the checkpoint
observes them) and listens to the executor's command topic: the 200 Hz
``/forward_position_controller/commands`` stream, or with ``--controller-mode joint_trajectory``
the goals it sends a JTC when a chunk is accepted.

One trial:

1. publish a new ``/sim/task_status`` episode: perception, policy and executor drop their state,
   so the executor will hold the next measured position and nothing from earlier is in flight;
2. after a settling pause publish one observation captured now (``t_capture``), the arm at the
   home pose;
3. the executor holds that pose until the chunk conditioned on this observation arrives; the
   first command received after the chunk that differs from the hold is the first command caused
   by the observation (``t_command``);
4. overhead = ``t_command - t_capture - inference``, where inference is the policy's own
   ``act()`` time for this chunk, reported on ``/policy/timing``.

The overhead therefore contains every DDS hop (sensor to perception, context to policy, chunk to
executor, command to this process), perception's encoding and the policy node's hand-off to
its inference thread. In forward_position mode the executor's ``immediate_command`` (on in
config/executor.yaml) sends the next tick's command as soon as it accepts the chunk; with it
off (``--no-immediate-command``), the overhead also holds the wait for the next control tick (0
to 5 ms at 200 Hz). The result counts how many first commands were such immediate ones. A JTC
goal leaves as soon as the executor accepts the chunk, so that mode has no tick wait either.
Components are reported too, from the policy's receive/publish stamps (all clocks are this
machine's system clock).

With ``--stream-hz F`` the probe instead streams the observation at F Hz throughout, as a
robot's joint_state_broadcaster does, so no process idles between trials (an rclpy hop costs
several times more after a quarter second of silence than after a few milliseconds). A trial is
then the first chunk published after the episode change; it counts only if its observation was
captured after that change and no other chunk came before it, so every command it is timed by
was caused by it.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import PoseStamped
import numpy as np
from tqdm import tqdm

from dp_tt_ros.bench.common import (machine_info, robot_realtime_priority, summarize,
                                    write_json)
from dp_tt_ros.cli import CommandError
from dp_tt_ros.paths import config_dir
from dp_tt_ros.robot import ARM_JOINTS, FINGER_JOINTS, HOME_POSITION
from dp_tt_ros.ros.executor_node import IMMEDIATE_LABEL
from dp_tt_ros.ros.graph import COMMAND_TOPICS, CONTROLLER_MODES
from dp_tt_ros.ros.perception_node import NODE_NAME as PERCEPTION_NODE
from dp_tt_ros.ros.process import make_thread_realtime

TARGET_P99_MS = 5.0
ENCODE_KEY = 'encode_ms'  # the perception node's /diagnostics summary of encode + publish
DIAGNOSTICS_WAIT_S = 3.0
MODE_NOTES = {
    'forward_position': 'forward_position at {rate:g} Hz: with the executor\'s '
                        'immediate_command on, the first command is sent when the chunk is '
                        'accepted (see first_command_immediate); off, the overhead includes the '
                        'wait for the next control tick (0 to one period)',
    'joint_trajectory': 'joint_trajectory: the JTC goal is sent when the chunk is accepted, '
                        'and its first point is the command',
}
GRAPH_NODES = ('perception', 'policy', 'executor')
# Diagnostics keys where the nodes say which scheduler their process (or loop) runs under.
SCHEDULING_KEYS = ('scheduling', 'loop_scheduling')
CPU_WAKEUP_KEY = 'cpu_wakeup_latency'
START_TIMEOUT_S = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--checkpoint', default='', metavar='DIR',
                        help='checkpoint directory (default: the shipped models/'
                             '<policy-type>_<task>)')
    parser.add_argument('--policy-type', default='diffusion',
                        choices=('diffusion', 'transformer', 'bc'))
    parser.add_argument('--task', default='reach', help='task of the default checkpoint')
    parser.add_argument('--trials', type=int, default=100, metavar='N',
                        help='measured observation -> command trials')
    parser.add_argument('--warmup-trials', type=int, default=3, metavar='N',
                        help='trials run first and not measured')
    parser.add_argument('--settle', type=float, default=0.25, metavar='S',
                        help='seconds between the episode change and the observation')
    parser.add_argument('--trial-timeout', type=float, default=10.0, metavar='S',
                        help='seconds to wait for the first command of a trial')
    parser.add_argument('--control-rate', type=float, default=200.0, metavar='HZ',
                        help="executor command rate")
    parser.add_argument('--controller-mode', default='forward_position', choices=CONTROLLER_MODES,
                        help='executor output: a forward_position stream at --control-rate, or a '
                             'JointTrajectory sent to a JTC when each chunk is accepted')
    parser.add_argument('--stream-hz', type=float, default=0.0, metavar='HZ',
                        help='stream the observation at this rate the whole time, as a robot '
                             'does (default 0: one observation per trial after --settle)')
    parser.add_argument('--no-immediate-command', dest='immediate_command', action='store_false',
                        help="forward_position: turn the executor's immediate_command off, so "
                             'the first command waits for the next control tick')
    parser.add_argument('--realtime-priority', type=int, default=None, metavar='P',
                        help="SCHED_FIFO priority of this process, the robot stand-in that "
                             'publishes observations and receives commands; 0 = normal '
                             "scheduling (default: config/executor.yaml's realtime_priority, as "
                             'a ros2_control controller_manager runs)')


class _Probe:
    """The robot stand-in: publishes observations and times the executor's commands."""

    def __init__(self, spec: Any, controller_mode: str, realtime_priority: int) -> None:
        import rclpy
        from rclpy.node import Node
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import Image, JointState
        from std_msgs.msg import Float64MultiArray
        from trajectory_msgs.msg import JointTrajectory

        self.spec = spec
        # The graph's processes are already started with their own config; the threads created
        # below (DDS, spin, streamer) inherit this thread's policy.
        self.scheduling = make_thread_realtime(realtime_priority)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node('bench_ros_probe', context=self.context)
        reliable = QoSProfile(depth=10)
        node = self.node
        self.joint_pub = node.create_publisher(JointState, '/joint_states', reliable)
        self.status_pub = node.create_publisher(DiagnosticStatus, '/sim/task_status', reliable)
        self.goal_pub = node.create_publisher(PoseStamped, '/goal', reliable)
        self.object_pub = node.create_publisher(Float64MultiArray, '/sim/object_state', reliable)
        self.image_pub = node.create_publisher(Image, '/camera/image_raw', reliable)
        self.lock = threading.Lock()
        self.commands: list[tuple[int, np.ndarray, bool]] = []  # (receipt, command, immediate)
        self.timings: dict[int, dict[str, int]] = {}
        self.command_topic = COMMAND_TOPICS[controller_mode]
        if controller_mode == 'forward_position':
            node.create_subscription(Float64MultiArray, self.command_topic,
                                     self._on_command, QoSProfile(depth=1000))
        else:
            node.create_subscription(JointTrajectory, self.command_topic,
                                     self._on_trajectory, QoSProfile(depth=1000))
        node.create_subscription(DiagnosticStatus, '/policy/timing', self._on_timing,
                                 QoSProfile(depth=100))
        self.perception_encode_ms: dict[str, float] = {}
        self.node_scheduling: dict[str, str] = {}
        self.node_cpu_wakeup_latency: dict[str, str] = {}
        node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                 QoSProfile(depth=100))
        from rclpy.executors import SingleThreadedExecutor
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on_command(self, msg: Any) -> None:
        received = time.time_ns()
        immediate = [dim.label for dim in msg.layout.dim] == [IMMEDIATE_LABEL]
        with self.lock:
            self.commands.append((received, np.asarray(msg.data, dtype=np.float64), immediate))

    def _on_trajectory(self, msg: Any) -> None:
        """Record a JTC goal as the command its first point asks for."""
        received = time.time_ns()
        if msg.points:
            with self.lock:
                self.commands.append((received, np.asarray(msg.points[0].positions,
                                                           dtype=np.float64), False))

    def _on_timing(self, msg: DiagnosticStatus) -> None:
        values = {item.key: int(item.value) for item in msg.values}
        with self.lock:
            self.timings[values['capture_stamp_ns']] = values

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        """Keep the nodes' scheduling and the perception node's latest encode time summary."""
        for status in msg.status:
            for item in status.values:
                if item.key in SCHEDULING_KEYS:
                    with self.lock:
                        self.node_scheduling[status.hardware_id] = item.value
                elif item.key == CPU_WAKEUP_KEY:
                    with self.lock:
                        self.node_cpu_wakeup_latency[status.hardware_id] = item.value
            if status.hardware_id == PERCEPTION_NODE:
                summary = {item.key[len(ENCODE_KEY) + 1:]: float(item.value)
                           for item in status.values if item.key.startswith(ENCODE_KEY + '_')}
                if summary:
                    with self.lock:
                        self.perception_encode_ms = summary

    def graph_ready(self) -> bool:
        node = self.node
        return (self.joint_pub.get_subscription_count() >= 2
                and self.status_pub.get_subscription_count() >= 3
                and node.count_publishers('/policy/action_chunk') >= 1
                and node.count_publishers(self.command_topic) >= 1)

    def new_episode(self, episode: int) -> None:
        # Earlier commands cannot be this trial's; scanning them would load this process.
        with self.lock:
            self.commands.clear()
        self.status_pub.publish(DiagnosticStatus(name='bench ros', values=[
            KeyValue(key='episode', value=str(episode)), KeyValue(key='seed', value='0')]))

    def publish_observation(self) -> int:
        """Publish one observation captured now at the home pose; return its stamp (ns)."""
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        from dp_tt_ros.ros.context import ns_to_stamp
        from dp_tt_ros.ros.conversions import image_to_msg

        spec = self.spec
        if spec.goal_dim:
            goal = PoseStamped()
            goal.pose.position.x, goal.pose.position.y, goal.pose.position.z = 0.5, 0.0, 0.3
            self.goal_pub.publish(goal)
        if 'object_state' in spec.obs_shapes:
            size = int(np.prod(spec.obs_shapes['object_state']))
            self.object_pub.publish(Float64MultiArray(data=[0.0] * size))
        capture_ns = time.time_ns()
        stamp = ns_to_stamp(capture_ns)
        for key in spec.image_keys:
            height, width, _ = spec.obs_shapes[key]
            self.image_pub.publish(image_to_msg(np.full((height, width, 3), 128, np.uint8),
                                                stamp, 'camera'))
        joints = JointState(name=list(ARM_JOINTS + FINGER_JOINTS))
        joints.header.stamp = stamp
        joints.position = HOME_POSITION[:7].tolist() + [float(HOME_POSITION[7])] * 2
        joints.velocity = [0.0] * 9
        self.joint_pub.publish(joints)
        return capture_ns

    def first_capture_after(self, reset_ns: int) -> int | None:
        """
        Return the capture stamp of the first chunk published after ``reset_ns``, if valid.

        Valid means its observation came after the episode change; otherwise the trial is
        contaminated by a chunk of the previous episode and ``-1`` is returned.
        """
        with self.lock:
            later = [timing for timing in self.timings.values()
                     if timing['published_ns'] > reset_ns]
        if not later:
            return None
        first = min(later, key=lambda timing: timing['published_ns'])
        return first['capture_stamp_ns'] if first['capture_stamp_ns'] > reset_ns else -1

    def first_command(self, capture_ns: int) -> tuple[int, bool] | None:
        """
        Return receipt time and immediacy of the first command caused by this observation.

        That is the first command differing from the hold received after the policy published
        the chunk (its own clock, this machine's). Bounding by this process's receipt of the
        chunk instead would race a JTC goal that the executor sends faster than the chunk
        reaches this process.
        """
        with self.lock:
            timing = self.timings.get(capture_ns)
            if timing is None:
                return None
            hold = HOME_POSITION
            for received, command, immediate in self.commands:
                if received > timing['published_ns'] and command.shape == hold.shape and np.max(
                        np.abs(command - hold)) > 1e-9:
                    return received, immediate
        return None

    def close(self) -> None:
        self.executor.shutdown()
        self.thread.join()
        self.node.destroy_node()
        import rclpy
        rclpy.shutdown(context=self.context)
        if self.scheduling.startswith('SCHED_FIFO'):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def _wait(condition: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


def _start_graph(checkpoint: Path, policy_type: str, args: argparse.Namespace,
                 log_dir: Path) -> dict[str, tuple[subprocess.Popen, Path]]:
    common = ['-p', 'use_sim_time:=false']
    extra = {
        'perception': ['-p', f'checkpoint:={checkpoint}', '-p', f'policy_type:={policy_type}'],
        'policy': ['-p', f'checkpoint:={checkpoint}', '-p', f'policy_type:={policy_type}',
                   '-p', 'publish_timing:=true', '-p', 'autostart:=true'],
        'executor': ['-p', f'control_rate:={args.control_rate}',
                     '-p', f'controller_mode:={args.controller_mode}',
                     '-p', f'immediate_command:={str(args.immediate_command).lower()}'],
    }
    processes = {}
    for name in GRAPH_NODES:
        arguments = ['--ros-args']
        params_file = config_dir() / f'{name}.yaml'
        if params_file.is_file():
            arguments += ['--params-file', str(params_file)]
        log_path = log_dir / f'{name}.log'
        log = open(log_path, 'w')
        processes[name] = (subprocess.Popen(
            [sys.executable, '-m', 'dp_tt_ros', 'node', name, *arguments, *common,
             *extra[name]], stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy()),
            log_path)
        log.close()
    return processes


def _stop_graph(processes: dict[str, tuple[subprocess.Popen, Path]]) -> None:
    for process, _ in processes.values():
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
    for process, _ in processes.values():
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _dead_node(processes: dict[str, tuple[subprocess.Popen, Path]]) -> str | None:
    for name, (process, log_path) in processes.items():
        if process.poll() is not None:
            tail = log_path.read_text()[-2000:]
            return f'node {name} exited with status {process.returncode}:\n{tail}'
    return None


def run(args: argparse.Namespace) -> int:
    import torch
    torch.set_num_threads(1)
    from dp_tt_ros.policies.checkpoint import CheckpointError, load_policy
    from dp_tt_ros.ros.context import resolve_checkpoint

    if args.trials < 1:
        raise CommandError(f'--trials must be >= 1, got {args.trials}')
    if not 0.0 <= args.stream_hz <= 1000.0:
        raise CommandError(f'--stream-hz must be 0 (off) .. 1000, got {args.stream_hz}')
    args.realtime_priority = robot_realtime_priority(args.realtime_priority)
    try:
        checkpoint = resolve_checkpoint(args.checkpoint, args.policy_type, args.task).resolve()
        spec = load_policy(checkpoint).spec
    except (CheckpointError, ValueError) as error:
        raise CommandError(f'{error}; pass --checkpoint DIR of a trained or saved policy')

    with tempfile.TemporaryDirectory(prefix='bench_ros_') as log_dir:
        processes = _start_graph(checkpoint, args.policy_type, args, Path(log_dir))
        probe = _Probe(spec, args.controller_mode, args.realtime_priority)
        try:
            if not _wait(lambda: probe.graph_ready() or _dead_node(processes) is not None,
                         START_TIMEOUT_S) or _dead_node(processes):
                raise CommandError(_dead_node(processes)
                                   or f'the graph did not come up within {START_TIMEOUT_S} s')
            stop = threading.Event()
            streamer = threading.Thread(target=_stream, args=(probe, args.stream_hz, stop),
                                        daemon=True)
            if args.stream_hz:
                streamer.start()
            try:
                samples = _run_trials(probe, args, processes)
                # The perception node summarises its encode time once per diagnostics period.
                _wait(lambda: bool(probe.perception_encode_ms), DIAGNOSTICS_WAIT_S)
            finally:
                stop.set()
                if args.stream_hz:
                    streamer.join()
        finally:
            probe.close()
            _stop_graph(processes)
        if not samples:
            tails = '\n'.join(f'--- {name}:\n' + log_path.read_text()[-1500:]
                              for name, (_, log_path) in processes.items())
            raise CommandError(f'no trial produced a command ({len(probe.timings)} chunks timed); '
                               f'node logs:\n{tails}')

    overhead = [s['overhead_ms'] for s in samples]
    result = {
        'benchmark': 'ros',
        'method': ('per trial: new episode on /sim/task_status, then one observation captured at '
                   't_capture; t_command = receipt here of the first executor command after the '
                   'chunk for that observation that differs from the held position; overhead = '
                   't_command - t_capture - pure inference time of that chunk (policy act() '
                   'time from /policy/timing). Perception, policy and executor run as separate '
                   'processes with their config files, wall time, so the overhead includes 4 '
                   "DDS hops, perception encoding and the policy's hand-off to its inference "
                   'thread; ' + MODE_NOTES[args.controller_mode].format(rate=args.control_rate)
                   + (f'; observation streamed at {args.stream_hz:g} Hz the whole time, a trial '
                      'is the first chunk published after the episode change (counted only if '
                      'its observation came after the change)' if args.stream_hz else '')),
        'controller_mode': args.controller_mode,
        'checkpoint': str(checkpoint),
        'policy_type': args.policy_type,
        'observations': sorted(spec.obs_shapes),
        'stream_hz': args.stream_hz,
        'trials': args.trials,
        'completed_trials': len(samples),
        'overhead_ms': summarize(overhead),
        'target_p99_ms': TARGET_P99_MS,
        'meets_target': summarize(overhead)['p99'] <= TARGET_P99_MS,
        'inference_ms': summarize([s['inference_ms'] for s in samples]),
        'end_to_end_ms': summarize([s['end_to_end_ms'] for s in samples]),
        'components_ms': {
            'capture_to_policy_receive': summarize([s['perception_ms'] for s in samples]),
            'policy_handoff_and_publish': summarize([s['policy_overhead_ms'] for s in samples]),
            'chunk_publish_to_first_command': summarize([s['executor_ms'] for s in samples]),
        },
        'perception_encode_and_publish_ms': probe.perception_encode_ms,
        'executor_control_rate_hz': args.control_rate,
        'immediate_command': args.immediate_command,
        'first_command_immediate': sum(s['immediate'] for s in samples),
        'probe_scheduling': probe.scheduling,
        'node_scheduling': probe.node_scheduling,
        'node_cpu_wakeup_latency': probe.node_cpu_wakeup_latency,
        'command': ' '.join(['dp-tt-ros', 'bench', 'ros', *sys.argv[3:]]),
        'machine': machine_info(),
    }
    write_json(result, args.json)
    return 0


def _stream(probe: _Probe, rate_hz: float, stop: threading.Event) -> None:
    """Publish the observation at ``rate_hz`` on a fixed schedule until ``stop`` is set."""
    period = 1.0 / rate_hz
    next_time = time.monotonic()
    while not stop.is_set():
        probe.publish_observation()
        next_time += period
        stop.wait(max(0.0, next_time - time.monotonic()))


def _run_trials(probe: _Probe, args: argparse.Namespace,
                processes: dict[str, tuple[subprocess.Popen, Path]]) -> list[dict[str, float]]:
    samples = []
    total = args.warmup_trials + args.trials
    for trial in tqdm(range(total), desc='bench ros', unit='trial'):
        if args.stream_hz:
            time.sleep(args.settle)
            reset_ns = time.time_ns()
            probe.new_episode(trial + 1)
            _wait(lambda: probe.first_capture_after(reset_ns) is not None, args.trial_timeout)
            capture_ns = probe.first_capture_after(reset_ns) or -1
        else:
            probe.new_episode(trial + 1)
            time.sleep(args.settle)
            capture_ns = probe.publish_observation()
        seen = capture_ns > 0 and _wait(lambda: probe.first_command(capture_ns) is not None,
                                        args.trial_timeout)
        dead = _dead_node(processes)
        if dead:
            raise CommandError(dead)
        if not seen or trial < args.warmup_trials:
            continue
        command_ns, immediate = probe.first_command(capture_ns)
        timing = probe.timings[capture_ns]
        inference_ns = timing['inference_ns']
        samples.append({
            'overhead_ms': (command_ns - capture_ns - inference_ns) / 1e6,
            'end_to_end_ms': (command_ns - capture_ns) / 1e6,
            'inference_ms': inference_ns / 1e6,
            'perception_ms': (timing['received_ns'] - capture_ns) / 1e6,
            'policy_overhead_ms': (timing['published_ns'] - timing['received_ns']
                                   - inference_ns) / 1e6,
            'executor_ms': (command_ns - timing['published_ns']) / 1e6,
            'immediate': immediate,
        })
    return samples
