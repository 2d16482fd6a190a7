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
import os
from pathlib import Path
import signal
import subprocess
import sys
import tempfile
import time
from typing import Callable, Sequence

import numpy as np

from dp_tt_ros.cli import CommandError
from dp_tt_ros.evaluation.metrics import EpisodeResult
from dp_tt_ros.robot import COMMAND_JOINTS
from dp_tt_ros.ros.graph import (BRIDGE, COMMAND_TOPICS, describe_graph, GraphOptions,
                                 launch_arguments, NodeDescription, options_from_strings,
                                 ros_arguments, with_parameters)

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


