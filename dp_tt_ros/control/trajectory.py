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
Joint trajectories as ros2_control's joint_trajectory_controller (JTC) executes them.

A trajectory arrives with a start time (``header.stamp``; zero means "now") and points at
``time_from_start`` offsets. It is validated like JTC's ``validate_trajectory_msg`` and then
sampled at any time: from the state at arrival to the first point still in the future, then
point to point, holding the last point afterwards. Points already in the past when the trajectory
arrives are dropped (the behaviour of JTC's trajectory replacement) so a chunk anchored at an
observation's capture time never makes the arm jump back to a stale target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np


class TrajectoryRejected(ValueError):
    """A trajectory the controller refuses; the message is the logged reason."""


@dataclass(frozen=True)
class TimedTrajectory:
    """
    Absolute-time knots in controller joint order, ready to be sampled.

    ``times[0]`` is the arrival time and ``positions[0]`` the joint state then; velocities are
    ``None`` for position-only trajectories (sampled piecewise linearly) and otherwise give a
    piecewise cubic Hermite curve.
    """

    times: np.ndarray
    positions: np.ndarray
    velocities: np.ndarray | None

    @property
    def end_time(self) -> float:
        return float(self.times[-1])

    def sample(self, time: float) -> np.ndarray:
        """Return the joint targets at absolute ``time``; clamped to the first and last knot."""
        if time <= self.times[0]:
            return self.positions[0].copy()
        if time >= self.times[-1]:
            return self.positions[-1].copy()
        index = int(np.searchsorted(self.times, time, side='right')) - 1
        t0, t1 = self.times[index], self.times[index + 1]
        span = t1 - t0
        s = (time - t0) / span
        p0, p1 = self.positions[index], self.positions[index + 1]
        if self.velocities is None:
            return p0 + s * (p1 - p0)
        v0, v1 = self.velocities[index] * span, self.velocities[index + 1] * span
        s2, s3 = s * s, s * s * s
        return ((2 * s3 - 3 * s2 + 1) * p0 + (s3 - 2 * s2 + s) * v0
                + (-2 * s3 + 3 * s2) * p1 + (s3 - s2) * v1)


def plan_trajectory(controller_joints: Sequence[str], joint_names: Sequence[str],
                    start_time: float, times_from_start: Sequence[float],
                    positions: Sequence[Sequence[float]],
                    velocities: Sequence[Sequence[float]] | None,
                    now: float, current_position: np.ndarray,
                    current_velocity: np.ndarray | None = None) -> TimedTrajectory:
    """
    Validate a trajectory message's content and turn it into absolute-time knots.

    ``start_time`` is the header stamp in seconds (0 = start now), ``positions`` has one row per
    point in ``joint_names`` order, ``velocities`` is ``None`` or one row per point. Raises
    TrajectoryRejected with the reason for a joint-set mismatch, no points, rows of the wrong
    length, NaN/Inf values, ``time_from_start`` not strictly increasing or a trajectory that
    ended before ``now``.
    """
    expected = list(controller_joints)
    names = list(joint_names)
    if len(set(names)) != len(names) or set(names) != set(expected):
        raise TrajectoryRejected(f'joint names {names} do not match the controller joints '
                                 f'{expected} (any order, each exactly once)')
    if len(times_from_start) == 0:
        raise TrajectoryRejected('trajectory has no points')
    offsets = np.asarray(times_from_start, dtype=float)
    if not np.all(np.isfinite(offsets)) or offsets[0] < 0.0 or np.any(np.diff(offsets) <= 0.0):
        raise TrajectoryRejected(f'time_from_start must be non-negative and strictly increasing, '
                                 f'got {offsets.round(4).tolist()}')
    order = [names.index(joint) for joint in expected]
    target = _rows(positions, len(offsets), len(names), 'positions')[:, order]
    rates = None
    if velocities is not None:
        rates = _rows(velocities, len(offsets), len(names), 'velocities')[:, order]
    start = now if start_time == 0.0 else start_time
    absolute = start + offsets
    if absolute[-1] < now:
        raise TrajectoryRejected(f'trajectory ended in the past: start {start:.4f} s + last '
                                 f'time_from_start {offsets[-1]:.4f} s < now {now:.4f} s')
    future = absolute > now
    if not future.any():
        # Only a point at exactly ``now`` (e.g. a single point at time_from_start 0): jump to it.
        return TimedTrajectory(np.array([now]), target[-1:], None)
    here = np.asarray(current_position, dtype=float)[None, :]
    times = np.concatenate([[now], absolute[future]])
    knots = np.concatenate([here, target[future]])
    if rates is not None:
        here_rate = np.zeros_like(here) if current_velocity is None else (
            np.asarray(current_velocity, dtype=float)[None, :])
        rates = np.concatenate([here_rate, rates[future]])
    return TimedTrajectory(times, knots, rates)


def _rows(values: Sequence[Sequence[float]], n_points: int, n_joints: int,
          field: str) -> np.ndarray:
    """Stack per-point rows, checking their count, width and finiteness."""
    rows = [np.asarray(row, dtype=float) for row in values]
    if len(rows) != n_points or any(row.shape != (n_joints,) for row in rows):
        raise TrajectoryRejected(f'every point needs {n_joints} {field} (one per joint name), '
                                 f'got sizes {[row.size for row in rows]}')
    array = np.stack(rows)
    if not np.all(np.isfinite(array)):
        raise TrajectoryRejected(f'{field} contain NaN or Inf')
    return array
