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
Observation history on a policy's time grid, aligned by capture stamps.

Sensors arrive at their own rates (joint states at 100 Hz or more, a camera at 10-30 Hz), but a
policy was trained on observations exactly ``dt`` apart. So the history for capture time ``t`` is,
for every sensor, the newest sample taken at or before each grid time ``t - (To - 1) dt, ...,
t - dt, t``. Nothing is interpolated: a policy must only ever see values a sensor really reported.

The capture time ``t`` of a history is the newest instant at which *every* sensor has reported,
i.e. the minimum over sensors of their newest stamps; a fast sensor never makes a slow one look
newer than it is. Grid times before a sensor's first sample take that first sample, exactly like
the training windows are padded at the start of an episode (buffers are cleared between episodes).

Stamps are integer nanoseconds everywhere so alignment is exact and the capture time travels to the
action chunk's header without rounding.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Generic, Mapping, TypeVar

import numpy as np

NANOSECONDS_PER_SECOND = 1_000_000_000

Value = TypeVar('Value')


def seconds_to_ns(seconds: float) -> int:
    """Convert seconds to integer nanoseconds, rounding to the nearest nanosecond."""
    return int(round(seconds * NANOSECONDS_PER_SECOND))


def grid_stamps(newest_ns: int, n_steps: int, dt_ns: int) -> list[int]:
    """Return the ``n_steps`` grid times ending at ``newest_ns``, oldest first."""
    if n_steps < 1:
        raise ValueError(f'n_steps must be >= 1, got {n_steps}')
    if dt_ns <= 0:
        raise ValueError(f'dt must be positive, got {dt_ns} ns')
    return [newest_ns - (n_steps - 1 - k) * dt_ns for k in range(n_steps)]


class StampedBuffer(Generic[Value]):
    """
    Samples of one sensor ordered by capture stamp, pruned to the time span a grid needs.

    ``span_ns`` must cover the history length plus the largest skew between this sensor and the
    slowest one, e.g. ``(To - 1) * dt + stale_timeout``: one sample older than the span is always
    kept so the oldest grid time still finds its sample at or before it.
    """

    def __init__(self, span_ns: int) -> None:
        if span_ns < 0:
            raise ValueError(f'span must be >= 0 ns, got {span_ns}')
        self.span_ns = span_ns
        self._stamps: list[int] = []
        self._values: list[Value] = []

    def __len__(self) -> int:
        return len(self._stamps)

    @property
    def newest_stamp(self) -> int | None:
        return self._stamps[-1] if self._stamps else None

    @property
    def newest_value(self) -> Value | None:
        return self._values[-1] if self._values else None

    def clear(self) -> None:
        self._stamps.clear()
        self._values.clear()

    def add(self, stamp_ns: int, value: Value) -> None:
        """Insert a sample; out-of-order samples are placed by stamp, equal stamps replace."""
        index = bisect.bisect_left(self._stamps, stamp_ns)
        if index < len(self._stamps) and self._stamps[index] == stamp_ns:
            self._values[index] = value
            return
        self._stamps.insert(index, stamp_ns)
        self._values.insert(index, value)
        keep_from = bisect.bisect_left(self._stamps, self._stamps[-1] - self.span_ns) - 1
        if keep_from > 0:
            del self._stamps[:keep_from]
            del self._values[:keep_from]

    def at_or_before(self, stamp_ns: int, pad: bool = False) -> Value | None:
        """
        Return the newest sample taken at or before ``stamp_ns``.

        Before the first sample this is ``None``, or the first sample when ``pad`` is set (the
        episode-start padding the policies were trained with).
        """
        index = bisect.bisect_right(self._stamps, stamp_ns) - 1
        if index < 0:
            return self._values[0] if pad and self._values else None
        return self._values[index]


@dataclass
class AlignedHistory:
    """One policy input: ``observations[key]`` is ``(n_steps, *shape)``, newest row last."""

    stamp_ns: int
    observations: dict[str, np.ndarray]


def align_history(buffers: Mapping[str, StampedBuffer[np.ndarray]], n_steps: int,
                  dt_ns: int) -> AlignedHistory | None:
    """Sample every buffer on the grid ending at the common capture time (None if one is empty)."""
    if not buffers:
        raise ValueError('align_history needs at least one sensor buffer')
    newest = [buffer.newest_stamp for buffer in buffers.values()]
    if any(stamp is None for stamp in newest):
        return None
    stamp_ns = min(stamp for stamp in newest if stamp is not None)
    grid = grid_stamps(stamp_ns, n_steps, dt_ns)
    observations = {
        key: np.stack([buffer.at_or_before(time, pad=True) for time in grid])
        for key, buffer in buffers.items()
    }
    return AlignedHistory(stamp_ns=stamp_ns, observations=observations)


def stale_reasons(newest_stamps: Mapping[str, int | None], now_ns: int,
                  timeout_ns: int) -> dict[str, str]:
    """
    Explain, per sensor, why it is missing or stale; fresh sensors are absent from the result.

    A stamp from further in the future than the timeout is as unusable as an old one: the sender
    and this node disagree about the clock (typically ``use_sim_time`` is set on one side only).
    """
    reasons: dict[str, str] = {}
    for name, stamp in newest_stamps.items():
        if stamp is None:
            reasons[name] = 'no message received yet'
            continue
        age = (now_ns - stamp) / NANOSECONDS_PER_SECOND
        if age > timeout_ns / NANOSECONDS_PER_SECOND:
            reasons[name] = (f'newest sample is {age:.3f} s old '
                             f'(timeout {timeout_ns / NANOSECONDS_PER_SECOND:.3f} s)')
        elif -age > timeout_ns / NANOSECONDS_PER_SECOND:
            reasons[name] = (f'newest sample is stamped {-age:.3f} s in the future; do the sender '
                             f'and this node use the same clock (use_sim_time)?')
    return reasons
