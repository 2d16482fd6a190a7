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
Simulated demo: PyBullet bridge + perception + policy + executor, all on simulated time.

A thin adapter over dp_tt_ros.ros.graph, which also drives `dp-tt-ros sim`:
`ros2 launch dp_tt_ros sim.launch.py --show-args` lists the arguments.
"""

from dp_tt_ros.ros.graph import describe_graph, launch_arguments, options_from_strings
from launch import LaunchContext, LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

MODE = 'sim'


def launch_nodes(context: LaunchContext) -> list[Node]:
    """Build one Node action per node of the described graph, from the launch arguments."""
    values = {argument.name: LaunchConfiguration(argument.name).perform(context)
              for argument in launch_arguments(MODE)}
    return [Node(package='dp_tt_ros', executable=node.executable, name=node.name,
                 output='screen', emulate_tty=True,
                 parameters=[*(str(path) for path in node.parameter_files), node.parameters],
                 remappings=list(node.remappings))
            for node in describe_graph(MODE, options_from_strings(MODE, values))]


def generate_launch_description() -> LaunchDescription:
    """Declare the arguments and defer building the nodes until their values are known."""
    return LaunchDescription([
        *(DeclareLaunchArgument(argument.name, default_value=argument.default,
                                description=argument.description)
          for argument in launch_arguments(MODE)),
        OpaqueFunction(function=launch_nodes),
    ])
