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

"""JointTrajectory validation and sampling with joint_trajectory_controller semantics."""

import numpy as np
import pytest

from dp_tt_ros.control.trajectory import plan_trajectory, TrajectoryRejected

JOINTS = ['a', 'b']
HERE = np.array([0.0, 1.0])


def plan(names=JOINTS, start=0.0, offsets=(1.0, 2.0), positions=((1.0, 3.0), (2.0, 5.0)),
         velocities=None, now=10.0, here=HERE, here_velocity=None):
    return plan_trajectory(JOINTS, names, start, offsets, positions, velocities, now, here,
                           here_velocity)


def test_stamp_zero_starts_now_from_the_current_state() -> None:
    trajectory = plan()
    np.testing.assert_allclose(trajectory.sample(10.0), HERE)
    np.testing.assert_allclose(trajectory.sample(10.5), [0.5, 2.0])
    np.testing.assert_allclose(trajectory.sample(11.0), [1.0, 3.0])
    np.testing.assert_allclose(trajectory.sample(11.25), [1.25, 3.5])
    np.testing.assert_allclose(trajectory.sample(50.0), [2.0, 5.0])
    assert trajectory.end_time == 12.0


def test_values_follow_the_message_joint_names() -> None:
    trajectory = plan(names=['b', 'a'], positions=((3.0, 1.0), (5.0, 2.0)))
    np.testing.assert_allclose(trajectory.sample(12.0), [2.0, 5.0])


def test_points_already_past_are_dropped() -> None:
    # Stamped 1.5 s ago: the first point is past, so the arm heads for the second from here.
    trajectory = plan(start=8.5)
    np.testing.assert_allclose(trajectory.sample(10.0), HERE)
    np.testing.assert_allclose(trajectory.sample(10.25), (HERE + [2.0, 5.0]) / 2)


def test_future_stamp_holds_until_the_trajectory_starts() -> None:
    trajectory = plan(start=20.0, offsets=(1.0, 2.0))
    np.testing.assert_allclose(trajectory.sample(15.5), HERE + (np.array([1.0, 3.0]) - HERE)
                               * 5.5 / 11.0)
    np.testing.assert_allclose(trajectory.sample(21.0), [1.0, 3.0])


def test_single_point_at_zero_jumps_to_it() -> None:
    trajectory = plan(offsets=(0.0,), positions=((4.0, 4.0),))
    np.testing.assert_allclose(trajectory.sample(10.0), [4.0, 4.0])


def test_velocities_give_a_hermite_curve_through_the_points() -> None:
    trajectory = plan(velocities=((1.0, 2.0), (0.0, 0.0)), here_velocity=np.zeros(2))
    np.testing.assert_allclose(trajectory.sample(11.0), [1.0, 3.0])
    np.testing.assert_allclose(trajectory.sample(12.0), [2.0, 5.0])
    middle = trajectory.sample(11.5)
    assert not np.allclose(middle, [1.5, 4.0])
    assert np.all(middle > [1.0, 3.0]) and np.all(middle < [2.0, 5.0])


@pytest.mark.parametrize('kwargs, reason', [
    ({'names': ['a']}, 'do not match the controller joints'),
    ({'names': ['a', 'a']}, 'do not match the controller joints'),
    ({'names': ['a', 'c']}, 'do not match the controller joints'),
    ({'offsets': (), 'positions': ()}, 'no points'),
    ({'offsets': (1.0, 1.0)}, 'strictly increasing'),
    ({'offsets': (2.0, 1.0)}, 'strictly increasing'),
    ({'offsets': (-1.0, 1.0)}, 'non-negative'),
    ({'positions': ((1.0,), (2.0, 5.0))}, 'every point needs 2 positions'),
    ({'positions': ((np.nan, 1.0), (2.0, 5.0))}, 'NaN or Inf'),
    ({'velocities': ((1.0, 2.0),)}, 'every point needs 2 velocities'),
    ({'start': 5.0}, 'ended in the past'),
])
def test_invalid_trajectories_are_rejected_with_a_reason(kwargs, reason) -> None:
    with pytest.raises(TrajectoryRejected, match=reason):
        plan(**kwargs)
