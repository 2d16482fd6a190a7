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
Joint-name bookkeeping between messages and the executor's command order.

A chunk or a joint state names its joints; the executor works in the order of its ``joints``
parameter. Mapping by name (never by position) is what keeps a policy trained with another
joint order, or another robot, from ever being executed.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from dp_tt_ros.robot import ARM_JOINTS, FINGER_JOINTS, GRIPPER_COMMAND_NAME


def reorder_joints(names: Sequence[str], points: np.ndarray,
                   expected: Sequence[str]) -> np.ndarray:
    """
    Return ``points`` with columns reordered from ``names`` to ``expected`` order.

    Raises ValueError naming the missing and unexpected joints when the sets differ, so a chunk
    from a policy trained on another robot or gripper layout is never executed.
    """
    names, expected = list(names), list(expected)
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != len(names):
        raise ValueError(f'chunk has shape {points.shape} but {len(names)} joint names '
                         f'{names}; expected (H, {len(names)})')
    if len(set(names)) != len(names):
        duplicates = sorted({name for name in names if names.count(name) > 1})
        raise ValueError(f'duplicate joint names {duplicates} in chunk')
    if set(names) != set(expected):
        missing = [name for name in expected if name not in names]
        unexpected = [name for name in names if name not in expected]
        raise ValueError(f'chunk joint names {names} do not match the executor joints '
                         f'{expected}: missing {missing}, unexpected {unexpected}')
    return points[:, [names.index(name) for name in expected]]


def measured_command(names: Sequence[str], positions: Sequence[float],
                     joints: Sequence[str]) -> np.ndarray:
    """
    Return a Panda joint state as a command vector in ``joints`` order.

    The gripper command is the opening of one finger, so the measured value is the mean of the
    two finger joints, as the simulator and the bridge define it.
    """
    index = {name: i for i, name in enumerate(names)}
    missing = [name for name in ARM_JOINTS + FINGER_JOINTS if name not in index]
    if missing:
        raise ValueError(f'joint state lacks joints {missing}; got {list(names)}')
    if len(positions) != len(names):
        raise ValueError(f'joint state has {len(names)} names but {len(positions)} positions')
    values = {name: float(positions[index[name]]) for name in ARM_JOINTS}
    values[GRIPPER_COMMAND_NAME] = float(np.mean([positions[index[f]] for f in FINGER_JOINTS]))
    unknown = [name for name in joints if name not in values]
    if unknown:
        raise ValueError(f'joints {unknown} are not Panda command joints {list(values)}')
    return np.array([values[name] for name in joints])
