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
``dp-tt-ros node NAME [--ros-args ...]`` and the per-node console scripts used by ``ros2 run``.

Each node module exposes ``main(args: list[str] | None) -> int`` taking ROS arguments only.
"""

from __future__ import annotations

import argparse
import importlib
import sys

NODE_MODULES: dict[str, str] = {
    'pybullet_bridge': 'dp_tt_ros.ros.bridge_node',
    'perception': 'dp_tt_ros.ros.perception_node',
    'policy': 'dp_tt_ros.ros.policy_node',
    'executor': 'dp_tt_ros.ros.executor_node',
    'recorder': 'dp_tt_ros.ros.recorder_node',
}


def run_node(name: str, ros_args: list[str]) -> int:
    module = importlib.import_module(NODE_MODULES[name])
    return int(module.main([sys.argv[0], *ros_args]) or 0)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('name', choices=sorted(NODE_MODULES), help='which node to run')
    parser.add_argument('ros_args', nargs=argparse.REMAINDER,
                        help='ROS arguments, e.g. --ros-args --params-file config/executor.yaml')


def run(args: argparse.Namespace) -> int:
    return run_node(args.name, list(args.ros_args))


def _console_script(name: str):
    def entry() -> int:
        return run_node(name, sys.argv[1:])
    entry.__name__ = f'{name}_main'
    return entry


pybullet_bridge_main = _console_script('pybullet_bridge')
perception_main = _console_script('perception')
policy_main = _console_script('policy')
executor_main = _console_script('executor')
recorder_main = _console_script('recorder')
