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
Receding-horizon plan: action chunks anchored at their observation time, blended at seams.

The executor node and the in-process evaluator share this class, so a policy sees exactly the
same time alignment in both. All times are seconds on one clock (ROS time in the node, simulated
time in the evaluator); the plan never reads a clock itself.

API::

    plan = TimedPlan(limits, n_action_steps=8, exec_latency=0.01, blend='crossfade')
    plan.hold(measured_position, now)             # before the first chunk: stay where we are
    verdict = plan.add_chunk(stamp, dt, points, now)
    target = plan.target(now)                     # (d,) position, linear between rows
    times, points = plan.remaining(now)           # future points, e.g. for a JTC

A chunk of ``H`` points has row ``i`` due at ``stamp + (i + 1) * dt`` (see docs/architecture.md).
On :meth:`TimedPlan.add_chunk`:

* rows due at or before ``now + exec_latency`` are dropped: the robot cannot reach them anymore;
* rows ``0 .. n_action_steps - 1`` are the primary plan; rows after them are the continuation,
  followed only if no newer chunk arrives by ``primary_end``; after the last row the plan holds;
* the plan is re-anchored at ``(now, target(now))`` so the target never jumps, and the new rows
  are blended with the current plan: ``replace`` takes them as they are, ``crossfade`` ramps
  linearly from the current plan to the new chunk over ``min(crossfade_steps, n_action_steps) *
  dt`` seconds (the ramp ends by the next seam), and
  ``temporal_ensemble`` averages every time slot over all chunks that predicted it with weights
  ``exp(-ensemble_decay * k)``, ``k = 0`` for the oldest prediction (ACT's convention; a negative
  decay favours the newest chunk instead);
* a chunk with NaN/Inf, the wrong number of joints, points far outside the joint limits, a stamp
  more than one ``dt`` in the future or no point left after dropping is rejected with a reason,
  and the current plan is kept.

Call :meth:`TimedPlan.hold` with the measured position before the first chunk: without a plan to
anchor on, a chunk is taken as it is and its first row is the target until then. The plan does
not enforce limits beyond rejecting broken chunks; every target goes through
:class:`dp_tt_ros.control.safety.SafetyFilter` before it becomes a command.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dp_tt_ros.robot import JointLimits

BLEND_MODES = ('replace', 'crossfade', 'temporal_ensemble')


@dataclass(frozen=True)
class ChunkVerdict:
    """What :meth:`TimedPlan.add_chunk` did with one chunk; ``reason`` is empty when accepted."""

    accepted: bool
    reason: str = ''
    n_kept: int = 0
    n_dropped: int = 0


class TimedPlan:
    """A time-stamped piecewise-linear joint plan fed by action chunks."""

    def __init__(self, limits: JointLimits, *, n_action_steps: int, exec_latency: float = 0.0,
                 blend: str = 'replace', crossfade_steps: int = 2, ensemble_decay: float = 0.1,
                 out_of_limit_margin: float = 0.05) -> None:
        """
        Configure the plan; every argument is checked here, not on the first chunk.

        ``out_of_limit_margin`` is a fraction of each joint's range: rows further outside the
        position limits than that mean a broken policy (wrong units, wrong robot) and reject
        the chunk; rows within it are left for the safety filter to clamp.
        """
        if not isinstance(n_action_steps, (int, np.integer)) or n_action_steps < 1:
            raise ValueError(f'n_action_steps must be an integer >= 1, got {n_action_steps!r}')
        if not math.isfinite(exec_latency) or exec_latency < 0.0:
            raise ValueError(f'exec_latency must be a finite number of seconds >= 0, '
                             f'got {exec_latency!r}')
        if blend not in BLEND_MODES:
            raise ValueError(f'blend must be one of {BLEND_MODES}, got {blend!r}')
        if not isinstance(crossfade_steps, (int, np.integer)) or crossfade_steps < 0:
            raise ValueError(f'crossfade_steps must be an integer >= 0, got {crossfade_steps!r}')
        if not math.isfinite(ensemble_decay):
            raise ValueError(f'ensemble_decay must be finite, got {ensemble_decay!r}')
        if not math.isfinite(out_of_limit_margin) or out_of_limit_margin < 0.0:
            raise ValueError(f'out_of_limit_margin must be >= 0, got {out_of_limit_margin!r}')
        self.limits = limits
        self.n_action_steps = int(n_action_steps)
        self.exec_latency = float(exec_latency)
        self.blend = blend
        self.crossfade_steps = int(crossfade_steps)
        self.ensemble_ratio = math.exp(-ensemble_decay)
        margin = out_of_limit_margin * (limits.upper - limits.lower)
        self._reject_lower = limits.lower - margin
        self._reject_upper = limits.upper + margin
        self._times = np.zeros(0)
        self._points = np.zeros((0, self.dim))
        self._weights = np.zeros(0)
        self.primary_end: float | None = None

    @property
    def dim(self) -> int:
        return len(self.limits.names)

    @property
    def empty(self) -> bool:
        return self._times.size == 0

    def clear(self) -> None:
        """Forget the plan (new episode); :meth:`target` returns None until the next chunk."""
        self._times = np.zeros(0)
        self._points = np.zeros((0, self.dim))
        self._weights = np.zeros(0)
        self.primary_end = None

    def hold(self, position: np.ndarray, now: float) -> None:
        """
        Replace the plan with holding ``position`` from ``now`` on (start-up, watchdog, e-stop).

        A held position carries no ensemble weight, so the next chunk is not averaged with it.
        """
        position = np.asarray(position, dtype=float)
        if position.shape != (self.dim,) or not np.all(np.isfinite(position)):
            raise ValueError(f'hold position must be {self.dim} finite numbers, got {position}')
        self._times = np.array([float(now)])
        self._points = position[None, :].copy()
        self._weights = np.zeros(1)
        self.primary_end = None

    def in_continuation(self, now: float) -> bool:
        """Whether the plan is past its last chunk's primary rows (the next chunk is late)."""
        return self.primary_end is not None and now > self.primary_end

    def end_time(self) -> float | None:
        """Time of the last point, after which the plan holds; None without a plan."""
        return None if self.empty else float(self._times[-1])

    def target(self, now: float) -> np.ndarray | None:
        """Return the plan's position at ``now`` (linear between points, held after the end)."""
        if self.empty:
            return None
        return self._sample(now)[0]

    def remaining(self, now: float) -> tuple[np.ndarray, np.ndarray]:
        """Return the future points ``(times (N,), points (N, d))`` strictly after ``now``."""
        after = self._times > now
        return self._times[after].copy(), self._points[after].copy()

    def add_chunk(self, stamp: float, dt: float, points: np.ndarray, now: float) -> ChunkVerdict:
        """Merge a chunk observed at ``stamp`` into the plan, or reject it and keep the plan."""
        points = np.asarray(points, dtype=float)
        reason = self._check_chunk(stamp, dt, points, now)
        if reason:
            return ChunkVerdict(False, reason)
        times = stamp + dt * np.arange(1, len(points) + 1)
        fresh = times > now + self.exec_latency
        n_dropped = int(np.count_nonzero(~fresh))
        if not fresh.any():
            return ChunkVerdict(False, f'all {len(points)} points are in the past: the last is '
                                f'due {times[-1] - now:+.3f} s from now with exec_latency '
                                f'{self.exec_latency:.3f} s', 0, n_dropped)
        new_times, new_points = times[fresh], points[fresh]
        new_weights = np.ones(len(new_times))
        if not self.empty:
            new_points, new_weights = self._blend(now, dt, new_times, new_points)
            anchor_point, anchor_weight = self._sample(now)
            new_times = np.concatenate([[now], new_times])
            new_points = np.concatenate([anchor_point[None, :], new_points])
            new_weights = np.concatenate([[anchor_weight], new_weights])
        self._times, self._points, self._weights = new_times, new_points, new_weights
        self.primary_end = float(stamp + dt * self.n_action_steps)
        return ChunkVerdict(True, '', int(np.count_nonzero(fresh)), n_dropped)

    def _check_chunk(self, stamp: float, dt: float, points: np.ndarray, now: float) -> str:
        """Return why a chunk must be rejected, or an empty string when it is well-formed."""
        if points.ndim != 2 or points.shape[0] == 0 or points.shape[1] != self.dim:
            return f'chunk has shape {points.shape}, expected (H >= 1, {self.dim})'
        if not (math.isfinite(dt) and dt > 0.0):
            return f'chunk dt must be a positive number of seconds, got {dt!r}'
        if not math.isfinite(stamp):
            return f'chunk stamp must be finite, got {stamp!r}'
        if stamp > now + dt:
            return (f'chunk stamped {stamp - now:.3f} s in the future; the stamp must be the '
                    f'capture time of a past observation (clock mismatch? check use_sim_time)')
        bad_rows, bad_joints = np.nonzero(~np.isfinite(points))
        if bad_rows.size:
            return (f'chunk has {bad_rows.size} NaN/Inf values, first at point {bad_rows[0]} '
                    f'joint {self.limits.names[bad_joints[0]]}')
        outside = (points < self._reject_lower) | (points > self._reject_upper)
        if outside.any():
            row, joint = (int(index[0]) for index in np.nonzero(outside))
            return (f'point {row} commands {self.limits.names[joint]} = '
                    f'{points[row, joint]:.4f}, outside its limits '
                    f'[{self.limits.lower[joint]:.4f}, {self.limits.upper[joint]:.4f}]')
        return ''

    def _sample(self, now: float) -> tuple[np.ndarray, float]:
        """Interpolate point and ensemble weight at ``now`` (held before/after the ends)."""
        index = int(np.searchsorted(self._times, now, side='right'))
        if index == 0:
            return self._points[0].copy(), float(self._weights[0])
        if index == len(self._times):
            return self._points[-1].copy(), float(self._weights[-1])
        t0, t1 = self._times[index - 1], self._times[index]
        alpha = (now - t0) / (t1 - t0)
        point = (1.0 - alpha) * self._points[index - 1] + alpha * self._points[index]
        weight = (1.0 - alpha) * self._weights[index - 1] + alpha * self._weights[index]
        return point, float(weight)

    def _blend(self, now: float, dt: float, times: np.ndarray,
               points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Combine new rows with the current plan at the same times; return points, weights."""
        if self.blend == 'replace':
            return points, np.ones(len(times))
        # Per joint, np.interp holds the ends as _sample does, in one call for all the times.
        current = np.stack([np.interp(times, self._times, column) for column in self._points.T],
                           axis=1)
        if self.blend == 'crossfade':
            # The ramp ends by the next seam: a policy replanning every h < crossfade_steps steps
            # would otherwise never reach its own chunk and lag as a running average of chunks.
            span = min(self.crossfade_steps, self.n_action_steps) * dt
            if span == 0.0:
                return points, np.ones(len(times))
            alpha = np.clip((times - now) / span, 0.0, 1.0)[:, None]
            return (1.0 - alpha) * current + alpha * points, np.ones(len(times))
        # temporal_ensemble: slots past the current plan's end were predicted by nobody before.
        old_weight = np.interp(times, self._times, self._weights, right=0.0)
        # The k-th prediction of a slot weighs r**k; with W = sum_{j<k} r**j that is 1 - W(1-r).
        new_weight = np.maximum(1.0 - old_weight * (1.0 - self.ensemble_ratio), 0.0)
        total = old_weight + new_weight
        blended = (old_weight[:, None] * current + new_weight[:, None] * points) / total[:, None]
        return blended, total
