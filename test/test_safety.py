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

"""SafetyFilter: commands never leave the position limits or exceed the velocity limit."""

import numpy as np
import pytest

from dp_tt_ros.control.safety import SafetyFilter
from dp_tt_ros.robot import COMMAND_JOINTS, HOME_POSITION, PANDA_LIMITS, JointLimits

PERIOD = 0.005
MAX_STEP = PANDA_LIMITS.max_velocity * PERIOD


def test_reachable_target_inside_limits_is_passed_through():
    safety = SafetyFilter(PANDA_LIMITS, PERIOD)
    target = HOME_POSITION - 0.5 * MAX_STEP
    np.testing.assert_array_equal(safety.filter(target, HOME_POSITION), target)


def test_far_target_moves_at_most_one_velocity_step():
    safety = SafetyFilter(PANDA_LIMITS, PERIOD)
    command = safety.filter(HOME_POSITION + 1.0, HOME_POSITION)
    np.testing.assert_allclose(command[:7], HOME_POSITION[:7] + MAX_STEP[:7])


def test_target_outside_limits_is_clamped_to_the_limit():
    safety = SafetyFilter(PANDA_LIMITS, 10.0)
    command = safety.filter(PANDA_LIMITS.upper + 1.0, HOME_POSITION)
    np.testing.assert_array_equal(command, PANDA_LIMITS.upper)


def test_nan_target_holds_the_current_command():
    safety = SafetyFilter(PANDA_LIMITS, PERIOD)
    target = HOME_POSITION + 0.001
    target[2] = np.nan
    target[5] = np.inf
    command = safety.filter(target, HOME_POSITION)
    assert command[2] == HOME_POSITION[2] and command[5] == HOME_POSITION[5]
    assert command[0] == pytest.approx(HOME_POSITION[0] + 0.001)


def test_non_finite_current_command_is_an_error():
    safety = SafetyFilter(PANDA_LIMITS, PERIOD)
    with pytest.raises(ValueError, match='current command must be finite'):
        safety.filter(HOME_POSITION, np.full(8, np.nan))


def test_current_command_outside_limits_is_pulled_back_inside():
    safety = SafetyFilter(PANDA_LIMITS, PERIOD)
    start = PANDA_LIMITS.upper + 0.001
    command = safety.filter(start, start)
    np.testing.assert_array_equal(command, PANDA_LIMITS.upper)


def test_random_targets_never_violate_limits():
    rng = np.random.default_rng(3)
    span = PANDA_LIMITS.upper - PANDA_LIMITS.lower
    for period in (0.001, 0.005, 0.05):
        safety = SafetyFilter(PANDA_LIMITS, period)
        command = HOME_POSITION.copy()
        for _ in range(2000):
            target = PANDA_LIMITS.lower + rng.uniform(-0.5, 1.5, 8) * span
            target[rng.random(8) < 0.05] = np.nan
            previous, command = command, safety.filter(target, command)
            assert np.all((command >= PANDA_LIMITS.lower) & (command <= PANDA_LIMITS.upper))
            step = np.abs(command - previous)
            assert np.all(step <= PANDA_LIMITS.max_velocity * period + 1e-12)


def test_filter_trajectory_limits_velocity_between_points():
    safety = SafetyFilter(PANDA_LIMITS, PERIOD)
    times = np.array([0.1, 0.2, 0.4])
    points = np.tile(HOME_POSITION, (3, 1))
    points[:, 0] = [1.0, -1.0, 0.0]
    filtered = safety.filter_trajectory(HOME_POSITION, 0.0, times, points)
    limit = PANDA_LIMITS.max_velocity[0]
    np.testing.assert_allclose(filtered[:, 0], [0.1 * limit, 0.1 * limit - 0.1 * limit, 0.0])
    assert np.all(np.abs(np.diff(filtered[:, 0])) <= limit * np.diff(times) + 1e-12)


def limits_with(**changes) -> JointLimits:
    values = {'names': COMMAND_JOINTS, 'lower': PANDA_LIMITS.lower,
              'upper': PANDA_LIMITS.upper, 'max_velocity': PANDA_LIMITS.max_velocity}
    values.update(changes)
    return JointLimits(**values)


@pytest.mark.parametrize('limits, period, message', [
    (PANDA_LIMITS, 0.0, 'control_period'),
    (PANDA_LIMITS, float('nan'), 'control_period'),
    (limits_with(lower=np.zeros(7)), PERIOD, 'lower limits must be 8 finite'),
    (limits_with(upper=PANDA_LIMITS.lower), PERIOD, 'not below upper limit'),
    (limits_with(max_velocity=np.zeros(8)), PERIOD, 'max_velocity must be > 0'),
])
def test_bad_configuration_is_named(limits, period, message):
    with pytest.raises(ValueError, match=message):
        SafetyFilter(limits, period)
