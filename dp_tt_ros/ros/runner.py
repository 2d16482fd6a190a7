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
``dp-tt-ros sim``: the simulated graph without the launch tools, and episodes through it.

Every node of ``describe_graph('sim', ...)`` runs as its own process (``python -m dp_tt_ros node
NAME --ros-args ...``, the arguments a launch file would pass). The bridge starts paused, so
episode 0 does not tick away while torch loads; once every node is up and the pipeline's topics
are connected the runner unpauses it, then drives episodes through ``/sim/reset`` and reads their
outcome from ``/sim/task_status``. An episode ends at the task's first success or after the
in-process evaluator's episode length, so both evaluations score the same thing. Processes are
stopped with SIGINT, then SIGTERM, then SIGKILL, also on Ctrl-C or when a node dies.
"""

from __future__ import annotations

import argparse
from collections import deque
from dataclasses import dataclass, replace
import math
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Sequence

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
from rcl_interfaces.srv import SetParameters
import rclpy
from rclpy.client import Client
from rclpy.context import Context
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from rclpy.signals import SignalHandlerOptions
from std_msgs.msg import Float64MultiArray
from std_srvs.srv import Trigger
from trajectory_msgs.msg import JointTrajectory

from dp_tt_ros.cli import CommandError
from dp_tt_ros.evaluation.metrics import EpisodeResult
from dp_tt_ros.robot import COMMAND_JOINTS
from dp_tt_ros.ros.graph import (BRIDGE, COMMAND_TOPICS, describe_graph, GraphOptions,
                                 launch_arguments, NodeDescription, options_from_strings,
                                 ros_arguments, with_parameters)
from dp_tt_ros.ros.conversions import stamp_to_seconds

STDERR_TAIL_LINES = 25
SIGINT_GRACE_S = 10.0
SIGTERM_GRACE_S = 5.0
# Topics that have both a publisher and a subscriber once perception, policy and executor are
# constructed (checkpoints loaded, policy configured): the graph is ready to act.
PIPELINE_TOPICS = ('/joint_states', '/policy/context', '/policy/action_chunk')


class NodeCrashed(CommandError):
    """A node process exited while the graph was running."""


@dataclass(frozen=True)
class ProcessSpec:
    """A node process: its node name and the full command line."""

    name: str
    argv: tuple[str, ...]


def node_command(node: NodeDescription) -> ProcessSpec:
    """Return the command that runs ``node`` exactly as a launch file would configure it."""
    return ProcessSpec(node.name, (sys.executable, '-m', 'dp_tt_ros', 'node', node.executable,
                                   *ros_arguments(node)))


class NodeProcesses:
    """Starts node processes, notices when one dies, and stops them all in order."""

    def __init__(self, specs: Sequence[ProcessSpec], log_dir: Path) -> None:
        self.specs = list(specs)
        self.log_dir = log_dir
        self.processes: dict[str, subprocess.Popen] = {}

    def log_path(self, name: str) -> Path:
        return self.log_dir / f'{name}.log'

    def start(self) -> None:
        for spec in self.specs:
            with open(self.log_path(spec.name), 'wb') as log:
                # A session of their own: Ctrl-C in the terminal reaches only the runner, which
                # then shuts the nodes down in order.
                self.processes[spec.name] = subprocess.Popen(
                    spec.argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True)

    def tail(self, name: str, lines: int = STDERR_TAIL_LINES) -> str:
        try:
            with open(self.log_path(name), 'rb') as log:
                return b''.join(deque(log, maxlen=lines)).decode(errors='replace').rstrip()
        except OSError:
            return ''

    def check(self) -> None:
        """Raise NodeCrashed naming the first node that has exited, with its output's tail."""
        for name, process in self.processes.items():
            code = process.poll()
            if code is not None:
                raise NodeCrashed(f'node {name} exited with status {code}; last output:\n'
                                  f'{self.tail(name)}')

    def stop(self) -> dict[str, int]:
        """Stop every process (SIGINT, then SIGTERM, then SIGKILL); return their exit codes."""
        for sig, grace in ((signal.SIGINT, SIGINT_GRACE_S), (signal.SIGTERM, SIGTERM_GRACE_S),
                           (signal.SIGKILL, SIGTERM_GRACE_S)):
            alive = [p for p in self.processes.values() if p.poll() is None]
            for process in alive:
                process.send_signal(sig)
            deadline = time.monotonic() + grace
            for process in alive:
                try:
                    process.wait(timeout=max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        return {name: process.returncode for name, process in self.processes.items()}


def default_episode_seconds(task: str) -> float:
    """Return the in-process evaluator's episode length for ``task`` (simulated seconds)."""
    from dp_tt_ros.sim.tasks import CONTROL_DT, DEFAULT_MAX_STEPS
    return DEFAULT_MAX_STEPS[task] * CONTROL_DT


def _status_values(msg: DiagnosticStatus) -> dict[str, str]:
    return {item.key: item.value for item in msg.values}


class EpisodeMonitor(Node):
    """
    The runner's own node: resets episodes, watches task status, records commands.

    It lives in a private rclpy context, so an application that uses rclpy itself (the
    evaluator's ``--ros`` mode) is unaffected. With ``use_sim_time`` it follows the bridge's
    ``/clock``, so command times are simulated seconds since the episode began.
    """

    def __init__(self, context: Context, controller_mode: str, use_sim_time: bool,
                 check: Callable[[], None]) -> None:
        super().__init__('sim_runner', context=context, parameter_overrides=[
            Parameter('use_sim_time', value=use_sim_time)])
        self.check = check
        self.spinner = SingleThreadedExecutor(context=context)
        self.spinner.add_node(self)
        self.status: dict[str, str] = {}
        self.status_wall_time = time.monotonic()
        self.bridge_rates: list[dict[str, float]] = []
        self.episode_start: float | None = None
        self.command_times: list[float] = []
        self.commands: list[np.ndarray] = []
        reliable = QoSProfile(depth=100)
        self.command_topic = COMMAND_TOPICS[controller_mode]
        self.create_subscription(DiagnosticStatus, '/sim/task_status', self._on_status, reliable)
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics, reliable)
        if controller_mode == 'forward_position':
            self.create_subscription(Float64MultiArray, self.command_topic, self._on_forward,
                                     reliable)
        else:
            self.create_subscription(JointTrajectory, self.command_topic, self._on_trajectory,
                                     reliable)
        self.reset_client = self.create_client(Trigger, '/sim/reset')
        self.parameter_client = self.create_client(SetParameters,
                                                   f'/{BRIDGE}/set_parameters')

    def now(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    # ------------------------------------------------------------------ callbacks
    def _on_status(self, msg: DiagnosticStatus) -> None:
        self.status = _status_values(msg)
        self.status_wall_time = time.monotonic()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name == f'{BRIDGE}: rates' and status.message != 'paused':
                self.bridge_rates.append({key: float(value) for key, value
                                          in _status_values(status).items()})

    def _record(self, time_s: float, command: np.ndarray) -> None:
        if self.episode_start is not None:
            self.command_times.append(time_s - self.episode_start)
            self.commands.append(command)

    def _on_forward(self, msg: Float64MultiArray) -> None:
        if len(msg.data) == len(COMMAND_JOINTS):
            self._record(self.now(), np.asarray(msg.data, dtype=float))

    def _on_trajectory(self, msg: JointTrajectory) -> None:
        if self.episode_start is None or sorted(msg.joint_names) != sorted(COMMAND_JOINTS):
            return
        start = stamp_to_seconds(msg.header.stamp) or self.now()
        order = [list(msg.joint_names).index(name) for name in COMMAND_JOINTS]
        # A new trajectory replaces the rest of the old one, as in the bridge and in JTC.
        keep = [i for i, t in enumerate(self.command_times)
                if t + self.episode_start < self.now()]
        self.command_times = [self.command_times[i] for i in keep]
        self.commands = [self.commands[i] for i in keep]
        for point in msg.points:
            offset = point.time_from_start.sec + point.time_from_start.nanosec * 1e-9
            self._record(start + offset, np.asarray(point.positions, dtype=float)[order])

    # ------------------------------------------------------------------ waiting
    def spin_until(self, done: Callable[[], bool], timeout_s: float, what: str,
                   on_wait: Callable[[str], None] = lambda message: None) -> None:
        """Spin until ``done()``; raise on a dead node or after ``timeout_s`` wall seconds."""
        deadline = time.monotonic() + timeout_s
        next_report = time.monotonic() + 15.0
        while not done():
            self.check()
            now = time.monotonic()
            if now > deadline:
                raise CommandError(f'timed out after {timeout_s:g} s waiting for {what}')
            if now > next_report:
                on_wait(f'still waiting for {what}')
                next_report = now + 15.0
            self.spinner.spin_once(timeout_sec=0.05)

    def graph_ready(self, node_names: Sequence[str], topics: Sequence[str]) -> bool:
        """Tell whether every node is up, each topic connected and the bridge serving."""
        if not set(node_names) <= set(self.get_node_names()):
            return False
        if not all(self.count_publishers(t) and self.count_subscribers(t) for t in topics):
            return False
        return (self.count_publishers(self.command_topic) > 0
                and self.reset_client.service_is_ready()
                and self.parameter_client.service_is_ready())

    def call(self, client: Client, request: Any, timeout_s: float, what: str) -> Any:
        """Call a service and wait for its response."""
        future = client.call_async(request)
        self.spin_until(future.done, timeout_s, what)
        return future.result()

    def unpause(self) -> None:
        request = SetParameters.Request(
            parameters=[Parameter('paused', value=False).to_parameter_msg()])
        result = self.call(self.parameter_client, request, 30.0, 'the bridge to unpause')
        if not result.results[0].successful:
            raise CommandError(f'the bridge refused to unpause: {result.results[0].reason}')

    def reset(self) -> str:
        response = self.call(self.reset_client, Trigger.Request(), 30.0, '/sim/reset')
        if not response.success:
            raise CommandError(f'/sim/reset failed: {response.message}')
        return response.message

    def run_episode(self, episode: int, timeout_s: float, stall_s: float) -> EpisodeResult:
        """Follow ``episode`` until success or ``timeout_s`` simulated seconds have passed."""
        self.spin_until(lambda: self.status.get('episode') == str(episode), 30.0,
                        f'/sim/task_status of episode {episode}')
        self.episode_start = self.now() - float(self.status['elapsed'])
        self.command_times, self.commands = [], []

        def finished() -> bool:
            if time.monotonic() - self.status_wall_time > stall_s:
                raise CommandError(f'no /sim/task_status for {stall_s:g} s: the bridge stalled')
            return (self.status['success'] == 'true'
                    or float(self.status['elapsed']) >= timeout_s)
        try:
            self.spin_until(finished, math.inf, f'episode {episode} to end')
        finally:
            self.episode_start = None
        status = self.status
        duration = float(status['elapsed'])
        times = np.asarray(self.command_times, dtype=float)
        commands = np.asarray(self.commands, dtype=float).reshape(-1, len(COMMAND_JOINTS))
        # Commands that arrived after the final status belong to no episode; of several that
        # arrived at the same simulated instant only the last one ever reached the arm.
        order = np.argsort(times, kind='stable')
        order = order[times[order] <= duration + 1e-6]
        order = order[np.diff(times[order], append=np.inf) > 0]
        return EpisodeResult(
            seed=int(status['seed']), success=status['success'] == 'true',
            time_to_goal=float(status['time_to_goal']) if status['time_to_goal'] else None,
            n_collisions=int(status['n_collisions']),
            collision_time=float(status['collision_time']), duration=duration,
            command_times=times[order], commands=commands[order])


class GraphSession:
    """Node processes plus the in-process monitor; leaving the ``with`` block stops them all."""

    def __init__(self, specs: Sequence[ProcessSpec], controller_mode: str, *,
                 use_sim_time: bool = True, log_dir: Path | None = None) -> None:
        self._tempdir = None
        if log_dir is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix='dp_tt_ros_sim_')
            log_dir = Path(self._tempdir.name)
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes = NodeProcesses(specs, self.log_dir)
        self.controller_mode = controller_mode
        self.use_sim_time = use_sim_time
        self.context: Context | None = None
        self.monitor: EpisodeMonitor | None = None
        self.exit_codes: dict[str, int] = {}

    def __enter__(self) -> EpisodeMonitor:
        try:
            self.processes.start()
            self.context = Context()
            # Keep Python's own SIGINT handling: Ctrl-C must raise KeyboardInterrupt here so
            # that the nodes get shut down, rather than be absorbed by rclpy's handler.
            rclpy.init(args=[], context=self.context,
                       signal_handler_options=SignalHandlerOptions.NO)
            self.monitor = EpisodeMonitor(self.context, self.controller_mode, self.use_sim_time,
                                          self.processes.check)
        except BaseException:
            self.close()
            raise
        return self.monitor

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self.monitor is not None:
            self.monitor.destroy_node()
            self.monitor = None
        if self.context is not None:
            rclpy.try_shutdown(context=self.context)
            self.context = None
        self.exit_codes = self.processes.stop()
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None


@dataclass
class SimRun:
    """What ``dp-tt-ros sim`` reports: the episodes and the bridge's achieved rates."""

    episodes: list[EpisodeResult]
    bridge_rates: dict[str, float]


def run_sim(options: GraphOptions, episodes: int, *, timeout_per_episode: float | None = None,
            startup_timeout: float = 300.0, log_dir: Path | None = None,
            on_episode: Callable[[int, EpisodeResult], None] = lambda index, result: None,
            on_wait: Callable[[str], None] = lambda message: None) -> SimRun:
    """Start the sim graph, run ``episodes`` episodes, stop the graph; see the module doc."""
    if episodes < 1:
        raise CommandError(f'episodes must be >= 1, got {episodes}')
    timeout_s = (default_episode_seconds(options.task) if timeout_per_episode is None
                 else timeout_per_episode)
    if not timeout_s > 0:
        raise CommandError(f'timeout per episode must be > 0 s, got {timeout_s}')
    bridge_overrides = {'paused': True, **_camera_parameters(options)}
    nodes = [with_parameters(node, **bridge_overrides) if node.name == BRIDGE else node
             for node in describe_graph('sim', options)]
    missing = [str(path) for node in nodes for path in node.parameter_files if not path.is_file()]
    if missing:
        raise CommandError(f'parameter files not found: {missing}')
    results: list[EpisodeResult] = []
    with GraphSession([node_command(node) for node in nodes], options.controller_mode,
                      use_sim_time=options.use_sim_time, log_dir=log_dir) as monitor:
        on_wait(f'starting {", ".join(node.name for node in nodes)}')
        monitor.spin_until(lambda: monitor.graph_ready([node.name for node in nodes],
                                                       PIPELINE_TOPICS),
                           startup_timeout, 'the nodes to come up', on_wait)
        monitor.unpause()
        for index in range(episodes):
            if index > 0:
                monitor.reset()
            result = monitor.run_episode(index, timeout_s, stall_s=60.0)
            results.append(result)
            on_episode(index, result)
        rates = _median_rates(monitor.bridge_rates)
    return SimRun(results, rates)


def run_episodes(options: GraphOptions, episodes: int, seed: int,
                 **kwargs: Any) -> list[EpisodeResult]:
    """Run ``episodes`` episodes seeded ``seed``, ``seed + 1``, ... through the ROS graph."""
    return run_sim(replace(options, seed=seed), episodes, **kwargs).episodes


def _median_rates(samples: list[dict[str, float]]) -> dict[str, float]:
    keys = ('real_time_factor', 'physics_steps_per_s', 'clock_hz', 'joint_states_hz',
            'camera_hz', 'render_ms_median')
    return {key: float(np.median([sample[key] for sample in samples]))
            for key in keys if samples and all(key in sample for sample in samples)}


def _camera_parameters(options: GraphOptions) -> dict[str, float | int]:
    """
    Check the checkpoint before starting anything and fit the bridge's camera to it.

    A low-dimensional checkpoint gets no camera at all (rendering is the bridge's most expensive
    job and nobody would look at the frames); an image checkpoint gets frames of its own size.
    """
    from dp_tt_ros.policies.checkpoint import CheckpointError, read_config
    from dp_tt_ros.ros.context import NodeConfigError, resolve_checkpoint
    try:
        directory = resolve_checkpoint(options.checkpoint, options.policy_type, options.task)
        spec = read_config(directory)['policy']['spec']
        image_keys = spec.get('image_keys') or []
        if not image_keys:
            return {'camera_rate': 0.0}
        height, width = spec['obs_shapes'][image_keys[0]][:2]
        return {'camera_width': int(width), 'camera_height': int(height)}
    except (CheckpointError, NodeConfigError, OSError, ValueError, KeyError, TypeError) as error:
        raise CommandError(f'checkpoint for policy_type={options.policy_type} '
                           f'task={options.task}: {error}') from error


# ---------------------------------------------------------------------- command line
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the launch arguments of ``sim.launch.py`` as flags, plus the episode options."""
    for argument in launch_arguments('sim'):
        flag = '--' + argument.name.replace('_', '-')
        if argument.default in ('true', 'false'):
            parser.add_argument(flag, action='store_true', dest=argument.name,
                                help=argument.description)
        else:
            parser.add_argument(flag, dest=argument.name, default=argument.default,
                                help=f'{argument.description} (default: {argument.default!r})')
    parser.add_argument('--episodes', type=int, default=3, help='episodes to run (default 3)')
    parser.add_argument('--timeout-per-episode', type=float, default=None, metavar='SECONDS',
                        help='simulated seconds before an episode counts as failed (default: '
                             "the in-process evaluator's episode length for the task)")
    parser.add_argument('--log-dir', type=Path, default=None,
                        help='keep each node\'s output in DIR/<node>.log (default: temporary)')


def run(args: argparse.Namespace) -> int:
    """Run the episodes, printing one line per episode and a summary."""
    from tqdm import tqdm
    from dp_tt_ros.evaluation.metrics import summarize_episodes
    values = {argument.name: str(getattr(args, argument.name)).lower()
              if isinstance(getattr(args, argument.name), bool) else getattr(args, argument.name)
              for argument in launch_arguments('sim')}
    try:
        options = options_from_strings('sim', values)
    except ValueError as error:
        raise CommandError(str(error)) from error
    progress = tqdm(total=args.episodes, unit='episode', desc=f'{options.policy_type} '
                    f'{options.task}', dynamic_ncols=True)

    def on_episode(index: int, result: EpisodeResult) -> None:
        time_to_goal = '-' if result.time_to_goal is None else f'{result.time_to_goal:.2f} s'
        progress.write(f'episode {index} seed {result.seed}: '
                       f'{"success" if result.success else "failure"}, time to goal '
                       f'{time_to_goal}, collisions {result.n_collisions} '
                       f'({result.collision_time:.2f} s), {len(result.commands)} commands')
        progress.update(1)

    try:
        outcome = run_sim(options, args.episodes, timeout_per_episode=args.timeout_per_episode,
                          log_dir=args.log_dir, on_episode=on_episode, on_wait=progress.write)
    finally:
        progress.close()
    summary = summarize_episodes(outcome.episodes, seed=options.seed)
    rate = summary['success_rate']
    time_to_goal = summary['time_to_goal']
    print(f'success {rate["value"]:.0%} (95% CI {rate["ci_low"]:.0%}-{rate["ci_high"]:.0%}) '
          f'over {summary["episodes"]} episodes; mean time to goal '
          f'{"-" if time_to_goal is None else format(time_to_goal["value"], ".2f") + " s"}; '
          f'mean collisions {summary["n_collisions"]["value"]:.2f}')
    if outcome.bridge_rates:
        print('bridge (median of /diagnostics): ' + ', '.join(
            f'{key} {value:.2f}' for key, value in outcome.bridge_rates.items()))
    return 0
