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

"""``dp-tt-ros bench inference`` smoke test: runs every variant and writes its JSON."""

import json

from dp_tt_ros.bench.inference import VARIANTS
from dp_tt_ros.cli import main


def test_bench_inference_writes_json_for_every_variant(tmp_path, capsys):
    out = tmp_path / 'inference.json'
    status = main(['bench', 'inference', '--down-dims', '16,32', '--horizon', '8',
                   '--obs-dim', '4', '--inference-steps', '2', '--repeats', '2', '--warmup', '1',
                   '--threads', '1', '--step-embed-dim', '16', '--json', str(out)])
    assert status == 0
    result = json.loads(out.read_text())
    assert result['default_path'] == 'traced'
    assert set(result['variants']) == set(VARIANTS)
    for stats in result['variants'].values():
        assert stats['ms_per_chunk']['n'] == 2 and stats['ms_per_chunk_median'] > 0
    assert result['ms_per_chunk_median'] == result['variants']['traced']['ms_per_chunk_median']
    assert result['denoiser_gflop_per_call'] > 0 and result['matmul_peak_gflops'] > 0
    assert result['config']['down_dims'] == '16,32'
    assert json.loads(capsys.readouterr().out) == result


def test_bench_inference_batch_reports_per_chunk_times(tmp_path, capsys):
    out = tmp_path / 'batch.json'
    assert main(['bench', 'inference', '--down-dims', '16,32', '--horizon', '8', '--obs-dim', '4',
                 '--inference-steps', '2', '--repeats', '2', '--warmup', '1', '--threads', '1',
                 '--step-embed-dim', '16', '--batch', '3', '--variants', 'traced',
                 '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['config']['batch'] == 3 and set(result['variants']) == {'traced'}
    # GFLOP/s counts all three chunks of a call against the per-chunk time.
    per_chunk_s = result['ms_per_chunk_median'] / 1e3
    assert abs(result['gflops_achieved'] * per_chunk_s
               - 2 * result['denoiser_gflop_per_call']) < 1e-9
    assert main(['bench', 'inference', '--batch', '0']) == 2
    assert '--batch 0' in capsys.readouterr().err


def test_bench_inference_rejects_bad_sizes(capsys):
    assert main(['bench', 'inference', '--down-dims', '16,x']) == 2
    assert "--down-dims '16,x'" in capsys.readouterr().err
    assert main(['bench', 'inference', '--down-dims', '16,32', '--horizon', '7']) == 2
    assert '--horizon 7 must be divisible by 2' in capsys.readouterr().err
    assert main(['bench', 'inference', '--variants', 'fastest']) == 2
    assert "unknown ['fastest']" in capsys.readouterr().err
