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

"""The node-graph description: nodes, parameter files, overrides and their ROS arguments."""

import json
from pathlib import Path

import pytest
import rclpy
from rclpy.context import Context
from rclpy.node import Node
import yaml

from dp_tt_ros.paths import config_dir, models_dir
from dp_tt_ros.ros import context as ros_context
from dp_tt_ros.ros.graph import (describe_graph, GraphOptions, launch_arguments,
                                 options_from_strings, POLICY_TYPES, robot_remappings,
                                 ros_arguments, TASKS)
from dp_tt_ros.ros.nodes import NODE_MODULES
from dp_tt_ros.sim import world

OPTIONS = GraphOptions(policy_type='bc', checkpoint='/tmp/some ckpt', task='avoid', gui=True,
                       controller_mode='joint_trajectory', seed=7, real_time_factor=2.5)


def file_parameters(path: Path, node: str) -> dict:
    return yaml.safe_load(path.read_text())[node]['ros__parameters']


def test_sim_graph_is_bridge_perception_policy_executor_with_their_files() -> None:
    nodes = describe_graph('sim', OPTIONS)
    assert [node.name for node in nodes] == ['pybullet_bridge', 'perception', 'policy',
                                             'executor']
    for node in nodes:
        assert node.executable == node.name and node.name in NODE_MODULES
        assert node.parameter_files == (config_dir() / f'{node.name}.yaml',)
        declared = file_parameters(node.parameter_files[0], node.name)
        # Every override names a parameter the node's own file declares (or the standard one).
        assert set(node.parameters) - {'use_sim_time'} <= set(declared), node.name
        assert node.remappings == ()
    bridge, perception, policy, executor = (node.parameters for node in nodes)
    assert bridge == {'task': 'avoid', 'gui': True, 'seed': 7, 'real_time_factor': 2.5,
                      'publish_clock': True}
    assert perception == policy == {'checkpoint': '/tmp/some ckpt', 'policy_type': 'bc',
                                    'task': 'avoid', 'use_sim_time': True}
    assert executor == {'controller_mode': 'joint_trajectory', 'use_sim_time': True}


def test_robot_graph_has_no_bridge_and_remaps_to_the_robot_topics() -> None:
    nodes = describe_graph('robot', GraphOptions(use_sim_time=False))
    assert [node.name for node in nodes] == ['perception', 'policy', 'executor']
    remappings = robot_remappings()
    assert ('/camera/image_raw', '/camera/color/image_raw') in remappings
    assert all(source != target for source, target in remappings)
    for node in nodes:
        assert node.remappings == remappings
        assert node.parameters['use_sim_time'] is False


def test_robot_remappings_reject_a_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / 'robot.yaml'
    bad.write_text('remappings:\n  camera/image_raw: /camera/color/image_raw\n')
    with pytest.raises(ValueError, match='absolute topic names'):
        robot_remappings(bad)


def test_ros_arguments_are_understood_by_rcl() -> None:
    executor = describe_graph('sim', OPTIONS)[3]
    policy = describe_graph('sim', OPTIONS)[2]
    for description, expected in (
            (policy, {'checkpoint': '/tmp/some ckpt', 'policy_type': 'bc', 'use_sim_time': True,
                      'warmup_runs': 2}),
            (executor, {'controller_mode': 'joint_trajectory', 'control_rate': 200.0,
                        'use_sim_time': True})):
        arguments = ros_arguments(description)
        assert arguments[:3] == ['--ros-args', '-r', f'__node:={description.name}']
        context = Context()
        rclpy.init(args=['node', *arguments], context=context)
        try:
            node = Node('renamed_by_arguments', context=context,
                        automatically_declare_parameters_from_overrides=True)
            assert node.get_name() == description.name
            values = {name: node.get_parameter(name).value for name in expected}
            assert values == expected
            node.destroy_node()
        finally:
            rclpy.try_shutdown(context=context)


def test_empty_checkpoint_survives_the_command_line() -> None:
    context = Context()
    perception = describe_graph('sim', GraphOptions())[1]
    rclpy.init(args=['node', *ros_arguments(perception)], context=context)
    try:
        node = Node('x', context=context, automatically_declare_parameters_from_overrides=True)
        assert node.get_parameter('checkpoint').value == ''
        node.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)


def test_launch_arguments_and_their_defaults() -> None:
    sim = {argument.name: argument.default for argument in launch_arguments('sim')}
    assert sim == {'policy_type': 'diffusion', 'checkpoint': '', 'task': 'reach',
                   'gui': 'false', 'controller_mode': 'forward_position', 'seed': '0',
                   'real_time_factor': '1.0'}
    robot = {argument.name: argument.default for argument in launch_arguments('robot')}
    assert robot['use_sim_time'] == 'false' and 'gui' not in robot
    assert options_from_strings('sim', sim) == GraphOptions()
    assert options_from_strings('robot', {}).use_sim_time is False


def test_options_from_strings_parses_types() -> None:
    options = options_from_strings('sim', {'gui': 'True', 'seed': '3', 'real_time_factor': '0',
                                           'task': 'push'})
    assert (options.gui, options.seed, options.real_time_factor, options.task) == (
        True, 3, 0.0, 'push')


@pytest.mark.parametrize('mode, values, message', [
    ('sim', {'gui': 'maybe'}, "gui must be true or false, got 'maybe'"),
    ('sim', {'seed': '1.5'}, "seed must be an integer, got '1.5'"),
    ('sim', {'seed': '-1'}, 'seed must be a non-negative integer'),
    ('sim', {'real_time_factor': 'fast'}, "real_time_factor must be a number, got 'fast'"),
    ('sim', {'policy_type': 'gpt'}, "policy_type 'gpt' is not one of"),
    ('sim', {'controller_mode': 'effort'}, "controller_mode 'effort' is not one of"),
    ('sim', {'use_sim_time': 'true'}, 'unknown sim launch arguments'),
    ('robot', {'gui': 'true'}, 'unknown robot launch arguments'),
    ('moon', {}, "graph mode 'moon' is not one of"),
])
def test_bad_launch_values_name_the_argument(mode, values, message) -> None:
    with pytest.raises(ValueError, match=message):
        options_from_strings(mode, values)


def test_choices_agree_with_the_simulator_and_the_nodes() -> None:
    assert TASKS == world.TASKS
    assert POLICY_TYPES == ros_context.POLICY_TYPES


def test_executor_runs_the_checkpoints_own_action_horizon(tmp_path: Path) -> None:
    shipped = GraphOptions(policy_type='diffusion', task='reach')
    spec = json.loads((models_dir() / 'diffusion_reach' / 'config.json').read_text())
    executor = {node.name: node for node in describe_graph('sim', shipped)}['executor']
    assert executor.parameters['n_action_steps'] == spec['policy']['spec']['n_action_steps']
    missing = GraphOptions(checkpoint=str(tmp_path / 'not_there'))
    executor = {node.name: node for node in describe_graph('sim', missing)}['executor']
    assert 'n_action_steps' not in executor.parameters
