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
The launch-file side of the node graph: launch arguments in, launch_ros Node actions out.

``launch/sim.launch.py`` and ``launch/robot.launch.py`` only name their mode; everything else
comes from :mod:`dp_tt_ros.ros.graph`, the description ``dp-tt-ros sim`` uses too. ``launch`` and
``launch_ros`` are imported when a launch file runs, so this module imports without them.
"""

from __future__ import annotations

from typing import Any

from dp_tt_ros.ros.graph import describe_graph, launch_arguments, Mode, options_from_strings

PACKAGE = 'dp_tt_ros'


def launch_nodes(mode: Mode, context: Any) -> list[Any]:
    """Build one Node action per node of the described graph, from the launch arguments."""
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import Node

    values = {argument.name: LaunchConfiguration(argument.name).perform(context)
              for argument in launch_arguments(mode)}
    return [Node(package=PACKAGE, executable=node.executable, name=node.name,
                 output='screen', emulate_tty=True,
                 parameters=[*(str(path) for path in node.parameter_files), node.parameters],
                 remappings=list(node.remappings))
            for node in describe_graph(mode, options_from_strings(mode, values))]


def launch_description(mode: Mode) -> Any:
    """Declare the arguments and defer building the nodes until their values are known."""
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    return LaunchDescription([
        *(DeclareLaunchArgument(argument.name, default_value=argument.default,
                                description=argument.description)
          for argument in launch_arguments(mode)),
        OpaqueFunction(function=lambda context: launch_nodes(mode, context)),
    ])
