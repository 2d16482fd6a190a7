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

"""TimedPlan: time alignment, receding horizon, seam blending and chunk rejection."""

import numpy as np
import pytest

from dp_tt_ros.control.plan import BLEND_MODES, TimedPlan
from dp_tt_ros.control.safety import SafetyFilter
from dp_tt_ros.robot import HOME_POSITION, PANDA_LIMITS

DT = 0.1
H = 16
VELOCITY = np.array([0.3, -0.2, 0.1, 0.2, -0.1, 0.15, 0.25, -0.01])


def line_chunk(stamp: float, velocity: np.ndarray, origin: np.ndarray = HOME_POSITION,
               horizon: int = H) -> np.ndarray:
    """Rows of the straight line ``origin + velocity * t`` at the chunk's due times."""
    times = stamp + DT * np.arange(1, horizon + 1)
    return origin[None, :] + times[:, None] * velocity[None, :]


def constant_chunk(value: float, horizon: int = H) -> np.ndarray:
    chunk = np.tile(HOME_POSITION, (horizon, 1))
    chunk[:, 0] = value
    return chunk


def make_plan(**options) -> TimedPlan:
    options.setdefault('n_action_steps', 8)
    return TimedPlan(PANDA_LIMITS, **options)


def test_points_due_before_now_plus_latency_are_dropped():
    plan = make_plan(exec_latency=0.1)
    plan.hold(HOME_POSITION, now=0.25)
    chunk = line_chunk(0.0, VELOCITY)
    verdict = plan.add_chunk(0.0, DT, chunk, now=0.25)
    assert verdict.accepted and verdict.reason == ''
    # Rows due at 0.1, 0.2, 0.3 are at or before 0.25 + 0.1.
    assert verdict.n_dropped == 3 and verdict.n_kept == H - 3
    times, points = plan.remaining(0.25)
    np.testing.assert_allclose(times, DT * np.arange(4, H + 1))
    np.testing.assert_allclose(points, chunk[3:])


def test_row_due_exactly_at_latency_boundary_is_dropped():
    plan = make_plan(exec_latency=0.05)
    verdict = plan.add_chunk(0.0, 0.125, constant_chunk(0.1), now=0.075)
    assert verdict.n_dropped == 1
    assert plan.remaining(0.075)[0][0] == pytest.approx(0.25)


def test_primary_then_continuation_then_hold():
    plan = make_plan(n_action_steps=4)
    plan.hold(HOME_POSITION, now=0.0)
    chunk = line_chunk(0.0, VELOCITY)
    assert plan.add_chunk(0.0, DT, chunk, now=0.0).accepted
    assert plan.primary_end == pytest.approx(0.4)
    assert not plan.in_continuation(0.39)
    np.testing.assert_allclose(plan.target(0.3), chunk[2])
    # No new chunk by the end of the 4 primary rows: the plan continues into the rest...
    assert plan.in_continuation(0.41)
    np.testing.assert_allclose(plan.target(1.2), chunk[11])
    # ...and holds the last row after H.
    assert plan.end_time() == pytest.approx(1.6)
    np.testing.assert_allclose(plan.target(1.6), chunk[-1])
    np.testing.assert_allclose(plan.target(30.0), chunk[-1])
    assert plan.remaining(1.6)[0].size == 0


def test_target_interpolates_linearly_between_rows():
    plan = make_plan()
    plan.hold(HOME_POSITION, now=0.0)
    chunk = constant_chunk(0.0)
    chunk[:, 0] = np.arange(1, H + 1) * 0.1
    plan.add_chunk(0.0, DT, chunk, now=0.0)
    assert plan.target(0.0)[0] == pytest.approx(HOME_POSITION[0])
    assert plan.target(0.25)[0] == pytest.approx(0.25)
    assert plan.target(0.575)[0] == pytest.approx(0.575)


def test_no_target_before_any_plan_and_after_clear():
    plan = make_plan()
    assert plan.target(1.0) is None
    plan.hold(HOME_POSITION, 0.0)
    np.testing.assert_allclose(plan.target(5.0), HOME_POSITION)
    plan.clear()
    assert plan.target(5.0) is None and plan.primary_end is None


def test_replace_anchors_at_current_target_then_follows_the_new_chunk():
    plan = make_plan(blend='replace')
    plan.hold(HOME_POSITION, 0.0)
    plan.add_chunk(0.0, DT, constant_chunk(0.5), now=0.0)
    before = plan.target(0.45)
    plan.add_chunk(0.4, DT, constant_chunk(-0.5), now=0.45)
    np.testing.assert_allclose(plan.target(0.45), before)
    assert plan.target(0.5)[0] == pytest.approx(-0.5)
    assert plan.target(1.0)[0] == pytest.approx(-0.5)


def test_crossfade_ramps_from_the_old_to_the_new_chunk():
    plan = make_plan(blend='crossfade', crossfade_steps=4)
    plan.add_chunk(0.0, DT, constant_chunk(0.5), now=0.0)
    plan.add_chunk(0.2, DT, constant_chunk(-0.5), now=0.2)
    # Rows at 0.3, 0.4, 0.5 are blended with alpha = 0.25, 0.5, 0.75; from 0.6 on only new.
    assert plan.target(0.2)[0] == pytest.approx(0.5)
    assert plan.target(0.3)[0] == pytest.approx(0.25)
    assert plan.target(0.4)[0] == pytest.approx(0.0)
    assert plan.target(0.5)[0] == pytest.approx(-0.25)
    assert plan.target(0.6)[0] == pytest.approx(-0.5)
    assert plan.target(1.5)[0] == pytest.approx(-0.5)


def test_crossfade_with_zero_steps_is_replace():
    faded = make_plan(blend='crossfade', crossfade_steps=0)
    replaced = make_plan(blend='replace')
    for plan in (faded, replaced):
        plan.hold(HOME_POSITION, 0.0)
        plan.add_chunk(0.0, DT, constant_chunk(0.5), now=0.0)
        plan.add_chunk(0.2, DT, constant_chunk(-0.5), now=0.2)
    for time in np.linspace(0.0, 2.0, 41):
        np.testing.assert_allclose(faded.target(time), replaced.target(time))


def test_crossfade_ends_by_the_next_seam_when_replanning_every_step():
    plan = make_plan(blend='crossfade', crossfade_steps=2, n_action_steps=1)
    plan.hold(HOME_POSITION, 0.0)
    previous = 0.0
    for step in range(1, 6):
        now = step * DT
        plan.add_chunk(now, DT, constant_chunk(step / 10), now=now)
        # Each new chunk is fully adopted one step later, never averaged with the older ones.
        assert plan.target(now + DT)[0] == pytest.approx(step / 10)
        assert plan.target(now)[0] == pytest.approx(previous)
        previous = step / 10


@pytest.mark.parametrize('decay', [0.0, 0.1, -0.5])
def test_temporal_ensemble_weights_predictions_exponentially_oldest_first(decay):
    plan = make_plan(blend='temporal_ensemble', ensemble_decay=decay)
    plan.hold(HOME_POSITION, 0.0)
    values = [0.3, -0.2, 0.6]
    for index, value in enumerate(values):
        plan.add_chunk(index * DT, DT, constant_chunk(value), now=index * DT)
    weights = np.exp(-decay * np.arange(3))
    # Slot 0.5 was predicted by all three chunks, slot 1.7 only by the last two, 1.8 by one.
    assert plan.target(0.5)[0] == pytest.approx(np.dot(weights, values) / weights.sum())
    assert plan.target(1.7)[0] == pytest.approx(
        np.dot(weights[:2], values[1:]) / weights[:2].sum())
    assert plan.target(1.8)[0] == pytest.approx(values[-1])


def test_temporal_ensemble_does_not_average_with_a_hold():
    plan = make_plan(blend='temporal_ensemble')
    plan.hold(HOME_POSITION, 0.0)
    plan.add_chunk(0.0, DT, constant_chunk(0.5), now=0.0)
    assert plan.target(0.1)[0] == pytest.approx(0.5)


def test_constant_velocity_plan_split_across_chunks_stays_on_the_line():
    for blend in BLEND_MODES:
        plan = make_plan(blend=blend, exec_latency=0.03)
        for index in range(6):
            stamp = index * 0.35
            now = stamp + 0.07  # inference took 70 ms
            assert plan.add_chunk(stamp, DT, line_chunk(stamp, VELOCITY), now=now).accepted
            # The first chunk has nothing before its first kept row (due at 0.2) to anchor on.
            start = max(now, 0.2)
            for time in np.linspace(start, start + 0.35, 8):
                np.testing.assert_allclose(plan.target(time), HOME_POSITION + VELOCITY * time,
                                           atol=1e-12, err_msg=blend)


@pytest.mark.parametrize('points, stamp, dt, reason', [
    (np.full((H, 8), np.nan), 0.0, DT, 'NaN/Inf'),
    (np.where(np.arange(8) == 3, np.inf, HOME_POSITION) * np.ones((H, 1)), 0.0, DT, 'NaN/Inf'),
    (np.zeros((H, 7)), 0.0, DT, 'shape'),
    (np.zeros((0, 8)), 0.0, DT, 'shape'),
    (np.zeros(8), 0.0, DT, 'shape'),
    (constant_chunk(4.0), 0.0, DT, 'panda_joint1 = 4.0000, outside its limits'),
    (constant_chunk(0.1), -5.0, DT, 'in the past'),
    (constant_chunk(0.1), 3.0, DT, 'in the future'),
    (constant_chunk(0.1), 0.0, 0.0, 'dt'),
    (constant_chunk(0.1), 0.0, float('nan'), 'dt'),
])
def test_bad_chunks_are_rejected_with_a_reason_and_the_plan_is_kept(points, stamp, dt, reason):
    plan = make_plan()
    plan.hold(HOME_POSITION, 0.0)
    plan.add_chunk(0.0, DT, constant_chunk(0.5), now=0.0)
    before = plan.remaining(0.0)
    verdict = plan.add_chunk(stamp, dt, points, now=0.05)
    assert not verdict.accepted
    assert reason in verdict.reason
    after = plan.remaining(0.0)
    np.testing.assert_array_equal(before[0], after[0])
    np.testing.assert_array_equal(before[1], after[1])


def test_points_slightly_outside_limits_are_accepted_for_clamping():
    chunk = np.tile(PANDA_LIMITS.upper + 0.01 * (PANDA_LIMITS.upper - PANDA_LIMITS.lower),
                    (H, 1))
    assert make_plan().add_chunk(0.0, DT, chunk, now=0.0).accepted


@pytest.mark.parametrize('options, message', [
    ({'n_action_steps': 0}, 'n_action_steps'),
    ({'n_action_steps': 2.5}, 'n_action_steps'),
    ({'exec_latency': -0.1}, 'exec_latency'),
    ({'blend': 'average'}, 'blend'),
    ({'crossfade_steps': -1}, 'crossfade_steps'),
    ({'ensemble_decay': float('inf')}, 'ensemble_decay'),
    ({'out_of_limit_margin': -1.0}, 'out_of_limit_margin'),
])
def test_bad_plan_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        make_plan(**options)


def test_hold_rejects_wrong_size_or_nan():
    plan = make_plan()
    with pytest.raises(ValueError, match='8 finite'):
        plan.hold(np.zeros(7), 0.0)
    with pytest.raises(ValueError, match='8 finite'):
        plan.hold(np.full(8, np.nan), 0.0)


def test_random_chunks_never_move_the_target_and_commands_stay_safe():
    """Property test: whatever arrives, add_chunk keeps target(now) and commands stay legal."""
    rng = np.random.default_rng(7)
    period = 0.005
    span = PANDA_LIMITS.upper - PANDA_LIMITS.lower
    max_step = PANDA_LIMITS.max_velocity * period
    for trial in range(12):
        blend = BLEND_MODES[trial % 3]
        plan = make_plan(blend=blend, n_action_steps=int(rng.integers(1, H + 1)),
                         exec_latency=float(rng.uniform(0.0, 0.05)),
                         crossfade_steps=int(rng.integers(0, 5)),
                         ensemble_decay=float(rng.uniform(-0.5, 0.5)))
        safety = SafetyFilter(PANDA_LIMITS, period)
        command = HOME_POSITION.copy()
        plan.hold(command, 0.0)
        now = 0.0
        for _ in range(40):
            now += float(rng.uniform(0.0, 0.3))
            stamp = now - float(rng.uniform(-0.05, 0.4))
            chunk = PANDA_LIMITS.lower + rng.uniform(-0.1, 1.1, (H, 8)) * span
            if rng.random() < 0.2:
                chunk[rng.integers(H), rng.integers(8)] = rng.choice([np.nan, np.inf, -np.inf])
            before = plan.target(now)
            verdict = plan.add_chunk(stamp, DT, chunk, now)
            np.testing.assert_allclose(plan.target(now), before, atol=1e-9)
            assert verdict.accepted or verdict.reason
            for tick in range(20):
                previous = command
                command = safety.filter(plan.target(now + tick * period), previous)
                assert np.all(np.isfinite(command))
                assert np.all(command >= PANDA_LIMITS.lower)
                assert np.all(command <= PANDA_LIMITS.upper)
                assert np.all(np.abs(command - previous) <= max_step + 1e-12)
