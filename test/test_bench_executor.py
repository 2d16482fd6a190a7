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

"""Smoke test of ``dp-tt-ros bench executor``: it runs end to end; no timing is asserted."""

import json
import subprocess
import sys

import numpy as np

from dp_tt_ros.bench.executor import wave
from dp_tt_ros.cli import main
from dp_tt_ros.robot import PANDA_LIMITS


def test_bench_runs_the_real_executor_under_inference_load(tmp_path):
    output = tmp_path / 'executor.json'
    completed = subprocess.run(
        [sys.executable, '-m', 'dp_tt_ros', 'bench', 'executor', '--duration', '2',
         '--down-dims', '16,32', '--inference-steps', '2', '--json', str(output)],
        capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    result = json.loads(output.read_text())
    assert result['benchmark'] == 'executor'
    assert 'inference back to back' in result['load']
    for phase in ('idle', 'inference'):
        measured = result['phases'][phase]
        assert measured['commands'] > 10 and measured['command_rate_hz'] > 0
        assert {'median', 'p99'} <= set(measured['period_jitter_ms'])
        assert measured['chunk_rate_hz'] > 0
    loaded = result['phases']['inference']
    assert loaded['inferences_per_s'] > 0 and result['phases']['idle']['inferences_per_s'] == 0
    assert loaded['executor_chunks_accepted_total'] >= 2
    assert loaded['executor_chunks_rejected_total'] == 0
    assert result['period_jitter_p99_ms'] == loaded['period_jitter_ms']['p99']
    # Immediate commands on chunk arrival are counted apart from the grid's periods.
    assert result['settings']['immediate_command'] is True
    assert 0 < result['immediate_commands'] == loaded['immediate_commands']
    assert loaded['executor_immediate_commands_total'] >= loaded['immediate_commands']
    assert 'grid' in result['jitter_method']


def test_scripted_chunks_stay_inside_the_joint_limits():
    rows = wave(np.linspace(0.0, 10.0, 2001))
    assert np.all(rows >= PANDA_LIMITS.lower) and np.all(rows <= PANDA_LIMITS.upper)


def test_bad_duration_is_a_command_error(capsys):
    assert main(['bench', 'executor', '--duration', '0']) == 2
    assert '--duration must be > 0' in capsys.readouterr().err
