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

"""torchrun DDP (gloo, CPU): 2 ranks x batch b train like 1 process x batch 2b."""

from pathlib import Path
import subprocess
import sys

import numpy as np
from safetensors.torch import load_file
import torch

from dp_tt_ros.training.trainer import read_train_log

STEPS = 30
# BC without dropout has a deterministic loss for a given batch, so the two runs must agree to
# float round-off (DP's per-rank diffusion noise would make them agree only statistically).
BC_SETTINGS = ['hidden_dims=[64]', 'dropout=0.0', 'horizon=8', 'n_action_steps=4']


def train_args(store: Path, out: Path, batch_size: int) -> list[str]:
    return ['-m', 'dp_tt_ros', 'train', '--policy', 'bc', '--data', str(store), '--out',
            str(out), '--steps', str(STEPS), '--batch-size', str(batch_size), '--lr', '1e-3',
            '--warmup-steps', '3', '--log-every', '1', '--checkpoint-every', '15',
            '--threads', '1', '--seed', '5', '--no-progress', '--config', *BC_SETTINGS]


def test_two_gloo_ranks_match_one_process_with_double_batch(tmp_path):
    store = tmp_path / 'reach.zarr'
    subprocess.run([sys.executable, '-m', 'dp_tt_ros', 'collect', '--task', 'reach',
                    '--episodes', '8', '--out', str(store), '--seed', '2'],
                   check=True, capture_output=True, timeout=300)
    single = subprocess.run([sys.executable, *train_args(store, tmp_path / 'single', 16)],
                            capture_output=True, text=True, timeout=300)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--standalone',
                          '--nproc_per_node', '2',
                          *train_args(store, tmp_path / 'ddp', 8)],
                         capture_output=True, text=True, timeout=300)
    assert ddp.returncode == 0, ddp.stderr
    assert ddp.stdout.count('final loss') == 1  # only rank 0 reports

    single_log, ddp_log = read_train_log(tmp_path / 'single'), read_train_log(tmp_path / 'ddp')
    assert [entry['step'] for entry in ddp_log] == list(range(1, STEPS + 1))  # rank 0 only
    single_loss = np.array([entry['loss'] for entry in single_log])
    ddp_loss = np.array([entry['loss'] for entry in ddp_log])
    np.testing.assert_allclose(ddp_loss, single_loss, rtol=1e-4, atol=1e-6)
    assert single_loss[-5:].mean() < single_loss[:5].mean()  # it did learn something

    for name in ('model.safetensors', 'resume/model.safetensors'):
        expected = load_file(str(tmp_path / 'single' / name))
        got = load_file(str(tmp_path / 'ddp' / name))
        assert expected.keys() == got.keys()
        for key in expected:
            torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5)
