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
``dp-tt-ros bench executor``: command rate and period jitter of the executor at 200 Hz.

The real executor node runs in its own process (``dp-tt-ros node executor`` with
``config/executor.yaml``, wall time). This process plays the robot: it publishes
``/joint_states`` at 100 Hz and timestamps every command on arrival. A policy process
publishes chunks at 10 Hz, each stamped 50 ms before publication as if its observation had been
taken then, with rows on a slow sinusoid around the home pose, so the executor drops late rows,
blends seams and interpolates the whole time. Two phases are measured back to back:

* ``idle``: only the chunks;
* ``inference``: the same chunks while the policy process also runs policy inference back to
  back (the shipped ``models/diffusion_reach`` Diffusion Policy, or ``--checkpoint``, on a zero
  observation, with torch's default thread count, i.e. every core). The chunk rows stay
  scripted so that the motion is the same in both phases: the load is the real computation,
  the chunks are what a 10 Hz policy sends.

Period jitter is ``|t_i - t_{i-1} - 1/rate|`` between consecutive grid commands as received
here, so it includes DDS delivery and this subscriber's own scheduling: an upper bound on what
the controller sees. With ``immediate_command`` (config/executor.yaml) the executor also sends one
off-grid command when it accepts a chunk; those carry the ``immediate`` layout label, are left
out of the period statistics (they are not periods of the 200 Hz stream) and are counted
separately, per phase and per accepted chunk. The executor's own loop-side figures from
``/diagnostics`` are reported too.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from dp_tt_ros.bench.common import (machine_info, robot_realtime_priority, summarize,
                                    write_json)
from dp_tt_ros.cli import CommandError
from dp_tt_ros.paths import config_dir, models_dir
from dp_tt_ros.robot import ARM_JOINTS, COMMAND_JOINTS, FINGER_JOINTS, HOME_POSITION
from dp_tt_ros.ros.executor_node import IMMEDIATE_LABEL
from dp_tt_ros.ros.process import make_thread_realtime

TARGET_P99_MS = 2.0
START_TIMEOUT_S = 60.0
JOINT_STATE_RATE = 100.0
CHUNK_DT = 0.1
CHUNK_HORIZON = 16
CHUNK_RATE_HZ = 10.0
CHUNK_AGE_S = 0.05  # capture-to-publication time the scripted chunks pretend to have
# Scripted chunk rows: centre, amplitude (rad, m) and period (s) of a sinusoid per joint.
WAVE_CENTER = np.append(HOME_POSITION[:7], 0.03)
WAVE_AMPLITUDE = np.array([0.3, 0.2, 0.3, 0.2, 0.3, 0.2, 0.3, 0.005])
WAVE_PERIOD_S = 4.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--duration', type=float, default=20.0, metavar='S',
                        help='seconds measured per phase (default 20)')
    parser.add_argument('--quick', action='store_true',
                        help='3 s per phase: a smoke test, not a measurement')
    parser.add_argument('--control-rate', type=float, default=200.0, metavar='HZ',
                        help='executor command rate (default 200)')
    parser.add_argument('--blend', default='crossfade',
                        choices=('replace', 'crossfade', 'temporal_ensemble'))
    parser.add_argument('--checkpoint', default='', metavar='DIR',
                        help='policy whose inference is the load (default: the shipped '
                             'models/diffusion_reach when present, else a U-Net built from '
                             '--down-dims and --inference-steps)')
    parser.add_argument('--down-dims', default='64,128,256',
                        help='U-Net widths of the built load (default 64,128,256)')
    parser.add_argument('--inference-steps', type=int, default=10,
                        help='DDIM steps of the built load (default 10)')
    parser.add_argument('--threads', type=int, default=0,
                        help="torch threads of the inference load (default: torch's choice, "
                             "every core)")
    parser.add_argument('--no-immediate-command', dest='immediate_command', action='store_false',
                        help="turn the executor's immediate_command off: grid commands only")
    parser.add_argument('--realtime-priority', type=int, default=None, metavar='P',
                        help='SCHED_FIFO priority of the executor control thread and of this '
                             "process's command receiver; 0 = normal scheduling (default: "
                             "config/executor.yaml's realtime_priority)")


def wave(times: np.ndarray) -> np.ndarray:
    """Scripted joint targets at ``times`` (s): a slow sinusoid around the home pose."""
    phase = 2.0 * np.pi * np.asarray(times)[:, None] / WAVE_PERIOD_S
    return WAVE_CENTER[None, :] + WAVE_AMPLITUDE[None, :] * np.sin(phase)


def _policy_worker(stop: Any, ready: Any, infer: Any, counts: Any, options: dict) -> None:
    """Publish scripted chunks at a fixed rate; run DP inference back to back while ``infer``."""
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    import torch
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from dp_tt_ros.policies.base import PolicySpec
    from dp_tt_ros.policies.checkpoint import load_policy
    from dp_tt_ros.policies.diffusion.modeling import DiffusionPolicy
    from dp_tt_ros.ros.conversions import seconds_to_stamp

    if options['threads'] > 0:
        torch.set_num_threads(options['threads'])
    if options['checkpoint']:
        policy = load_policy(options['checkpoint'])
    else:
        spec = PolicySpec(policy_type='diffusion', obs_shapes={'state': [20]},
                          horizon=CHUNK_HORIZON, n_action_steps=8, n_obs_steps=2)
        policy = DiffusionPolicy.from_config({
            'spec': spec.to_dict(), 'unet': {'down_dims': options['down_dims']},
            'inference': {'num_inference_steps': options['inference_steps'],
                          'sampler': 'ddim'}}).eval()
    spec = policy.spec
    obs = {key: np.zeros((1, spec.n_obs_steps, *shape),
                         np.uint8 if key in spec.image_keys else np.float32)
           for key, shape in spec.obs_shapes.items()}
    goal = np.zeros((1, spec.goal_dim), np.float32) if spec.goal_dim else None
    context = policy.encode_observations(obs)
    policy.act(context, goal)
    rclpy.init()
    node = Node('bench_executor_policy')
    publisher = node.create_publisher(JointTrajectory, '/policy/action_chunk',
                                      QoSProfile(depth=10))
    offsets = CHUNK_DT * np.arange(1, CHUNK_HORIZON + 1)

    def publish_chunks() -> None:
        period = 1.0 / options['chunk_rate']
        next_time = time.monotonic()
        while not stop.wait(max(0.0, next_time - time.monotonic())):
            next_time += period
            capture = time.time() - CHUNK_AGE_S
            msg = JointTrajectory(joint_names=list(COMMAND_JOINTS))
            msg.header.stamp = seconds_to_stamp(capture)
            msg.points = [JointTrajectoryPoint(positions=row.tolist(),
                                               time_from_start=seconds_to_duration(offset))
                          for offset, row in zip(offsets, wave(capture + offsets))]
            publisher.publish(msg)
            with counts.get_lock():
                counts[0] += 1

    chunk_thread = threading.Thread(target=publish_chunks, daemon=True)
    chunk_thread.start()
    ready.set()
    try:
        while not stop.is_set():
            if not infer.wait(0.05):
                continue
            policy.act(context, goal)
            with counts.get_lock():
                counts[1] += 1
    finally:
        chunk_thread.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown()


def seconds_to_duration(seconds: float) -> Any:
    from builtin_interfaces.msg import Duration
    nanoseconds = int(round(seconds * 1e9))
    return Duration(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


class _Robot:
    """
    Publishes joint states, timestamps commands and collects the executor's diagnostics.

    With a real-time priority every thread of this receiver (the DDS ones included) runs
    SCHED_FIFO like the executor's loop, so its own scheduling delays stay out of the figures.
    """

    def __init__(self, realtime_priority: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        self.realtime_priority = realtime_priority
        # Threads created below (DDS's included) inherit the policy; the main thread keeps it
        # too, or it could be preempted while holding the GIL the receiver needs. The executor
        # and policy processes are started before, with their own settings.
        self.scheduling = make_thread_realtime(realtime_priority)
        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node('bench_executor_robot', context=self.context)
        self.joint_pub = self.node.create_publisher(JointState, '/joint_states',
                                                    QoSProfile(depth=10))
        self.lock = threading.Lock()
        self.arrivals: list[int] = []  # grid commands
        self.immediate: list[int] = []  # off-grid commands sent on chunk arrival
        self.diagnostics: list[dict[str, str]] = []
        self.node.create_subscription(Float64MultiArray, '/forward_position_controller/commands',
                                      self._on_command, QoSProfile(depth=1000))
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                      QoSProfile(depth=100))
        self.spinner = SingleThreadedExecutor(context=self.context)
        self.spinner.add_node(self.node)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.spinner.spin, daemon=True),
                        threading.Thread(target=self._publish_joint_states, daemon=True)]
        for thread in self.threads:
            thread.start()

    def _on_command(self, msg: Any) -> None:
        arrival = time.monotonic_ns()
        immediate = [dim.label for dim in msg.layout.dim] == [IMMEDIATE_LABEL]
        with self.lock:
            (self.immediate if immediate else self.arrivals).append(arrival)

    def _on_diagnostics(self, msg: Any) -> None:
        for status in msg.status:
            if status.name.startswith('executor'):
                with self.lock:
                    self.diagnostics.append({kv.key: kv.value for kv in status.values})

    def _publish_joint_states(self) -> None:
        from sensor_msgs.msg import JointState

        from dp_tt_ros.ros.conversions import seconds_to_stamp
        msg = JointState(name=list(ARM_JOINTS + FINGER_JOINTS))
        msg.position = HOME_POSITION[:7].tolist() + [float(HOME_POSITION[7])] * 2
        while not self.stop.wait(1.0 / JOINT_STATE_RATE):
            msg.header.stamp = seconds_to_stamp(time.time())
            self.joint_pub.publish(msg)

    def take(self) -> tuple[list[int], list[int], list[dict[str, str]]]:
        """Return and forget grid and immediate command arrival times and the diagnostics."""
        with self.lock:
            taken = self.arrivals, self.immediate, self.diagnostics
            self.arrivals, self.immediate, self.diagnostics = [], [], []
        return taken

    def close(self) -> None:
        import rclpy
        self.stop.set()
        self.spinner.shutdown()
        for thread in self.threads:
            thread.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)
        if self.scheduling.startswith('SCHED_FIFO'):
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def phase_result(arrivals: list[int], immediate: list[int], diagnostics: list[dict[str, str]],
                 rate: float) -> dict[str, Any]:
    """Summarise one phase: receive-side grid rate and jitter, executor-side diagnostics."""
    if len(arrivals) < 3:
        raise CommandError(f'only {len(arrivals)} commands arrived; is the executor running?')
    times = np.array(arrivals, dtype=np.int64) * 1e-9
    periods = np.diff(times)
    jitter_ms = 1e3 * np.abs(periods - 1.0 / rate)
    result: dict[str, Any] = {
        'commands': int(times.size),
        'command_rate_hz': float(periods.size / (times[-1] - times[0])),
        'period_ms': summarize(1e3 * periods),
        'period_jitter_ms': summarize(jitter_ms),
        'periods_over_2ms_late': int(np.count_nonzero(jitter_ms > TARGET_P99_MS)),
        'immediate_commands': len(immediate),
    }
    for key in ('command_rate_hz', 'period_jitter_p50_ms', 'period_jitter_p99_ms'):
        windows = [float(d[key]) for d in diagnostics if key in d]
        if windows:
            result[f'executor_loop_{key}_per_window'] = summarize(windows)
    if diagnostics:
        last = diagnostics[-1]
        result['executor_state'] = last.get('state', '')
        result['executor_loop_scheduling'] = last.get('loop_scheduling', '')
        result['executor_cpu_wakeup_latency'] = last.get('cpu_wakeup_latency', '')
        result['executor_last_rejection'] = last.get('last_rejection', '')
        for key in ('chunks_accepted', 'chunks_rejected', 'points_dropped', 'missed_ticks',
                    'immediate_commands'):
            if key in last:
                result[f'executor_{key}_total'] = int(last[key])
    return result


def _start_executor(args: argparse.Namespace, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, '-m', 'dp_tt_ros', 'node', 'executor', '--ros-args',
               '--params-file', str(config_dir() / 'executor.yaml'),
               '-p', 'use_sim_time:=false', '-p', f'control_rate:={float(args.control_rate)}',
               '-p', f'blend:={args.blend}', '-p', f'realtime_priority:={args.realtime_priority}',
               '-p', 'diagnostics_period:=1.0',
               '-p', f'immediate_command:={str(args.immediate_command).lower()}']
    with open(log_path, 'w') as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env=os.environ.copy())


def _wait_for(done: Callable[[], bool], failed: Callable[[], bool], message: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not done():
        if failed() or time.monotonic() > deadline:
            raise CommandError(message)
        time.sleep(0.05)


def _measure(robot: _Robot, seconds: float,
             label: str) -> tuple[list[int], list[int], list[dict]]:
    robot.take()
    for _ in tqdm(range(int(round(seconds * 10))), desc=f'executor bench: {label}',
                  unit='0.1s', leave=False):
        time.sleep(0.1)
    return robot.take()


def run(args: argparse.Namespace) -> int:
    duration = 3.0 if args.quick else args.duration
    if duration <= 0:
        raise CommandError(f'--duration must be > 0 seconds, got {args.duration}')
    args.realtime_priority = robot_realtime_priority(args.realtime_priority)
    try:
        down_dims = [int(part) for part in args.down_dims.split(',')]
    except ValueError as error:
        raise CommandError(f'--down-dims {args.down_dims!r}: expected widths such as '
                           f'64,128,256') from error
    checkpoint = Path(args.checkpoint) if args.checkpoint else models_dir() / 'diffusion_reach'
    if args.checkpoint or (checkpoint / 'config.json').is_file():
        from dp_tt_ros.policies.checkpoint import CheckpointError, read_config
        try:
            policy_type = read_config(checkpoint)['policy_type']
        except CheckpointError as error:
            raise CommandError(f'--checkpoint: {error}') from error
        load = (f'{policy_type} checkpoint {checkpoint} (its own inference settings)')
    else:
        checkpoint = None
        load = (f'DiffusionPolicy U-Net down_dims {down_dims}, DDIM {args.inference_steps} '
                f'steps (untrained weights: no shipped models/diffusion_reach)')
    spawn = multiprocessing.get_context('spawn')
    stop, ready, infer = spawn.Event(), spawn.Event(), spawn.Event()
    counts = spawn.Array('i', 2)  # chunks published, inferences run
    options = {'checkpoint': str(checkpoint) if checkpoint else '', 'down_dims': down_dims,
               'inference_steps': args.inference_steps,
               'threads': args.threads, 'chunk_rate': CHUNK_RATE_HZ}
    with tempfile.TemporaryDirectory(prefix='bench_executor_') as log_dir:
        log_path = Path(log_dir) / 'executor.log'
        executor = _start_executor(args, log_path)
        worker = spawn.Process(target=_policy_worker, args=(stop, ready, infer, counts, options))
        worker.start()
        robot = _Robot(args.realtime_priority)
        try:
            # Measure only once chunks really flow: DDS discovery of the chunk publisher can
            # take seconds on a loaded machine, and a phase without chunks measures nothing.
            _wait_for(lambda: len(robot.arrivals) >= 20 and counts[0] >= 5 and any(
                          int(values.get('chunks_accepted', 0)) > 0
                          for values in list(robot.diagnostics)),
                      lambda: executor.poll() is not None or not worker.is_alive(),
                      'the executor did not stream commands or accept the policy process\'s '
                      'chunks; executor log:')
            phases = {}
            for phase in ('idle', 'inference'):
                if phase == 'inference':
                    infer.set()
                    _wait_for(lambda: counts[1] >= 1, lambda: not worker.is_alive(),
                              'the policy process ran no inference')
                before = list(counts)
                phases[phase] = phase_result(*_measure(robot, duration, phase),
                                             args.control_rate)
                phases[phase]['chunk_rate_hz'] = (counts[0] - before[0]) / duration
                phases[phase]['inferences_per_s'] = (counts[1] - before[1]) / duration
                phases[phase]['immediate_commands_per_chunk'] = (
                    phases[phase]['immediate_commands'] / max(counts[0] - before[0], 1))
            receiver_scheduling = robot.scheduling
        except CommandError as error:
            raise CommandError(f'{error}\n{log_path.read_text()[-2000:]}') from None
        finally:
            stop.set()
            infer.set()
            worker.join(timeout=30)
            if worker.is_alive():
                worker.terminate()
            robot.close()
            if executor.poll() is None:
                executor.send_signal(signal.SIGINT)
                try:
                    executor.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    executor.kill()
                    executor.wait()
    loaded = phases['inference']
    p99 = loaded['period_jitter_ms']['p99']
    result = {
        'benchmark': 'executor',
        'command': ' '.join(['dp-tt-ros', 'bench', 'executor', *sys.argv[3:]]),
        'machine': machine_info(),
        'settings': {'duration_s': duration, 'control_rate_hz': args.control_rate,
                     'blend': args.blend, 'realtime_priority': args.realtime_priority,
                     'immediate_command': args.immediate_command,
                     'receiver_scheduling': receiver_scheduling,
                     'joint_state_rate_hz': JOINT_STATE_RATE},
        'load': (f'{load}, inference back to back in the policy process, torch threads '
                 f'{args.threads or "default"}'),
        'chunks': f'{CHUNK_RATE_HZ:g} Hz, H={CHUNK_HORIZON}, dt={CHUNK_DT:g} s, stamped '
                  f'{CHUNK_AGE_S * 1e3:g} ms before publication',
        'phases': phases,
        'command_rate_hz': loaded['command_rate_hz'],
        'period_jitter_p50_ms': loaded['period_jitter_ms']['median'],
        'period_jitter_p99_ms': p99,
        'immediate_commands': loaded['immediate_commands'],
        'jitter_method': ('|period - 1/rate| between consecutive grid commands as received; '
                          'immediate (off-grid, on chunk arrival) commands are excluded and '
                          'counted in immediate_commands'),
        'target_p99_ms': TARGET_P99_MS,
        'meets_target': bool(p99 <= TARGET_P99_MS),
    }
    write_json(result, args.json)
    return 0
