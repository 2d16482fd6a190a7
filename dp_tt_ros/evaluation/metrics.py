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
Per-episode evaluation results and their aggregation with 95 % confidence intervals.

Success-type rates get Wilson score intervals (well behaved at 0 % and 100 %, where the normal
approximation collapses to a zero-width interval). Continuous metrics get seeded percentile
bootstrap intervals of the mean, so the same episodes always give the same report. A median
interval is there for comparisons that one slow episode must not swing.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from dp_tt_ros.robot import ARM_JOINTS

Z_95 = 1.959963984540054
N_BOOTSTRAP = 2000
# Jerk is a property of the command trajectory, not of how densely it was sampled: the
# in-process evaluator logs one command per control tick while the ROS executor streams at
# 200 Hz, so both are resampled onto the policies' control grid before differentiating.
JERK_GRID_DT = 0.1
N_ARM = len(ARM_JOINTS)


@dataclass
class EpisodeResult:
    """Outcome of one closed-loop episode, shared by in-process and ROS evaluation."""

    seed: int
    success: bool
    time_to_goal: float | None
    n_collisions: int
    collision_time: float
    duration: float
    command_times: np.ndarray  # (T,) seconds since episode start
    commands: np.ndarray  # (T, 8) commanded joint targets


@dataclass(frozen=True)
class Interval:
    """A point estimate with its 95 % confidence interval."""

    value: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        """Return the JSON form used in summaries."""
        return {'value': self.value, 'ci_low': self.low, 'ci_high': self.high}

    def overlaps(self, other: 'Interval') -> bool:
        """Tell whether two intervals share a point (agreement within CIs)."""
        return self.low <= other.high and other.low <= self.high


def wilson_interval(successes: int, trials: int, z: float = Z_95) -> Interval:
    """Return the success rate with its Wilson score interval."""
    if trials <= 0:
        raise ValueError(f'trials must be positive, got {trials}')
    if not 0 <= successes <= trials:
        raise ValueError(f'successes must lie in [0, {trials}], got {successes}')
    rate = successes / trials
    denominator = 1.0 + z * z / trials
    centre = (rate + z * z / (2 * trials)) / denominator
    half_width = z * math.sqrt(rate * (1 - rate) / trials + z * z / (4 * trials * trials))
    half_width /= denominator
    # Rounding can put the bound a hair past the rate at 0 or 1 successes; the rate lies inside.
    return Interval(rate, min(rate, max(0.0, centre - half_width)),
                    max(rate, min(1.0, centre + half_width)))


def bootstrap_interval(values: Sequence[float], seed: int = 0,
                       n_resamples: int = N_BOOTSTRAP,
                       statistic: Callable[..., Any] = np.mean) -> Interval:
    """
    Return ``statistic`` (the mean unless told) with a seeded percentile-bootstrap 95 % interval.

    ``statistic`` must accept ``axis=1`` as ``np.mean`` and ``np.median`` do.
    """
    samples = np.asarray(values, dtype=float)
    if samples.ndim != 1 or samples.size == 0:
        raise ValueError(f'need a non-empty 1-D sequence of values, got shape {samples.shape}')
    if not np.all(np.isfinite(samples)):
        raise ValueError('bootstrap values must be finite')
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, samples.size, size=(n_resamples, samples.size))
    estimates = statistic(samples[indices], axis=1)
    low, high = np.percentile(estimates, [2.5, 97.5])
    return Interval(float(statistic(samples)), float(low), float(high))


def _check_trajectory(times: np.ndarray, commands: np.ndarray) -> None:
    if commands.ndim != 2 or times.shape != (commands.shape[0],):
        raise ValueError(f'expected command_times (T,) and commands (T, d), got '
                         f'{times.shape} and {commands.shape}')
    if times.size > 1 and np.any(np.diff(times) < 0):
        raise ValueError('command_times must be non-decreasing')


def path_length(commands: np.ndarray) -> float:
    """
    Return the joint-space length (rad) of the commanded arm trajectory.

    Only the 7 arm joints count: the gripper opening is in metres and would mix units.
    """
    arm = np.asarray(commands, dtype=float)[:, :N_ARM]
    if arm.shape[0] < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(arm, axis=0), axis=1).sum())


def resample(times: np.ndarray, commands: np.ndarray, dt: float) -> np.ndarray:
    """Linearly interpolate commands onto a uniform grid with spacing ``dt`` from the first."""
    grid = np.arange(times[0], times[-1] + 1e-9, dt)
    return np.stack([np.interp(grid, times, commands[:, j])
                     for j in range(commands.shape[1])], axis=1)


def rms_jerk(command_times: np.ndarray, commands: np.ndarray,
             dt: float = JERK_GRID_DT) -> float:
    """
    Return the RMS (over time) of the arm command's jerk vector norm, in rad/s^3.

    Jerk is the third finite difference on a uniform ``dt`` grid, exact for cubic polynomials.
    Trajectories shorter than four grid points have no defined jerk and give 0.
    """
    times = np.asarray(command_times, dtype=float)
    values = np.asarray(commands, dtype=float)
    _check_trajectory(times, values)
    if times.size < 4:
        return 0.0
    # Commands streamed faster than the clock ticks share a stamp: the last one is what held.
    last_of_stamp = np.append(np.diff(times) > 0, True)
    times, values = times[last_of_stamp], values[last_of_stamp]
    if times.size < 4:
        return 0.0
    grid_values = resample(times, values[:, :N_ARM], dt)
    if grid_values.shape[0] < 4:
        return 0.0
    jerk = np.diff(grid_values, n=3, axis=0) / dt ** 3
    return float(np.sqrt(np.mean(np.sum(jerk * jerk, axis=1))))


def episode_metrics(result: EpisodeResult) -> dict[str, Any]:
    """Return the JSON-friendly scalars of one episode (commands are summarised, not copied)."""
    times = np.asarray(result.command_times, dtype=float)
    commands = np.asarray(result.commands, dtype=float)
    _check_trajectory(times, commands)
    return {
        'seed': int(result.seed),
        'success': bool(result.success),
        'time_to_goal': None if result.time_to_goal is None else float(result.time_to_goal),
        'n_collisions': int(result.n_collisions),
        'collision_time': float(result.collision_time),
        'duration': float(result.duration),
        'n_commands': int(commands.shape[0]),
        'path_length': path_length(commands),
        'jerk_rms': rms_jerk(times, commands),
    }


def summarize_episodes(results: Sequence[EpisodeResult], seed: int = 0) -> dict[str, Any]:
    """
    Aggregate episodes into rates (Wilson CIs) and means (seeded bootstrap CIs).

    ``time_to_goal`` averages successful episodes only; it is ``None`` when none succeeded.
    """
    if not results:
        raise ValueError('no episodes to summarize')
    per_episode = [episode_metrics(result) for result in results]
    n = len(per_episode)
    successes = sum(row['success'] for row in per_episode)
    collided = sum(row['n_collisions'] > 0 for row in per_episode)
    summary: dict[str, Any] = {
        'episodes': n,
        'success_rate': wilson_interval(successes, n).to_dict(),
        'collision_rate': wilson_interval(collided, n).to_dict(),
    }
    times_to_goal = [row['time_to_goal'] for row in per_episode
                     if row['success'] and row['time_to_goal'] is not None]
    summary['time_to_goal'] = (bootstrap_interval(times_to_goal, seed).to_dict()
                               if times_to_goal else None)
    for key in ('n_collisions', 'collision_time', 'path_length', 'jerk_rms', 'duration'):
        summary[key] = bootstrap_interval([row[key] for row in per_episode], seed).to_dict()
    summary['per_episode'] = per_episode
    return summary


def interval_from_dict(entry: dict[str, float]) -> Interval:
    """Rebuild an :class:`Interval` from its ``to_dict`` form."""
    return Interval(entry['value'], entry['ci_low'], entry['ci_high'])


TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ('success_rate', 'success', 'percent'),
    ('time_to_goal', 'time to goal (s)', 'float'),
    ('collision_rate', 'episodes w/ collision', 'percent'),
    ('collision_time', 'collision time (s)', 'float'),
    ('path_length', 'path length (rad)', 'float'),
    ('jerk_rms', 'RMS jerk (rad/s^3)', 'float'),
)


def format_interval(entry: dict[str, float] | None, kind: str) -> str:
    """Format ``value [low, high]`` for a markdown cell."""
    if entry is None:
        return 'n/a'
    if kind == 'percent':
        return (f'{100 * entry["value"]:.0f}% [{100 * entry["ci_low"]:.0f}, '
                f'{100 * entry["ci_high"]:.0f}]')
    return f'{entry["value"]:.2f} [{entry["ci_low"]:.2f}, {entry["ci_high"]:.2f}]'


def markdown_table(rows: Sequence[tuple[str, dict[str, Any]]]) -> str:
    """Render ``(label, summary)`` pairs as one markdown table with 95 % CIs in brackets."""
    header = ['run', 'episodes'] + [title for _, title, _ in TABLE_COLUMNS]
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    for label, summary in rows:
        cells = [label, str(summary['episodes'])]
        cells += [format_interval(summary.get(key), kind) for key, _, kind in TABLE_COLUMNS]
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'
