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
Real robot: perception + policy + executor wired to the robot topics of config/robot.yaml.

A thin adapter over dp_tt_ros.ros.graph, which also drives `dp-tt-ros sim`:
`ros2 launch dp_tt_ros robot.launch.py --show-args` lists the arguments.
"""

from dp_tt_ros.ros.launch_adapter import launch_description


def generate_launch_description():
    """Describe the robot graph (see dp_tt_ros.ros.launch_adapter)."""
    return launch_description('robot')
