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

"""Sweeps: config expansion and validation, a tiny real sweep with plots, resuming from cache."""

import json
import shutil
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file, save_file

from dp_tt_ros import paths
from dp_tt_ros.evaluation.sweep import SweepError, expand_runs, load_sweep_file, run_sweep

TINY = {
    'name': 'tiny',
    'task': 'reach',
    'episodes': 2,
    'seed': 4,
    'batch': 2,
    'grids': [{'group': 'latency', 'label': 'expert latency={latency}', 'series': 'expert',
               'base': {'checkpoint': 'expert'}, 'vary': {'latency': [0.0, 0.3]}}],
    'runs': [{'label': 'expert again', 'checkpoint': 'expert', 'group': 'copy'}],
    'plots': [
        {'kind': 'line', 'groups': ['latency'], 'x': 'latency', 'file': 'latency.png'},
        {'kind': 'pareto', 'groups': ['latency', 'copy'], 'file': 'pareto.png'},
        {'kind': 'trajectories', 'labels': ['expert latency=0.0', 'expert latency=0.3'],
         'file': 'paths.png'},
        {'kind': 'line', 'groups': ['absent'], 'x': 'latency', 'file': 'absent.png'},
    ],
}


def test_shipped_sweeps_expand():
    for name, minimum in (('ablations', 30), ('comparison', 17)):
        sweep = load_sweep_file(paths.config_dir() / 'sweeps' / f'{name}.yaml')
        runs = expand_runs(sweep, Path('/models'))
        assert len(runs) >= minimum
        assert all(run.checkpoint == 'expert' or run.checkpoint.startswith('/models/')
                   for run in runs)
    comparison = expand_runs(load_sweep_file(paths.config_dir() / 'sweeps' / 'comparison.yaml'),
                             Path('/models'))
    labels = {run.display_label(): run for run in comparison}
    assert labels['bc push'].checkpoint == '/models/bc_push'
    assert labels['diffusion image reach'].task == 'reach'


@pytest.mark.parametrize('change, message', [
    ({'runs': [{'checkpoint': 'expert', 'speed': 2}]}, "unknown keys \\['speed'\\]"),
    ({'grids': [], 'runs': []}, 'defines no runs'),
    ({'runs': [{'checkpoint': 'expert', 'label': 'a'}, {'checkpoint': 'expert', 'label': 'a'}]},
     'unique'),
    ({'grids': [{'label': '{colour}', 'vary': {'latency': [0.0]}}]}, 'unknown key'),
    ({'plots': [{'kind': 'bars', 'groups': ['x'], 'file': 'f.png'}]}, 'kind must be one of'),
    ({'plots': [{'kind': 'line', 'groups': ['x'], 'file': 'f.png', 'x': 'speed'}]}, '"x"'),
])
def test_bad_sweeps_are_rejected(change, message):
    with pytest.raises(SweepError, match=message):
        expand_runs({**TINY, 'checkpoint': 'expert', **change}, Path('/models'))


def test_tiny_sweep_writes_report_plots_and_resumes(tmp_path):
    config = tmp_path / 'tiny.yaml'
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / 'out'
    result = run_sweep(load_sweep_file(config), out, tmp_path)
    labels = [run['label'] for run in result['runs']]
    assert labels == ['expert again', 'expert latency=0.0', 'expert latency=0.3']
    assert result['runs'][1]['reused_from'] == 'expert again'
    assert result['runs'][0]['summary'] == result['runs'][1]['summary']
    late = result['runs'][2]['summary']
    assert late['duration']['value'] > result['runs'][1]['summary']['duration']['value']
    assert result['plots'] == ['latency.png', 'pareto.png', 'paths.png']
    for name in result['plots']:
        assert (out / name).stat().st_size > 1000
    assert json.loads((out / 'results.json').read_text())['runs'][2]['label'] == labels[2]
    markdown = (out / 'results.md').read_text()
    assert markdown.startswith('# tiny') and '| expert latency=0.3 | 2 |' in markdown
    cached = {path.name: path.stat().st_mtime_ns for path in (out / 'runs').iterdir()}
    again = run_sweep(load_sweep_file(config), out, tmp_path)
    assert [run['wall_s'] for run in again['runs']] == [run['wall_s'] for run in result['runs']]
    assert cached == {path.name: path.stat().st_mtime_ns for path in (out / 'runs').iterdir()}


def test_missing_checkpoints_fail_fast_or_are_skipped(tmp_path):
    sweep = {'name': 'partial', 'task': 'reach', 'episodes': 1,
             'runs': [{'label': 'expert', 'checkpoint': 'expert'},
                      {'label': 'dp', 'checkpoint': 'diffusion_reach'}]}
    with pytest.raises(SweepError, match='diffusion_reach'):
        run_sweep(sweep, tmp_path / 'out', tmp_path)
    assert not (tmp_path / 'out').exists()
    result = run_sweep(sweep, tmp_path / 'out', tmp_path, skip_missing=True)
    assert [run['label'] for run in result['runs']] == ['expert']
    assert result['skipped'] == ['dp']


def test_a_checkpoint_retrained_in_place_is_evaluated_again(tmp_path):
    shutil.copytree(paths.models_dir() / 'bc_reach', tmp_path / 'bc_reach')
    sweep = {'name': 'retrain', 'task': 'reach', 'episodes': 1,
             'runs': [{'label': 'bc', 'checkpoint': 'bc_reach'}]}
    first = run_sweep(sweep, tmp_path / 'out', tmp_path)['runs'][0]
    assert run_sweep(sweep, tmp_path / 'out', tmp_path)['runs'][0]['wall_s'] == first['wall_s']
    weights = tmp_path / 'bc_reach' / 'model.safetensors'
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 0.01
    save_file(tensors, weights)
    again = run_sweep(sweep, tmp_path / 'out', tmp_path)['runs'][0]
    assert again['checkpoint_id'] != first['checkpoint_id']
    assert again['wall_s'] != first['wall_s']
