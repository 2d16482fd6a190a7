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

"""Smoke test of ``dp-tt-ros bench ros``: the real graph produces the JSON (no timing asserts)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from dp_tt_ros.cli import main
from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.checkpoint import save_checkpoint
from dp_tt_ros.policies.diffusion.modeling import DiffusionPolicy
from dp_tt_ros.robot import HOME_POSITION


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    """Save a tiny untrained policy whose normaliser keeps its actions near the home pose."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    spec = PolicySpec(policy_type='diffusion', obs_shapes={'joint_pos': [8], 'joint_vel': [8]},
                      goal_dim=3, horizon=8, n_action_steps=4, n_obs_steps=2, dt=0.1)
    near_home = HOME_POSITION + rng.uniform(-0.05, 0.05, (50, 8))
    near_home[:, 7] = rng.uniform(0.0, 0.04, 50)  # the gripper's whole range
    data = {'joint_pos': near_home, 'joint_vel': rng.uniform(-0.1, 0.1, (50, 8)),
            'goal': rng.uniform(-0.5, 0.5, (50, 3)), 'action': near_home}
    policy = DiffusionPolicy.build(data, spec, unet={'down_dims': [16, 32], 'step_embed_dim': 16})
    return save_checkpoint(policy, tmp_path / 'ckpt')


@pytest.mark.parametrize('mode', ['forward_position', 'joint_trajectory'])
def test_bench_ros_writes_overhead_percentiles(checkpoint: Path, tmp_path: Path,
                                               mode: str) -> None:
    out = tmp_path / 'ros.json'
    assert main(['bench', 'ros', '--checkpoint', str(checkpoint), '--trials', '3',
                 '--warmup-trials', '1', '--controller-mode', mode, '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['completed_trials'] == 3 and result['controller_mode'] == mode
    for key in ('overhead_ms', 'end_to_end_ms', 'inference_ms'):
        assert result[key]['n'] == 3
    assert result['overhead_ms']['median'] == pytest.approx(
        result['end_to_end_ms']['median'] - result['inference_ms']['median'], abs=50.0)
    assert set(result['components_ms']) == {'capture_to_policy_receive',
                                            'policy_handoff_and_publish',
                                            'chunk_publish_to_first_command'}
    assert 'DDS' in result['method'] and result['target_p99_ms'] == 5.0
    assert 0 <= result['first_command_immediate'] <= 3
    if mode == 'joint_trajectory':
        assert result['first_command_immediate'] == 0


def test_bench_ros_streams_observations_like_a_robot(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / 'streamed.json'
    assert main(['bench', 'ros', '--checkpoint', str(checkpoint), '--trials', '3',
                 '--warmup-trials', '1', '--stream-hz', '100', '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['stream_hz'] == 100.0 and result['completed_trials'] >= 1
    assert 'streamed at 100 Hz' in result['method']
    assert result['end_to_end_ms']['median'] > result['inference_ms']['median']
    encode = result['perception_encode_and_publish_ms']
    assert 0 < encode['p50'] <= encode['p99'] <= encode['max']
    # The probe plays ros2_control at the executor's priority; each node reports what it got
    # from its config file (or 'normal' where SCHED_FIFO is not permitted).
    probe = result['probe_scheduling']
    assert probe == 'SCHED_FIFO 50' or probe.startswith('normal (')
    scheduling = result['node_scheduling']
    assert scheduling['perception'] in ('SCHED_FIFO 48', 'normal')
    assert scheduling['policy'] in ('SCHED_FIFO 45', 'normal')
    assert scheduling['executor'] in ('SCHED_FIFO 50', 'normal')
    # Their config files also ask for CPUs that never halt (or warn where that is refused).
    assert set(result['node_cpu_wakeup_latency'].values()) <= {'at most 0 us', 'system setting'}
    assert set(result['node_cpu_wakeup_latency']) == {'perception', 'policy', 'executor'}


def test_bench_ros_rejects_an_invalid_realtime_priority(
        checkpoint: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(['bench', 'ros', '--checkpoint', str(checkpoint), '--realtime-priority',
                 '100']) == 2
    assert '--realtime-priority must be 0 (off) to 99, got 100' in capsys.readouterr().err


def test_bench_ros_rejects_a_missing_checkpoint(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    assert main(['bench', 'ros', '--checkpoint', str(tmp_path / 'nope')]) == 2
    assert 'does not exist' in capsys.readouterr().err
