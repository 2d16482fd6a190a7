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
Sweeps: many evaluation runs from one YAML/JSON file, one JSON + markdown report and plots.

A sweep file has top-level defaults (``episodes``, ``seed``, ``batch`` and any run key), explicit
``runs`` and ``grids`` (a ``base`` run times the cartesian product of ``vary`` lists; a grid's
``group``, ``series``, ``checkpoint`` and ``label`` may be ``str.format`` templates over the run's
values, e.g. ``checkpoint: '{series}_{task}'``), and ``plots``. Every run key is an
:class:`EvalSettings` field, plus ``group`` and ``series`` that plots select and colour by.
Relative checkpoints are looked up in the models folder.
Finished runs are cached under ``OUT/runs/``, so an interrupted sweep resumes where it stopped;
a cached run counts only while its checkpoint's files are byte-identical (a checkpoint retrained
in place is evaluated again).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import asdict, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dp_tt_ros.evaluation.metrics import markdown_table
from dp_tt_ros.evaluation.runs import EXPERT, EvalSettings, RunOutcome, run_evaluation
from dp_tt_ros.policies.checkpoint import checkpoint_id

SETTING_KEYS = {f.name for f in fields(EvalSettings)} - {'tags'}
TAG_KEYS = {'group', 'series'}
RUN_KEYS = SETTING_KEYS | TAG_KEYS
TOP_LEVEL_KEYS = {'name', 'description', 'defaults', 'runs', 'grids', 'plots'} | RUN_KEYS
PLOT_KINDS = ('line', 'pareto', 'trajectories')
# Grid keys that are str.format templates over the run's values, formatted in this order.
TEMPLATE_KEYS = ('group', 'series', 'checkpoint', 'label')


class SweepError(ValueError):
    """A sweep file that cannot be run as written."""


def load_sweep_file(path: str | Path) -> dict[str, Any]:
    """Read a sweep definition from YAML or JSON."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f'sweep file {path} does not exist')
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise SweepError(f'{path} is not valid YAML/JSON: {error}') from error
    if not isinstance(data, dict):
        raise SweepError(f'{path} must hold a mapping with "runs" and/or "grids"')
    return data


def _check_keys(entry: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise SweepError(f'{where}: unknown keys {unknown}; expected some of {sorted(allowed)}')


def _resolve_checkpoint(checkpoint: str, models_dir: Path) -> str:
    if checkpoint == EXPERT or Path(checkpoint).is_absolute():
        return checkpoint
    return str(models_dir / checkpoint)


def _settings(entry: dict[str, Any], models_dir: Path, where: str) -> EvalSettings:
    _check_keys(entry, RUN_KEYS, where)
    missing = [key for key in ('checkpoint', 'task', 'episodes') if key not in entry]
    if missing:
        raise SweepError(f'{where}: missing {missing} (set them on the run, its grid base or '
                         f'the top level)')
    values = {key: value for key, value in entry.items() if key in SETTING_KEYS}
    values['checkpoint'] = _resolve_checkpoint(str(values['checkpoint']), models_dir)
    tags = {key: entry[key] for key in TAG_KEYS if key in entry}
    try:
        return EvalSettings(**values, tags=tags)
    except TypeError as error:
        raise SweepError(f'{where}: {error}') from error


def expand_runs(sweep: dict[str, Any], models_dir: Path) -> list[EvalSettings]:
    """Turn a sweep definition into the ordered list of runs it describes."""
    _check_keys(sweep, TOP_LEVEL_KEYS, 'sweep')
    defaults = {key: value for key, value in sweep.items() if key in RUN_KEYS}
    defaults.update(sweep.get('defaults') or {})
    runs: list[EvalSettings] = []
    for index, run in enumerate(sweep.get('runs') or []):
        runs.append(_settings({**defaults, **run}, models_dir, f'runs[{index}]'))
    for index, grid in enumerate(sweep.get('grids') or []):
        where = f'grids[{index}]'
        _check_keys(grid, {'base', 'vary'} | set(TEMPLATE_KEYS), where)
        vary = grid.get('vary') or {}
        if not vary or not all(isinstance(values, list) and values for values in vary.values()):
            raise SweepError(f'{where}: "vary" must map run keys to non-empty lists')
        for combination in itertools.product(*vary.values()):
            run = {**defaults, **(grid.get('base') or {}), **dict(zip(vary, combination))}
            for key in TEMPLATE_KEYS:  # in order: a label may use the formatted series
                if key in grid:
                    try:
                        run[key] = str(grid[key]).format(**run)
                    except KeyError as error:
                        raise SweepError(f'{where}: {key} template {grid[key]!r} uses '
                                         f'unknown key {error}') from error
            runs.append(_settings(run, models_dir, where))
    if not runs:
        raise SweepError('the sweep defines no runs: add "runs" or "grids"')
    labels = [run.display_label() for run in runs]
    duplicates = sorted({label for label in labels if labels.count(label) > 1})
    if duplicates:
        raise SweepError(f'run labels must be unique; repeated: {duplicates}')
    for index, plot in enumerate(sweep.get('plots') or []):
        _check_plot(plot, f'plots[{index}]')
    return runs


def _check_plot(plot: dict[str, Any], where: str) -> None:
    if plot.get('kind') not in PLOT_KINDS:
        raise SweepError(f'{where}: kind must be one of {PLOT_KINDS}, got {plot.get("kind")!r}')
    _check_keys(plot, {'kind', 'file', 'groups', 'labels', 'x', 'xlabel', 'log_x', 'title'},
                where)
    if 'file' not in plot or ('groups' in plot) == ('labels' in plot):
        raise SweepError(f'{where}: needs "file" and either "groups" (run groups) or "labels" '
                         f'(run labels) to choose its runs')
    if plot['kind'] == 'line' and plot.get('x') not in SETTING_KEYS:
        raise SweepError(f'{where}: a line plot needs "x", one of {sorted(SETTING_KEYS)}')


def _cache_paths(out_dir: Path, index: int) -> tuple[Path, Path]:
    return out_dir / 'runs' / f'{index:03d}.json', out_dir / 'runs' / f'{index:03d}.npz'


def _load_cached(out_dir: Path, index: int, settings: EvalSettings,
                 digest: str | None) -> RunOutcome | None:
    report_path, paths_path = _cache_paths(out_dir, index)
    if not (report_path.is_file() and paths_path.is_file()):
        return None
    report = json.loads(report_path.read_text())
    if report.get('settings') != json.loads(json.dumps(asdict(settings))):
        return None
    if digest is not None and report.get('checkpoint_id') != digest:
        return None
    with np.load(paths_path) as stored:
        ee_paths = [stored[key] for key in sorted(stored.files, key=lambda k: int(k[1:]))]
    return RunOutcome(report, [], ee_paths)


def _store(out_dir: Path, index: int, outcome: RunOutcome) -> None:
    report_path, paths_path = _cache_paths(out_dir, index)
    report_path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(paths_path, **{f'e{i}': path for i, path in enumerate(outcome.ee_paths)})
    report_path.write_text(json.dumps(outcome.report, indent=2) + '\n')


def _experiment_key(settings: EvalSettings) -> str:
    """Identify what a run measures: label and plot tags do not change the episodes."""
    values = asdict(settings)
    del values['label'], values['tags']
    return json.dumps(values, sort_keys=True)


def _relabelled(outcome: RunOutcome, settings: EvalSettings) -> RunOutcome:
    """Reuse an identical run's episodes under another label and group (no re-evaluation)."""
    report = {**outcome.report, 'label': settings.display_label(),
              'settings': asdict(settings), 'reused_from': outcome.report['label']}
    return RunOutcome(report, outcome.episodes, outcome.ee_paths)


def run_sweep(sweep: dict[str, Any], out_dir: Path, models_dir: Path,
              skip_missing: bool = False) -> dict[str, Any]:
    """
    Run (or resume) every run of ``sweep``; write results.json, results.md and the plots.

    Missing checkpoints are found before anything runs: an error lists them all, or with
    ``skip_missing`` their runs are left out and listed under ``skipped``.
    """
    from tqdm import tqdm

    from dp_tt_ros.evaluation.plots import draw_plot
    runs = expand_runs(sweep, models_dir)
    missing = sorted({run.checkpoint for run in runs
                      if run.checkpoint != EXPERT and not Path(run.checkpoint).is_dir()})
    if missing and not skip_missing:
        raise SweepError(f'checkpoints not found: {missing}; train them, fix the paths or pass '
                         f'--skip-missing')
    skipped = [run.display_label() for run in runs if run.checkpoint in missing]
    out_dir.mkdir(parents=True, exist_ok=True)
    outcomes: list[RunOutcome] = []
    by_experiment: dict[str, RunOutcome] = {}
    for index, settings in enumerate(tqdm(runs, desc='sweep', unit='run')):
        if settings.checkpoint in missing:
            continue
        digest = None if settings.checkpoint == EXPERT else checkpoint_id(settings.checkpoint)
        outcome = _load_cached(out_dir, index, settings, digest)
        if outcome is None:
            same = by_experiment.get(_experiment_key(settings))
            try:
                outcome = (_relabelled(same, settings) if same is not None
                           else run_evaluation(settings))
            except ValueError as error:
                raise SweepError(f'run {settings.display_label()!r}: {error}') from error
            if digest is not None:
                outcome.report['checkpoint_id'] = digest
            _store(out_dir, index, outcome)
        by_experiment.setdefault(_experiment_key(settings), outcome)
        outcomes.append(outcome)
    result = {
        'name': sweep.get('name', out_dir.name),
        'created': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'runs': [outcome.report for outcome in outcomes],
        'skipped': skipped,
        'plots': [],
    }
    for plot in sweep.get('plots') or []:
        path = draw_plot(plot, outcomes, out_dir)
        if path is not None:
            result['plots'].append(str(path.name))
    (out_dir / 'results.json').write_text(json.dumps(result, indent=2) + '\n')
    table = markdown_table([(outcome.report['label'], outcome.report['summary'])
                            for outcome in outcomes])
    title = f'# {result["name"]}\n\n' + (f'{sweep["description"]}\n\n'
                                         if sweep.get('description') else '')
    images = ''.join(f'\n![{name}]({name})\n' for name in result['plots'])
    (out_dir / 'results.md').write_text(title + table + images)
    return result
