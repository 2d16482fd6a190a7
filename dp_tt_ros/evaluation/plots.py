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
Sweep plots with matplotlib (Agg backend, files only).

* ``line``: success rate (Wilson 95 % CI bars) against one run setting, one line per series;
* ``pareto``: success rate against measured single-chunk inference time, with the frontier of
  runs that no faster run beats;
* ``trajectories``: top-down end-effector paths of every episode, one panel per run, which is
  where a unimodal policy averaging two demo modes shows up (``avoid``).
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

import matplotlib
import numpy as np

from dp_tt_ros.evaluation.runs import RunOutcome

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def _selected(plot: dict[str, Any], outcomes: Sequence[RunOutcome]) -> list[RunOutcome]:
    """Return the runs a plot shows: by group, or by label in the plot's order."""
    if 'labels' in plot:
        by_label = {outcome.report['label']: outcome for outcome in outcomes}
        return [by_label[label] for label in plot['labels'] if label in by_label]
    groups = plot['groups'] if isinstance(plot['groups'], list) else [plot['groups']]
    return [outcome for outcome in outcomes
            if outcome.report['settings']['tags'].get('group') in groups]


def _series(outcome: RunOutcome) -> str:
    settings = outcome.report['settings']
    return str(settings['tags'].get('series') or Path(settings['checkpoint']).name)


def _success(outcome: RunOutcome) -> tuple[float, float, float]:
    rate = outcome.report['summary']['success_rate']
    return 100 * rate['value'], 100 * rate['ci_low'], 100 * rate['ci_high']


def _error_bars(points: list[tuple[float, float, float]]) -> np.ndarray:
    return np.array([[value - low for value, low, _ in points],
                     [high - value for value, _, high in points]])


def line_plot(plot: dict[str, Any], outcomes: Sequence[RunOutcome], axes: Any) -> None:
    """Plot success against ``plot['x']`` for each series."""
    by_series: dict[str, list[tuple[float, tuple[float, float, float]]]] = defaultdict(list)
    for outcome in outcomes:
        x = outcome.report['settings'][plot['x']]
        if x is not None:
            by_series[_series(outcome)].append((float(x), _success(outcome)))
    for series, points in by_series.items():
        points.sort()
        xs = [x for x, _ in points]
        ys = [y for _, y in points]
        axes.errorbar(xs, [y[0] for y in ys], yerr=_error_bars(ys), marker='o', capsize=3,
                      label=series)
    if plot.get('log_x'):
        axes.set_xscale('log')
    axes.set_xlabel(plot.get('xlabel', plot['x']))


def inference_ms(outcome: RunOutcome) -> float | None:
    """Median single-chunk inference time of a run, if it was measured."""
    probe = outcome.report.get('inference_probe_ms')
    return None if probe is None else float(probe['median'])


def pareto_plot(plot: dict[str, Any], outcomes: Sequence[RunOutcome], axes: Any) -> None:
    """Plot success against inference time with the Pareto frontier."""
    points = []
    by_series: dict[str, list[Any]] = defaultdict(list)
    for outcome in outcomes:
        milliseconds = inference_ms(outcome)
        if milliseconds is not None:
            point = (milliseconds, _success(outcome), outcome.report['label'])
            points.append(point)
            by_series[_series(outcome)].append(point)
    for series, series_points in by_series.items():
        axes.errorbar([p[0] for p in series_points], [p[1][0] for p in series_points],
                      yerr=_error_bars([p[1] for p in series_points]), fmt='o', capsize=3,
                      label=series)
        for x, (y, _, _), label in series_points:
            axes.annotate(label, (x, y), fontsize=6, xytext=(3, 3), textcoords='offset points')
    frontier_x, frontier_y, best = [], [], -1.0
    for x, (y, _, _), _ in sorted(points, key=lambda p: (p[0], -p[1][0])):
        if y > best:
            frontier_x.append(x)
            frontier_y.append(y)
            best = y
    axes.step(frontier_x, frontier_y, where='post', color='black', linewidth=1, alpha=0.6,
              label='Pareto frontier')
    axes.set_xscale('log')
    axes.set_xlabel('median inference time per chunk, batch 1 (ms)')


def trajectory_plot(plot: dict[str, Any], outcomes: Sequence[RunOutcome], out_path: Path) -> None:
    """Draw top-down end-effector paths, one panel per run."""
    figure, panels = plt.subplots(1, len(outcomes), figsize=(4 * len(outcomes), 4),
                                  squeeze=False, sharex=True, sharey=True)
    for axes, outcome in zip(panels[0], outcomes):
        per_episode = outcome.report['summary']['per_episode']
        for path, row in zip(outcome.ee_paths, per_episode):
            if len(path):
                axes.plot(path[:, 0], path[:, 1], color='tab:green' if row['success']
                          else 'tab:red', alpha=0.5, linewidth=1)
        axes.set_title(outcome.report['label'], fontsize=9)
        axes.set_xlabel('x (m)')
        axes.set_aspect('equal', adjustable='box')
    panels[0][0].set_ylabel('y (m)')
    figure.suptitle(plot.get('title', 'end-effector paths (green: success, red: failure)'))
    figure.tight_layout()
    figure.savefig(out_path, dpi=120)
    plt.close(figure)


def draw_plot(plot: dict[str, Any], outcomes: Sequence[RunOutcome], out_dir: Path) -> Path | None:
    """Draw one plot of a sweep into ``out_dir``; ``None`` when none of its runs exist."""
    selected = _selected(plot, outcomes)
    if not selected:
        return None
    out_path = out_dir / plot['file']
    if plot['kind'] == 'trajectories':
        trajectory_plot(plot, selected, out_path)
        return out_path
    figure, axes = plt.subplots(figsize=(6, 4))
    if plot['kind'] == 'line':
        line_plot(plot, selected, axes)
    else:
        pareto_plot(plot, selected, axes)
    axes.set_ylabel('success rate (%)')
    axes.set_ylim(-5, 105)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    axes.set_title(plot.get('title', ''))
    figure.tight_layout()
    figure.savefig(out_path, dpi=120)
    plt.close(figure)
    return out_path
