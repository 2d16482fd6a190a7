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

"""``dp-tt-ros bench all``: aggregation of benchmark JSON files into one report."""

import json
import time

import numpy as np

from dp_tt_ros.bench import summary
from dp_tt_ros.bench.common import summarize, write_json
from dp_tt_ros.cli import main


def measured_report(path, capsys) -> dict:
    """Write and read back a benchmark-style JSON file with real timings of a matmul."""
    matrix = np.random.default_rng(0).normal(size=(64, 64))
    samples = []
    for _ in range(20):
        started = time.perf_counter()
        matrix @ matrix
        samples.append(1e3 * (time.perf_counter() - started))
    fast = summarize(samples)
    result = {'matmul_ms': fast, 'config': {'size': 64},
              'cached': {'ms_per_step': fast, 'ms_per_step_median': fast['median']},
              'speedup_median': 2.5, 'runs': [{'ms': fast}], 'note': 'text is ignored'}
    write_json(result, path)
    capsys.readouterr()
    return json.loads(path.read_text())


def test_highlights_pick_medians_and_ratios(tmp_path, capsys):
    result = measured_report(tmp_path / 'planning.json', capsys)
    rows = list(summary.highlights(result))
    metrics = [row['metric'] for row in rows]
    # write_json sorts keys, so rows come in sorted order; cached.ms_per_step_median only
    # repeats the median of cached.ms_per_step.
    assert metrics == ['cached.ms_per_step', 'matmul_ms', 'runs[0].ms', 'speedup_median']
    assert rows[1]['median'] == result['matmul_ms']['median'] and rows[1]['n'] == 20
    assert rows[3] == {'metric': 'speedup_median', 'value': 2.5}


def test_report_and_markdown_cover_ok_failed_and_missing(tmp_path, capsys):
    result = measured_report(tmp_path / 'inference.json', capsys)
    entries = {
        'inference': {'status': 'ok', 'wall_s': 1.5, 'result': result},
        'ros': {'status': 'failed', 'wall_s': 0.2, 'returncode': 1,
                'error': 'Traceback...\nRuntimeError: no DDS'},
        'sim': {'status': 'missing', 'error': 'module dp_tt_ros.bench.sim is not installed'},
    }
    report = summary.summarize_reports(entries, quick=True)
    assert report['quick'] is True and report['machine']['cpu_count'] >= 1
    assert len(report['highlights']['inference']) == 4
    assert set(report['highlights']) == {'inference'}
    json.dumps(report)
    markdown = summary.markdown_report(report)
    assert '| inference | ok | 1.5 |' in markdown
    assert 'failed: RuntimeError: no DDS' in markdown
    assert 'missing: module dp_tt_ros.bench.sim is not installed' in markdown
    assert '| matmul_ms | ' in markdown and '| speedup_median | 2.5 |' in markdown


def test_bench_all_runs_a_real_benchmark_in_a_subprocess(tmp_path, capsys):
    report_path, markdown_path = tmp_path / 'bench.json', tmp_path / 'bench.md'
    rc = main(['bench', 'all', '--only', 'sim', '--quick', '--json', str(report_path),
               '--markdown', str(markdown_path)])
    assert rc == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())
    entry = report['benchmarks']['sim']
    assert entry['status'] == 'ok' and entry['returncode'] == 0
    assert entry['command'][-8:] == summary.QUICK_ARGS['sim']
    assert report['highlights']['sim'], 'the sim benchmark reports medians'
    assert all(row.get('median', row.get('value')) > 0 for row in report['highlights']['sim'])
    assert '## sim' in markdown_path.read_text()
