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
Last line of defence before a command leaves the executor: position and velocity limits.

The plan may ask for anything (a chunk seam, a policy that jumps, a stale measured position);
the filter guarantees that every command is inside the position limits and moves each joint at
most ``max_velocity * period`` from the previous command. The velocity step is applied first and
the position clamp last, so the limits hold even when the previous command was outside them
(e.g. a measured start position a hair past a limit).
"""

from __future__ import annotations

import math

import numpy as np

from dp_tt_ros.robot import JointLimits


class SafetyFilter:
    """Clamp targets to joint position limits and a per-period velocity limit."""

    def __init__(self, limits: JointLimits, control_period: float) -> None:
        if not (math.isfinite(control_period) and control_period > 0.0):
            raise ValueError(f'control_period must be a positive number of seconds, '
                             f'got {control_period!r}')
        lower, upper = np.asarray(limits.lower, float), np.asarray(limits.upper, float)
        velocity = np.asarray(limits.max_velocity, float)
        dim = len(limits.names)
        for name, values in (('lower', lower), ('upper', upper), ('max_velocity', velocity)):
            if values.shape != (dim,) or not np.all(np.isfinite(values)):
                raise ValueError(f'{name} limits must be {dim} finite numbers for joints '
                                 f'{list(limits.names)}, got {values.tolist()}')
        if np.any(lower >= upper):
            joint = int(np.argmax(lower >= upper))
            raise ValueError(f'lower limit {lower[joint]} is not below upper limit '
                             f'{upper[joint]} for joint {limits.names[joint]}')
        if np.any(velocity <= 0.0):
            joint = int(np.argmax(velocity <= 0.0))
            raise ValueError(f'max_velocity must be > 0, got {velocity[joint]} for joint '
                             f'{limits.names[joint]}')
        self.limits = limits
        self.control_period = float(control_period)
        self._lower, self._upper, self._velocity = lower, upper, velocity

    def filter(self, target: np.ndarray, current_command: np.ndarray,
               period: float | None = None) -> np.ndarray:
        """
        Return the command closest to ``target`` reachable from ``current_command`` safely.

        ``period`` defaults to the control period; joints whose target is NaN/Inf keep their
        current command, so a corrupt target can only ever mean "hold".
        """
        duration = self.control_period if period is None else period
        target = np.asarray(target, dtype=float)
        current = np.asarray(current_command, dtype=float)
        if not np.all(np.isfinite(current)):
            raise ValueError(f'current command must be finite, got {current.tolist()}')
        target = np.where(np.isfinite(target), target, current)
        max_step = self._velocity * duration
        stepped = current + np.clip(target - current, -max_step, max_step)
        return np.clip(stepped, self._lower, self._upper)

    def filter_trajectory(self, start: np.ndarray, start_time: float, times: np.ndarray,
                          points: np.ndarray) -> np.ndarray:
        """
        Filter a timed trajectory point by point from ``start`` at ``start_time``.

        Used for joint_trajectory mode, where the controller interpolates between points: each
        point may move at most ``max_velocity * (t_k - t_{k-1})`` from the previous one.
        """
        filtered = np.empty_like(np.asarray(points, dtype=float))
        previous, previous_time = np.asarray(start, dtype=float), float(start_time)
        for index, (time, point) in enumerate(zip(times, points)):
            previous = self.filter(point, previous, float(time) - previous_time)
            previous_time = float(time)
            filtered[index] = previous
        return filtered
