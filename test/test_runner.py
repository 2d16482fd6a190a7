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
The runner's process management and episode bookkeeping with real processes and real DDS.

Most tests run the real bridge (its own process, started exactly as ``dp-tt-ros sim`` starts it)
plus a small scripted commander node standing in for the policy pipeline: it streams one fixed
forward-position command on simulated time, and can be told to crash. The last test runs the
whole graph (bridge, perception, policy, executor) on a tiny untrained checkpoint: it checks the
plumbing, not the policy.
"""

import json
from pathlib import Path
import sys
import textwrap

import numpy as np
import pytest
import torch

from dp_tt_ros.cli import main as cli_main
from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.checkpoint import save_checkpoint
from dp_tt_ros.policies.diffusion.modeling import DiffusionPolicy
from dp_tt_ros.robot import HOME_POSITION, POSITION_LOWER, POSITION_UPPER
from dp_tt_ros.ros.graph import describe_graph, GraphOptions, launch_arguments, with_parameters
from dp_tt_ros.ros.runner import (_camera_parameters, GraphSession, node_command, NodeCrashed,
                                  ProcessSpec, run_episodes)

SEED = 5
TARGET = HOME_POSITION + np.array([0.1, 0.1, 0.0, 0.1, 0.0, 0.0, 0.0, -0.01])
COMMANDER = textwrap.dedent('''
    import sys

    import rclpy
    from rclpy.node import Node
    from std_msgs.msg import Float64MultiArray

    from dp_tt_ros.ros.process import run_node_process


    def build():
        node = Node('commander')
        target = node.declare_parameter('target', [0.0] * 8).value
        crash_after = node.declare_parameter('crash_after', 0.0).value
        publisher = node.create_publisher(Float64MultiArray,
                                          '/forward_position_controller/commands', 10)
        started = node.get_clock().now()

        def tick():
            elapsed = (node.get_clock().now() - started).nanoseconds * 1e-9
            if crash_after and elapsed > crash_after:
                print('commander: scripted failure', file=sys.stderr, flush=True)
                sys.exit(3)
            publisher.publish(Float64MultiArray(data=list(target)))

        node.create_timer(0.05, tick)
        return node


    sys.exit(run_node_process('commander', sys.argv, build, rclpy.spin))
''')


def graph(tmp_path: Path, crash_after: float = 0.0) -> list[ProcessSpec]:
    script = tmp_path / 'commander.py'
    script.write_text(COMMANDER)
    bridge = next(node for node in describe_graph('sim', GraphOptions(seed=SEED))
                  if node.name == 'pybullet_bridge')
    bridge = with_parameters(bridge, paused=True, real_time_factor=2.0, camera_rate=0.0)
    commander = ProcessSpec('commander', (
        sys.executable, str(script), '--ros-args', '-p', 'use_sim_time:=true',
        '-p', f'target:={[float(v) for v in TARGET]}', '-p', f'crash_after:={crash_after}'))
    return [node_command(bridge), commander]


def wait_until_up(monitor) -> None:
    monitor.spin_until(lambda: monitor.graph_ready(['pybullet_bridge', 'commander'], ['/clock']),
                       120.0, 'bridge and commander')


def test_episodes_through_reset_with_recorded_commands(tmp_path: Path) -> None:
    session = GraphSession(graph(tmp_path), 'forward_position', log_dir=tmp_path / 'logs')
    with session as monitor:
        wait_until_up(monitor)
        monitor.unpause()
        first = monitor.run_episode(0, timeout_s=1.0, stall_s=60.0)
        assert monitor.reset() == f'episode 1 seed {SEED + 1}'
        second = monitor.run_episode(1, timeout_s=1.0, stall_s=60.0)
    assert session.exit_codes == {'pybullet_bridge': 0, 'commander': 0}
    assert [first.seed, second.seed] == [SEED, SEED + 1]
    for result in (first, second):
        assert result.duration >= 1.0 or result.success
        assert (result.time_to_goal is None) != result.success
        # 20 Hz of sim time for >= 1 s; a sim-time timer on a loaded 2-core host skips periods.
        assert result.commands.shape[1] == 8 and len(result.commands) >= 5
        np.testing.assert_allclose(result.commands, np.tile(TARGET, (len(result.commands), 1)))
        assert np.all(np.diff(result.command_times) > 0)
        assert 0.0 <= result.command_times[0] and result.command_times[-1] <= result.duration
    assert 'reset: episode 1 seed 6' in (tmp_path / 'logs' / 'pybullet_bridge.log').read_text()


def test_a_crashing_node_is_named_with_its_output_and_everything_stops(tmp_path: Path) -> None:
    session = GraphSession(graph(tmp_path, crash_after=0.5), 'forward_position')
    with pytest.raises(NodeCrashed, match='node commander exited with status 3') as crash:
        with session as monitor:
            wait_until_up(monitor)
            monitor.unpause()
            monitor.run_episode(0, timeout_s=30.0, stall_s=60.0)
    assert 'commander: scripted failure' in str(crash.value)
    assert session.exit_codes['pybullet_bridge'] == 0
    assert all(process.poll() is not None for process in session.processes.processes.values())


def test_ctrl_c_stops_every_node_cleanly(tmp_path: Path) -> None:
    session = GraphSession(graph(tmp_path), 'forward_position')
    with pytest.raises(KeyboardInterrupt):
        with session as monitor:
            wait_until_up(monitor)
            raise KeyboardInterrupt
    assert session.exit_codes == {'pybullet_bridge': 0, 'commander': 0}


def test_runner_flags_are_the_sim_launch_arguments() -> None:
    from argparse import ArgumentParser
    from dp_tt_ros.ros import runner
    parser = ArgumentParser()
    runner.add_arguments(parser)
    dests = {action.dest for action in parser._actions} - {'help'}
    assert {argument.name for argument in launch_arguments('sim')} <= dests
    assert dests - {argument.name for argument in launch_arguments('sim')} == {
        'episodes', 'timeout_per_episode', 'log_dir'}


@pytest.mark.parametrize('argv, message', [
    (['--task', 'juggle'], "task 'juggle' is not one of"),
    (['--seed', 'x'], "seed must be an integer, got 'x'"),
    (['--checkpoint', '/no/such/checkpoint'], '/no/such/checkpoint'),
    (['--episodes', '0'], 'episodes must be >= 1'),
])
def test_bad_sim_flags_fail_before_starting_anything(argv, message, capsys) -> None:
    assert cli_main(['sim', *argv]) == 2
    assert message in capsys.readouterr().err


def tiny_checkpoint(directory: Path) -> Path:
    """Save an untrained low-dim diffusion policy whose actions stay near the home pose."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    spec = PolicySpec(policy_type='diffusion', obs_shapes={'joint_pos': [8]}, goal_dim=3,
                      horizon=8, n_action_steps=4, n_obs_steps=2, dt=0.1)
    near_home = np.clip(HOME_POSITION + rng.uniform(-0.05, 0.05, (50, 8)), POSITION_LOWER,
                        POSITION_UPPER)
    data = {'joint_pos': near_home, 'goal': rng.standard_normal((50, 3)), 'action': near_home}
    policy = DiffusionPolicy.build(data, spec, unet={'down_dims': [16, 32], 'step_embed_dim': 16})
    return save_checkpoint(policy, directory)


def test_bridge_camera_follows_the_checkpoint(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / 'ckpt')
    options = GraphOptions(checkpoint=str(checkpoint))
    assert _camera_parameters(options) == {'camera_rate': 0.0}
    config = json.loads((checkpoint / 'config.json').read_text())
    config['policy']['spec'].update(image_keys=['image'],
                                    obs_shapes={'joint_pos': [8], 'image': [64, 80, 3]})
    (checkpoint / 'config.json').write_text(json.dumps(config))
    assert _camera_parameters(options) == {'camera_width': 80, 'camera_height': 64}


def test_whole_graph_runs_seeded_episodes_on_joint_trajectories(tmp_path: Path) -> None:
    checkpoint = tiny_checkpoint(tmp_path / 'ckpt')
    options = GraphOptions(checkpoint=str(checkpoint), controller_mode='joint_trajectory')
    results = run_episodes(options, 2, seed=3, timeout_per_episode=1.5, startup_timeout=240.0)
    assert [result.seed for result in results] == [3, 4]
    for result in results:
        assert result.duration >= 1.5 or result.success
        assert len(result.commands) > 0 and result.commands.shape[1] == 8
        assert np.all(result.commands >= POSITION_LOWER - 1e-9)
        assert np.all(result.commands <= POSITION_UPPER + 1e-9)
        assert np.all(np.diff(result.command_times) > 0)
        assert result.command_times[-1] <= result.duration
