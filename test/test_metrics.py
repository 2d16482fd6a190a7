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

"""Metrics: Wilson and bootstrap intervals, path length, jerk, aggregation and the table."""

import json

import numpy as np
import pytest

from dp_tt_ros.evaluation.metrics import (EpisodeResult, Interval, bootstrap_interval,
                                          markdown_table, path_length, rms_jerk,
                                          summarize_episodes, wilson_interval)


@pytest.mark.parametrize('successes, trials, low, high', [
    (8, 10, 0.4902, 0.9433),
    (0, 10, 0.0, 0.2775),
    (10, 10, 0.7225, 1.0),
    (50, 100, 0.4038, 0.5962),
    (95, 100, 0.8882, 0.9785),
])
def test_wilson_matches_published_values(successes, trials, low, high):
    interval = wilson_interval(successes, trials)
    assert interval.value == pytest.approx(successes / trials)
    assert interval.low == pytest.approx(low, abs=5e-4)
    assert interval.high == pytest.approx(high, abs=5e-4)


@pytest.mark.parametrize('trials', [1, 7, 50, 100, 1000])
def test_wilson_bounds_contain_the_rate_exactly_at_the_extremes(trials):
    none, every = wilson_interval(0, trials), wilson_interval(trials, trials)
    assert none.low == 0.0 and every.high == 1.0
    assert none.low <= none.value <= none.high and every.low <= every.value <= every.high


def test_wilson_rejects_bad_counts():
    with pytest.raises(ValueError, match='trials'):
        wilson_interval(0, 0)
    with pytest.raises(ValueError, match='successes'):
        wilson_interval(11, 10)


def test_bootstrap_is_seeded_and_brackets_the_mean():
    values = np.random.default_rng(3).normal(2.0, 1.0, size=40)
    first = bootstrap_interval(values, seed=7)
    assert first == bootstrap_interval(values, seed=7)
    assert first != bootstrap_interval(values, seed=8)
    assert first.value == pytest.approx(values.mean())
    assert first.low < first.value < first.high
    # The interval narrows roughly like 1/sqrt(n).
    wide = bootstrap_interval(values[:10], seed=7)
    assert wide.high - wide.low > first.high - first.low
    constant = bootstrap_interval([1.5] * 5)
    assert (constant.low, constant.high) == (1.5, 1.5)


def test_bootstrap_median_is_not_swung_by_one_slow_episode():
    times = [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 4.3]
    median = bootstrap_interval(times, statistic=np.median)
    mean = bootstrap_interval(times)
    assert median.value == pytest.approx(0.575)
    assert 0.4 <= median.low < median.value < median.high <= 0.7
    assert mean.value > 1.0 and mean.high > 1.5
    assert median == bootstrap_interval(times, statistic=np.median)


def test_bootstrap_rejects_empty_and_nan():
    with pytest.raises(ValueError, match='non-empty'):
        bootstrap_interval([])
    with pytest.raises(ValueError, match='finite'):
        bootstrap_interval([1.0, float('nan')])


def test_interval_overlap():
    assert Interval(0.5, 0.4, 0.6).overlaps(Interval(0.65, 0.6, 0.7))
    assert not Interval(0.5, 0.4, 0.6).overlaps(Interval(0.8, 0.7, 0.9))


def cubic(times: np.ndarray, coefficients: np.ndarray) -> np.ndarray:
    """Per-joint cubic a*t^3 + b*t^2 + c*t + d; its jerk is the constant 6*a."""
    a, b, c, d = coefficients
    t = times[:, None]
    return a * t ** 3 + b * t ** 2 + c * t + d


def test_jerk_of_a_cubic_is_exact_at_any_sampling_rate():
    coefficients = np.random.default_rng(0).normal(size=(4, 8))
    expected = 6 * np.linalg.norm(coefficients[0, :7])
    control_times = np.arange(0, 31) * 0.1
    stream_times = np.arange(0, 601) * 0.005
    assert rms_jerk(control_times, cubic(control_times, coefficients)) == pytest.approx(expected)
    assert rms_jerk(stream_times, cubic(stream_times, coefficients)) == pytest.approx(expected)
    # A quadratic has no jerk at all; the gripper column (index 7) is ignored.
    coefficients[0, :7] = 0.0
    quadratic = cubic(control_times, coefficients)
    assert rms_jerk(control_times, quadratic) == pytest.approx(0, abs=1e-6)


def test_jerk_rejects_unsorted_times_and_takes_the_last_of_equal_stamps():
    with pytest.raises(ValueError, match='non-decreasing'):
        rms_jerk(np.array([0.0, 0.2, 0.1, 0.3]), np.zeros((4, 8)))
    times = np.arange(0, 31) * 0.1
    commands = cubic(times, np.random.default_rng(1).normal(size=(4, 8)))
    # A stale command streamed at the same instant as the next one changes nothing.
    doubled_times = np.insert(times, 5, times[5])
    doubled = np.insert(commands, 5, commands[4], axis=0)
    assert rms_jerk(doubled_times, doubled) == pytest.approx(rms_jerk(times, commands))


def test_path_length_of_a_straight_segment():
    commands = np.zeros((11, 8))
    commands[:, 0] = np.linspace(0.0, 0.3, 11)
    commands[:, 1] = np.linspace(0.0, 0.4, 11)
    commands[:, 7] = np.linspace(0.0, 0.04, 11)  # metres: not part of the joint-space length
    assert path_length(commands) == pytest.approx(0.5)


def make_episode(seed: int, success: bool, collisions: int) -> EpisodeResult:
    times = np.arange(20) * 0.1
    commands = np.zeros((20, 8))
    commands[:, 0] = 0.1 * seed * times
    return EpisodeResult(seed=seed, success=success, time_to_goal=1.0 + seed if success else None,
                         n_collisions=collisions, collision_time=0.1 * collisions, duration=2.0,
                         command_times=times, commands=commands)


def test_summary_and_markdown_table():
    episodes = [make_episode(0, True, 0), make_episode(1, True, 2), make_episode(2, False, 0),
                make_episode(3, True, 0)]
    summary = summarize_episodes(episodes, seed=0)
    assert summary == summarize_episodes(episodes, seed=0)
    json.dumps(summary)  # plain JSON types only
    assert summary['episodes'] == 4
    assert summary['success_rate']['value'] == pytest.approx(0.75)
    assert summary['success_rate'] == wilson_interval(3, 4).to_dict()
    assert summary['collision_rate']['value'] == pytest.approx(0.25)
    assert summary['time_to_goal']['value'] == pytest.approx((1 + 2 + 4) / 3)
    assert summary['path_length']['value'] == pytest.approx(0.1 * 1.9 * (0 + 1 + 2 + 3) / 4)
    assert [row['seed'] for row in summary['per_episode']] == [0, 1, 2, 3]
    table = markdown_table([('dp reach', summary)])
    lines = table.strip().splitlines()
    assert len(lines) == 3 and lines[2].startswith('| dp reach | 4 | 75% [')
    failed = summarize_episodes([make_episode(0, False, 1)])
    assert failed['time_to_goal'] is None
    assert 'n/a' in markdown_table([('bc', failed)])


def test_an_episode_without_commands_has_zero_path_and_jerk():
    empty = EpisodeResult(seed=0, success=False, time_to_goal=None, n_collisions=0,
                          collision_time=0.0, duration=6.0, command_times=np.zeros(0),
                          commands=np.zeros((0, 8)))
    assert rms_jerk(empty.command_times, empty.commands) == 0.0
    assert path_length(empty.commands) == 0.0
    summary = summarize_episodes([empty])
    assert summary['success_rate']['value'] == 0.0
