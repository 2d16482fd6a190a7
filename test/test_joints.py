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

"""Joint-name mapping between messages and the executor's command order."""

import numpy as np
import pytest

from dp_tt_ros.control.joints import measured_command, reorder_joints
from dp_tt_ros.robot import ARM_JOINTS, COMMAND_JOINTS, FINGER_JOINTS


def test_reorder_joints_maps_names_to_the_executor_order():
    names = list(reversed(COMMAND_JOINTS))
    chunk = np.tile(np.arange(8.0), (3, 1))
    reordered = reorder_joints(names, chunk, COMMAND_JOINTS)
    np.testing.assert_array_equal(reordered[0], np.arange(8.0)[::-1])


@pytest.mark.parametrize('names, message', [
    (list(COMMAND_JOINTS[:7]) + ['panda_finger_joint1'], "unexpected \\['panda_finger_joint1'\\]"),
    (list(COMMAND_JOINTS[:7]) + ['panda_joint1'], 'duplicate'),
    (list(COMMAND_JOINTS[:7]), 'shape'),
])
def test_reorder_joints_rejects_wrong_names(names, message):
    with pytest.raises(ValueError, match=message):
        reorder_joints(names, np.zeros((3, 8)), COMMAND_JOINTS)


def test_measured_command_averages_the_fingers_in_the_requested_order():
    names = list(FINGER_JOINTS) + list(reversed(ARM_JOINTS))
    positions = [0.03, 0.01] + [float(i) for i in range(7, 0, -1)]
    joints = ['panda_gripper'] + list(ARM_JOINTS)
    np.testing.assert_allclose(measured_command(names, positions, joints),
                               [0.02, 1, 2, 3, 4, 5, 6, 7])


@pytest.mark.parametrize('names, positions, joints, message', [
    (list(ARM_JOINTS), [0.0] * 7, COMMAND_JOINTS, 'lacks joints'),
    (list(ARM_JOINTS + FINGER_JOINTS), [0.0] * 8, COMMAND_JOINTS, '9 names but 8 positions'),
    (list(ARM_JOINTS + FINGER_JOINTS), [0.0] * 9, ['elbow'], 'not Panda command joints'),
])
def test_measured_command_names_what_is_wrong(names, positions, joints, message):
    with pytest.raises(ValueError, match=message):
        measured_command(names, positions, joints)
