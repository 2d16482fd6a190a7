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
``/joint_states`` at 100 Hz and timestamps every command on arrival. Two phases are measured
back to back:

* ``idle``: nothing else runs;
* ``inference``: a policy process runs Diffusion Policy inference back to back (a U-Net
  ``DiffusionPolicy`` with DDIM, torch's default thread count, i.e. every core) and publishes a
  chunk after each inference, stamped with the time its "observation" was taken. The chunk rows
  follow a slow sinusoid around the home pose (the untrained network's output is not a motion),
  so the executor is blending seams and interpolating the whole time.

Period jitter is ``|t_i - t_{i-1} - 1/rate|`` between consecutive commands as received here, so
it includes DDS delivery and this subscriber's own scheduling: an upper bound on what the
controller sees. The executor's own loop-side figures from ``/diagnostics`` are reported too.
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
from typing import Any

import numpy as np
from tqdm import tqdm

from dp_tt_ros.bench.common import machine_info, summarize, write_json
from dp_tt_ros.cli import CommandError
from dp_tt_ros.paths import config_dir
from dp_tt_ros.robot import ARM_JOINTS, COMMAND_JOINTS, FINGER_JOINTS, HOME_POSITION

TARGET_P99_MS = 2.0
START_TIMEOUT_S = 60.0
JOINT_STATE_RATE = 100.0
CHUNK_DT = 0.1
CHUNK_HORIZON = 16
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
    parser.add_argument('--down-dims', default='64,128,256',
                        help='U-Net widths of the inference load (default 64,128,256)')
    parser.add_argument('--inference-steps', type=int, default=10,
                        help='DDIM steps of the inference load (default 10)')
    parser.add_argument('--threads', type=int, default=0,
                        help="torch threads of the inference load (default: torch's choice, "
                             "every core)")
    parser.add_argument('--realtime-priority', type=int, default=0, metavar='P',
                        help='SCHED_FIFO priority for the executor control thread (default 0: '
                             'normal scheduling)')


def wave(times: np.ndarray) -> np.ndarray:
    """Scripted joint targets at ``times`` (s): a slow sinusoid around the home pose."""
    phase = 2.0 * np.pi * np.asarray(times)[:, None] / WAVE_PERIOD_S
    return WAVE_CENTER[None, :] + WAVE_AMPLITUDE[None, :] * np.sin(phase)


def _policy_worker(stop: Any, ready: Any, published: Any, down_dims: list[int],
                   inference_steps: int, threads: int) -> None:
    """Run DP inference back to back and publish one scripted chunk per inference."""
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile
    import torch
    from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

    from dp_tt_ros.policies.base import PolicySpec
    from dp_tt_ros.policies.diffusion.modeling import DiffusionPolicy
    from dp_tt_ros.ros.conversions import seconds_to_stamp

    if threads > 0:
        torch.set_num_threads(threads)
    spec = PolicySpec(policy_type='diffusion', obs_shapes={'state': [20]},
                      horizon=CHUNK_HORIZON, n_action_steps=8, n_obs_steps=2)
    policy = DiffusionPolicy.from_config({
        'spec': spec.to_dict(), 'unet': {'down_dims': down_dims},
        'inference': {'num_inference_steps': inference_steps, 'sampler': 'ddim'}}).eval()
    context = policy.encode_observations({'state': np.zeros((1, 2, 20), np.float32)})
    policy.act(context)
    rclpy.init()
    node = Node('bench_executor_policy')
    publisher = node.create_publisher(JointTrajectory, '/policy/action_chunk',
                                      QoSProfile(depth=10))
    offsets = CHUNK_DT * np.arange(1, CHUNK_HORIZON + 1)
    ready.set()
    try:
        while not stop.is_set():
            capture = time.time()
            policy.act(context)
            msg = JointTrajectory(joint_names=list(COMMAND_JOINTS))
            msg.header.stamp = seconds_to_stamp(capture)
            msg.points = [JointTrajectoryPoint(
                positions=row.tolist(),
                time_from_start=seconds_to_duration(offset))
                for offset, row in zip(offsets, wave(capture + offsets))]
            publisher.publish(msg)
            with published.get_lock():
                published.value += 1
    finally:
        node.destroy_node()
        rclpy.try_shutdown()


def seconds_to_duration(seconds: float) -> Any:
    from builtin_interfaces.msg import Duration
    nanoseconds = int(round(seconds * 1e9))
    return Duration(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


class _Robot:
    """Publishes joint states, timestamps commands and collects the executor's diagnostics."""

    def __init__(self) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.node import Node
        from rclpy.qos import QoSProfile
        from sensor_msgs.msg import JointState
        from std_msgs.msg import Float64MultiArray

        self.context = rclpy.Context()
        rclpy.init(context=self.context)
        self.node = Node('bench_executor_robot', context=self.context)
        self.joint_pub = self.node.create_publisher(JointState, '/joint_states',
                                                    QoSProfile(depth=10))
        self.lock = threading.Lock()
        self.arrivals: list[int] = []
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

    def _on_command(self, _msg: Any) -> None:
        arrival = time.monotonic_ns()
        with self.lock:
            self.arrivals.append(arrival)

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

    def take(self) -> tuple[list[int], list[dict[str, str]]]:
        """Return and forget the commands' arrival times and the diagnostics so far."""
        with self.lock:
            arrivals, diagnostics = self.arrivals, self.diagnostics
            self.arrivals, self.diagnostics = [], []
        return arrivals, diagnostics

    def close(self) -> None:
        import rclpy
        self.stop.set()
        self.spinner.shutdown()
        for thread in self.threads:
            thread.join(timeout=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def phase_result(arrivals: list[int], diagnostics: list[dict[str, str]],
                 rate: float) -> dict[str, Any]:
    """Summarise one phase: receive-side rate and jitter, executor-side diagnostics."""
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
    }
    loop_p99 = [float(d['period_jitter_p99_ms']) for d in diagnostics
                if 'period_jitter_p99_ms' in d]
    if loop_p99:
        result['executor_loop_jitter_p99_ms_per_window'] = summarize(loop_p99)
    if diagnostics:
        last = diagnostics[-1]
        result['executor_state'] = last.get('state', '')
        for key in ('chunks_accepted', 'chunks_rejected', 'points_dropped', 'missed_ticks'):
            if key in last:
                result[f'executor_{key}_total'] = int(last[key])
    return result


def _start_executor(args: argparse.Namespace, log_path: Path) -> subprocess.Popen:
    command = [sys.executable, '-m', 'dp_tt_ros', 'node', 'executor', '--ros-args',
               '--params-file', str(config_dir() / 'executor.yaml'),
               '-p', 'use_sim_time:=false', '-p', f'control_rate:={float(args.control_rate)}',
               '-p', f'blend:={args.blend}', '-p', f'realtime_priority:={args.realtime_priority}',
               '-p', 'diagnostics_period:=1.0']
    with open(log_path, 'w') as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                env=os.environ.copy())


def _measure(robot: _Robot, seconds: float, label: str) -> tuple[list[int], list[dict]]:
    robot.take()
    for _ in tqdm(range(int(round(seconds * 10))), desc=f'executor bench: {label}',
                  unit='0.1s', leave=False):
        time.sleep(0.1)
    return robot.take()


def run(args: argparse.Namespace) -> int:
    duration = 3.0 if args.quick else args.duration
    if duration <= 0:
        raise CommandError(f'--duration must be > 0 seconds, got {args.duration}')
    try:
        down_dims = [int(part) for part in args.down_dims.split(',')]
    except ValueError as error:
        raise CommandError(f'--down-dims {args.down_dims!r}: expected widths such as '
                           f'64,128,256') from error
    spawn = multiprocessing.get_context('spawn')
    stop, ready = spawn.Event(), spawn.Event()
    published = spawn.Value('i', 0)
    with tempfile.TemporaryDirectory(prefix='bench_executor_') as log_dir:
        log_path = Path(log_dir) / 'executor.log'
        executor = _start_executor(args, log_path)
        robot = _Robot()
        worker = None
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while len(robot.arrivals) < 20:
                if executor.poll() is not None or time.monotonic() > deadline:
                    raise CommandError(f'the executor did not stream commands:\n'
                                       f'{log_path.read_text()[-2000:]}')
                time.sleep(0.05)
            idle = phase_result(*_measure(robot, duration, 'idle'), args.control_rate)
            worker = spawn.Process(target=_policy_worker, args=(
                stop, ready, published, down_dims, args.inference_steps, args.threads))
            worker.start()
            if not ready.wait(START_TIMEOUT_S):
                raise CommandError('the inference process did not start')
            time.sleep(3.0)  # discovery, first chunks
            chunks_before = published.value
            loaded = phase_result(*_measure(robot, duration, 'inference'), args.control_rate)
            loaded['chunks_published'] = published.value - chunks_before
            loaded['chunk_rate_hz'] = loaded['chunks_published'] / duration
        finally:
            stop.set()
            if worker is not None:
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
    p99 = loaded['period_jitter_ms']['p99']
    result = {
        'benchmark': 'executor',
        'command': ' '.join(['dp-tt-ros', 'bench', 'executor', *sys.argv[3:]]),
        'machine': machine_info(),
        'settings': {'duration_s': duration, 'control_rate_hz': args.control_rate,
                     'blend': args.blend, 'realtime_priority': args.realtime_priority,
                     'joint_state_rate_hz': JOINT_STATE_RATE},
        'load': (f'DiffusionPolicy U-Net down_dims {down_dims}, DDIM {args.inference_steps} '
                 f'steps, back to back in a separate process, torch threads '
                 f'{args.threads or "default"}'),
        'phases': {'idle': idle, 'inference': loaded},
        'command_rate_hz': loaded['command_rate_hz'],
        'period_jitter_p50_ms': loaded['period_jitter_ms']['median'],
        'period_jitter_p99_ms': p99,
        'target_p99_ms': TARGET_P99_MS,
        'meets_target': bool(p99 <= TARGET_P99_MS),
    }
    write_json(result, args.json)
    return 0
