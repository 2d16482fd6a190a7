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
The node graph, described once: which nodes run, with which parameter files and overrides.

Three users read it: ``launch/sim.launch.py`` and ``launch/robot.launch.py`` turn it into
launch_ros ``Node`` actions, and ``dp-tt-ros sim`` starts the same nodes as subprocesses with the
arguments from :func:`ros_arguments`. Launch arguments and runner flags come from
:func:`launch_arguments`, so the three cannot drift apart. This module imports no ROS.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
import json
from pathlib import Path
from typing import Literal, Mapping

import yaml

from dp_tt_ros.paths import config_dir, models_dir
from dp_tt_ros.policies.checkpoint import CheckpointError, read_config

POLICY_TYPES = ('diffusion', 'transformer', 'bc', 'sac')
TASKS = ('reach', 'avoid', 'push', 'pick_place')
CONTROLLER_MODES = ('forward_position', 'joint_trajectory')
COMMAND_TOPICS = {
    'forward_position': '/forward_position_controller/commands',
    'joint_trajectory': '/joint_trajectory_controller/joint_trajectory',
}
BRIDGE = 'pybullet_bridge'
PIPELINE = ('perception', 'policy', 'executor')
ROBOT_CONFIG = 'robot.yaml'
Mode = Literal['sim', 'robot']

ParameterValue = bool | int | float | str | list


@dataclass(frozen=True)
class GraphOptions:
    """
    The choices a user makes when starting the graph (launch arguments, runner flags).

    ``use_sim_time`` makes every node follow ``/clock``: in sim mode the bridge publishes it; on a
    real robot set it to false unless another simulator provides ``/clock``.
    """

    policy_type: str = 'diffusion'
    checkpoint: str = ''
    task: str = 'reach'
    gui: bool = False
    controller_mode: str = 'forward_position'
    use_sim_time: bool = True
    seed: int = 0
    real_time_factor: float = 1.0

    def __post_init__(self) -> None:
        for name, allowed in (('policy_type', POLICY_TYPES), ('task', TASKS),
                              ('controller_mode', CONTROLLER_MODES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f'{name} {getattr(self, name)!r} is not one of {list(allowed)}')
        if self.seed < 0:
            raise ValueError(f'seed must be a non-negative integer, got {self.seed}')
        if self.real_time_factor < 0:
            raise ValueError(f'real_time_factor must be >= 0 (0 = as fast as possible), '
                             f'got {self.real_time_factor}')


@dataclass(frozen=True)
class NodeDescription:
    """One node of the graph: enough to build a launch_ros Node or a command line."""

    name: str
    executable: str
    parameter_files: tuple[Path, ...]
    parameters: dict[str, ParameterValue] = field(default_factory=dict)
    remappings: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class LaunchArgument:
    """A launch argument (and runner flag) mapped onto a :class:`GraphOptions` field."""

    name: str
    default: str
    description: str


ARGUMENT_HELP = {
    'policy_type': f'policy family, one of {", ".join(POLICY_TYPES)}',
    'checkpoint': 'checkpoint directory; empty = the shipped models/<policy_type>_<task>/',
    'task': f'task, one of {", ".join(TASKS)}',
    'gui': "open PyBullet's window (true/false)",
    'controller_mode': f'executor output interface, one of {", ".join(CONTROLLER_MODES)}',
    'use_sim_time': 'follow /clock instead of the wall clock (true/false)',
    'seed': 'seed of the first episode; episode i uses seed + i',
    'real_time_factor': 'simulated seconds per wall second; 0 = as fast as possible',
}
MODE_ARGUMENTS: dict[str, tuple[str, ...]] = {
    'sim': ('policy_type', 'checkpoint', 'task', 'gui', 'controller_mode', 'seed',
            'real_time_factor'),
    'robot': ('policy_type', 'checkpoint', 'task', 'controller_mode', 'use_sim_time'),
}
ROBOT_DEFAULTS = {'use_sim_time': False}


def _format_default(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def launch_arguments(mode: Mode) -> list[LaunchArgument]:
    """Return the launch arguments of ``mode`` with their defaults as launch strings."""
    _check_mode(mode)
    defaults = {f.name: f.default for f in fields(GraphOptions)}
    if mode == 'robot':
        defaults.update(ROBOT_DEFAULTS)
    return [LaunchArgument(name, _format_default(defaults[name]), ARGUMENT_HELP[name])
            for name in MODE_ARGUMENTS[mode]]


def options_from_strings(mode: Mode, values: Mapping[str, str]) -> GraphOptions:
    """Parse launch-argument strings into options; unknown names or bad values raise."""
    _check_mode(mode)
    unknown = sorted(set(values) - set(MODE_ARGUMENTS[mode]))
    if unknown:
        raise ValueError(f'unknown {mode} launch arguments {unknown}; '
                         f'expected some of {list(MODE_ARGUMENTS[mode])}')
    types = {f.name: f.type for f in fields(GraphOptions)}
    parsed: dict[str, object] = dict(ROBOT_DEFAULTS) if mode == 'robot' else {}
    for name, text in values.items():
        parsed[name] = _parse(name, types[name], text)
    return GraphOptions(**parsed)


def _parse(name: str, type_name: str, text: str) -> object:
    if type_name == 'bool':
        lowered = text.strip().lower()
        if lowered not in ('true', 'false', '1', '0'):
            raise ValueError(f'{name} must be true or false, got {text!r}')
        return lowered in ('true', '1')
    try:
        if type_name == 'int':
            return int(text)
        if type_name == 'float':
            return float(text)
    except ValueError:
        raise ValueError(f'{name} must be a{"n integer" if type_name == "int" else " number"}, '
                         f'got {text!r}') from None
    return text


def _check_mode(mode: str) -> None:
    if mode not in MODE_ARGUMENTS:
        raise ValueError(f'graph mode {mode!r} is not one of {list(MODE_ARGUMENTS)}')


def robot_remappings(path: Path | None = None) -> tuple[tuple[str, str], ...]:
    """Read the graph-topic -> robot-topic remappings from ``config/robot.yaml``."""
    path = config_dir() / ROBOT_CONFIG if path is None else path
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f'cannot read robot remappings from {path}: {error}') from error
    remappings = content.get('remappings') if isinstance(content, dict) else None
    if not isinstance(remappings, dict) or not all(
            isinstance(key, str) and isinstance(value, str) and key.startswith('/')
            and value.startswith('/') for key, value in remappings.items()):
        raise ValueError(f'{path}: expected a "remappings" mapping of absolute topic names '
                         f'(/graph/topic: /robot/topic), got {remappings!r}')
    return tuple((key, value) for key, value in remappings.items() if key != value)


def describe_graph(mode: Mode, options: GraphOptions) -> list[NodeDescription]:
    """
    List the nodes of the sim or robot graph.

    sim: the PyBullet bridge (the clock source when ``use_sim_time``) plus perception, policy and
    executor. robot: no bridge; the pipeline's sensor and command topics are remapped to the
    robot's according to ``config/robot.yaml``.
    """
    _check_mode(mode)
    config = config_dir()
    policy_parameters: dict[str, ParameterValue] = {
        'checkpoint': options.checkpoint, 'policy_type': options.policy_type,
        'task': options.task, 'use_sim_time': options.use_sim_time}
    pipeline_parameters: dict[str, dict[str, ParameterValue]] = {
        'perception': dict(policy_parameters),
        'policy': dict(policy_parameters),
        'executor': {'controller_mode': options.controller_mode,
                     'use_sim_time': options.use_sim_time},
    }
    action_steps = checkpoint_action_steps(options)
    if action_steps is not None:
        pipeline_parameters['executor']['n_action_steps'] = action_steps
    remappings = robot_remappings() if mode == 'robot' else ()
    nodes = [NodeDescription(name, name, (config / f'{name}.yaml',), parameters, remappings)
             for name, parameters in pipeline_parameters.items()]
    if mode == 'sim':
        bridge = NodeDescription(BRIDGE, BRIDGE, (config / f'{BRIDGE}.yaml',), {
            'task': options.task, 'gui': options.gui, 'seed': options.seed,
            'real_time_factor': options.real_time_factor,
            'publish_clock': options.use_sim_time})
        nodes.insert(0, bridge)
    return nodes


def checkpoint_action_steps(options: GraphOptions) -> int | None:
    """
    Return the checkpoint's h (``n_action_steps``), or None when it cannot be read here.

    The executor then runs the receding horizon the policy was trained for; a checkpoint that is
    missing or unreadable is reported by the policy node, which owns loading it.
    """
    directory = (Path(options.checkpoint).expanduser() if options.checkpoint
                 else models_dir() / f'{options.policy_type}_{options.task}')
    try:
        return int(read_config(directory)['policy']['spec']['n_action_steps'])
    except (CheckpointError, KeyError, TypeError, ValueError):
        return None


def with_parameters(node: NodeDescription, **parameters: ParameterValue) -> NodeDescription:
    """Return ``node`` with extra or replaced parameter overrides."""
    return replace(node, parameters={**node.parameters, **parameters})


def _format_value(value: ParameterValue) -> str:
    """Format a value for ``-p name:=value``, which ROS parses as YAML."""
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(value)


def ros_arguments(node: NodeDescription) -> list[str]:
    """Return ``--ros-args ...`` for ``node``: name, parameter files, overrides, remappings."""
    arguments = ['--ros-args', '-r', f'__node:={node.name}']
    for path in node.parameter_files:
        arguments += ['--params-file', str(path)]
    for name, value in node.parameters.items():
        arguments += ['-p', f'{name}:={_format_value(value)}']
    for source, target in node.remappings:
        arguments += ['-r', f'{source}:={target}']
    return arguments
