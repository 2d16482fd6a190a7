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

"""``dp-tt-ros eval``: JSON report, markdown table, GIFs, a real DP checkpoint, clear errors."""

import json

import pytest

from dp_tt_ros.cli import main
from test_rollout import DP_TASK, tiny_diffusion_checkpoint


def test_expert_eval_writes_json_markdown_and_gifs(tmp_path, capsys):
    report_path, table_path, gifs = tmp_path / 'r.json', tmp_path / 't.md', tmp_path / 'gifs'
    rc = main(['eval', '--checkpoint', 'expert', '--task', 'reach', '--episodes', '2',
               '--seed', '10', '--json', str(report_path), '--markdown', str(table_path),
               '--record', str(gifs)])
    assert rc == 0
    report = json.loads(report_path.read_text())
    assert report['mode'] == 'in-process' and report['policy_type'] == 'expert'
    assert report['settings']['seed'] == 10 and report['settings']['task'] == 'reach'
    summary = report['summary']
    assert summary['episodes'] == 2
    assert [row['seed'] for row in summary['per_episode']] == [10, 11]
    assert set(summary['success_rate']) == {'value', 'ci_low', 'ci_high'}
    assert summary['success_rate']['value'] == 1.0
    assert sorted(path.name for path in gifs.iterdir()) == ['reach_seed10.gif',
                                                            'reach_seed11.gif']
    table = table_path.read_text()
    assert table in capsys.readouterr().out
    assert '| expert reach | 2 | 100% [' in table


def test_real_diffusion_checkpoint_with_inference_options(tmp_path):
    checkpoint = tiny_diffusion_checkpoint(tmp_path / 'diffusion_pick_place')
    report_path = tmp_path / 'dp.json'
    rc = main(['eval', '--checkpoint', str(checkpoint), '--task', DP_TASK, '--episodes', '1',
               '--max-steps', '5', '--num-inference-steps', '3', '--sampler', 'ddpm',
               '--latency', '0.1', '--json', str(report_path)])
    assert rc == 0
    report = json.loads(report_path.read_text())
    assert report['policy_type'] == 'diffusion'
    assert report['settings']['num_inference_steps'] == 3
    assert report['summary']['per_episode'][0]['n_commands'] == 5
    assert report['inference_probe_ms']['n'] == 5
    assert report['chunks_rejected'] == 0, report['rejection_reasons']
    rc = main(['eval', '--checkpoint', str(checkpoint), '--task', DP_TASK, '--episodes', '1',
               '--num-inference-steps', '1000'])
    assert rc == 2


@pytest.mark.parametrize('arguments, message', [
    (['--checkpoint', '/does/not/exist', '--task', 'reach'], '/does/not/exist does not exist'),
    (['--checkpoint', 'expert'], '--task is required'),
    (['--checkpoint', 'expert', '--task', 'reach', '--latency', '-1'], '--latency must be'),
    (['--checkpoint', 'expert', '--task', 'reach', '--episodes', '0'], '--episodes must be'),
    (['--checkpoint', 'expert', '--task', 'reach', '--sampler', 'ddim'], 'no inference options'),
    (['--sweep', '/does/not/exist.yaml'], 'does not exist'),
])
def test_bad_arguments_give_one_line_errors(arguments, message, capsys):
    assert main(['eval', *arguments]) == 2
    error = capsys.readouterr().err
    assert error.startswith('dp-tt-ros eval: error:') and message in error
