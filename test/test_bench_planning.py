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

"""``dp-tt-ros bench planning`` runs end to end on a tiny model and writes its JSON report."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dp_tt_ros.bench.planning import kernel_floor, replanning
from dp_tt_ros.policies.transformer.gpt import GPTConfig, TrajectoryGPT
from dp_tt_ros.policies.transformer.planner import PlanningOptions
from dp_tt_ros.cli import main


def test_bench_planning_writes_cached_and_reference_timings(tmp_path: Path) -> None:
    report = tmp_path / 'planning.json'
    command = [sys.executable, '-m', 'dp_tt_ros', 'bench', 'planning', '--json', str(report),
               '--beam-widths', '2', '--horizons', '2', '--repeats', '2',
               '--reference-repeats', '1', '--n-layer', '1', '--n-head', '1', '--n-embd', '16',
               '--n-bins', '8', '--state-dim', '11', '--window-transitions', '2',
               '--context-transitions', '1', '--no-default-setting']
    completed = subprocess.run(command, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 0, completed.stderr
    result = json.loads(report.read_text())
    assert result['benchmark'] == 'planning'
    assert result['model']['transition_dim'] == 11 + 8 + 2
    assert result['context_transitions'] == 1
    settings = {(row['beam_width'], row['planning_horizon']): row for row in result['settings']}
    assert list(settings) == [(2, 2)]
    for row in settings.values():
        assert row['cached_ms']['n'] == 2 and row['reference_ms']['n'] == 1
        assert row['speedup_median'] > 0
        # 7 decoded action dims + reward + value per step; 7 state dims (not gripper, goal).
        assert row['sequential_token_steps'] == 2 * (7 + 2) + 7
    assert 'default' not in result


def test_replanning_rate_against_the_control_period() -> None:
    assert replanning(40.0) == {'plans_per_second': 25.0, 'replans_every_control_step': True,
                                'replan_every_n_control_steps': 1}
    assert replanning(250.0)['replan_every_n_control_steps'] == 3


@pytest.mark.parametrize('arguments, message', [
    (['--repeats', '0'], '--repeats must be >= 1'),
    (['--beam-widths', '0'], 'beam widths and horizons must be >= 1'),
    (['--state-dim', '5'], '--state-dim must be >= 11'),
    (['--context-transitions', '-1'], '--context-transitions must be >= 0'),
    (['--tracked-targets', 'true'], 'tracked_targets needs a model trained with relative_actions'),
])
def test_bad_arguments_are_reported(arguments: list[str], message: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    assert main(['bench', 'planning', *arguments]) == 2
    assert message in capsys.readouterr().err


def test_kernel_floor_bounds_the_speedup_by_the_reference_per_token_step() -> None:
    model = TrajectoryGPT(GPTConfig(n_bins=8, transition_dim=5, block_size=20, n_layer=2,
                                    n_head=2, n_embd=16, dropout=0.0)).eval()
    row = {'sequential_token_steps': 10, 'cached_ms_per_token_step': 0.5,
           'reference_ms': {'median': 20.0}}
    floor = kernel_floor(model, row, PlanningOptions(beam_width=2, n_expand=2))
    assert floor['rows'] == 4
    assert floor['reference_us_per_token_step'] == 2000.0
    assert floor['measured_us_per_token_step'] == 500.0
    assert 0 < floor['us_per_token_step'] < 2000.0
    assert floor['speedup_bound'] == 2000.0 / floor['us_per_token_step']
