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

"""Policy lifecycle node over real rclpy/DDS: transitions, stamps, no queueing, mismatches."""

from __future__ import annotations

import gc
from pathlib import Path
import threading
import time
from typing import Callable, Iterator

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from lifecycle_msgs.msg import State, Transition
from lifecycle_msgs.srv import ChangeState, GetState
import numpy as np
import pytest
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile
from std_msgs.msg import Float32MultiArray
import torch
from trajectory_msgs.msg import JointTrajectory

from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.checkpoint import checkpoint_id, load_policy, save_checkpoint
from dp_tt_ros.policies.diffusion.modeling import DiffusionPolicy
from dp_tt_ros.policies.transformer.modeling import TrajectoryTransformerPolicy
from dp_tt_ros.robot import COMMAND_JOINTS
from dp_tt_ros.ros.context import encode_context, NodeConfigError, stamp_to_ns
from dp_tt_ros.ros.policy_node import inference_options, PolicyNode, warm_up

STAMP = 1_700_000_000_987_654_321


@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Save a tiny untrained low-dim diffusion policy with a goal."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    spec = PolicySpec(policy_type='diffusion', obs_shapes={'joint_pos': [8]}, goal_dim=3,
                      horizon=8, n_action_steps=4, n_obs_steps=2, dt=0.1)
    data = {'joint_pos': rng.standard_normal((50, 8)), 'goal': rng.standard_normal((50, 3)),
            'action': rng.standard_normal((50, 8))}
    policy = DiffusionPolicy.build(data, spec, unet={'down_dims': [16, 32], 'step_embed_dim': 16})
    return save_checkpoint(policy, tmp_path_factory.mktemp('policy') / 'ckpt')


class Probe(Node):
    """Drives the lifecycle over its services, publishes contexts, records chunks."""

    def __init__(self, context: rclpy.Context) -> None:
        super().__init__('policy_probe', context=context)
        self.contexts = self.create_publisher(Float32MultiArray, '/policy/context',
                                              QoSProfile(depth=100))
        self.chunks: list[JointTrajectory] = []
        self.diagnostics: list[DiagnosticStatus] = []
        self.create_subscription(JointTrajectory, '/policy/action_chunk', self.chunks.append,
                                 QoSProfile(depth=100))
        self.create_subscription(DiagnosticArray, '/diagnostics', self._on_diagnostics,
                                 QoSProfile(depth=100))
        self.change_state = self.create_client(ChangeState, '/policy/change_state')
        self.get_state = self.create_client(GetState, '/policy/get_state')

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        self.diagnostics.extend(s for s in msg.status if s.name.startswith('policy'))

    def transition(self, transition_id: int) -> bool:
        assert self.change_state.wait_for_service(timeout_sec=10.0)
        future = self.change_state.call_async(
            ChangeState.Request(transition=Transition(id=transition_id)))
        wait_for(future.done, timeout=60.0)
        return future.result().success

    def state(self) -> int:
        assert self.get_state.wait_for_service(timeout_sec=10.0)
        future = self.get_state.call_async(GetState.Request())
        wait_for(future.done)
        return future.result().current_state.id

    def latest_diagnostic(self) -> dict[str, str]:
        if not self.diagnostics:
            return {}
        status = self.diagnostics[-1]
        return {'level': status.level, 'message': status.message,
                **{item.key: item.value for item in status.values}}


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError('condition not met before the deadline')
        time.sleep(0.01)


Graph = tuple[rclpy.Context, PolicyNode, 'Probe', MultiThreadedExecutor, threading.Thread]


def make_graph(overrides: list[Parameter]) -> Graph:
    context = rclpy.Context()
    rclpy.init(context=context)
    node = PolicyNode(context=context, parameter_overrides=[
        Parameter('autostart', value=False), Parameter('diagnostics_period', value=0.2),
        *overrides])
    probe = Probe(context)
    executor = MultiThreadedExecutor(num_threads=3, context=context)
    executor.add_node(node)
    executor.add_node(probe)
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()
    return context, node, probe, executor, thread


@pytest.fixture
def graph_factory() -> Iterator[Callable[[list[Parameter]], tuple[PolicyNode, Probe]]]:
    made = []

    def factory(overrides: list[Parameter]) -> tuple[PolicyNode, Probe]:
        made.append(make_graph(overrides))
        return made[-1][1], made[-1][2]
    yield factory
    for context, node, probe, executor, thread in made:
        executor.shutdown()
        thread.join()
        node.release()
        node.destroy_node()
        probe.destroy_node()
        rclpy.shutdown(context=context)


def publish_context(probe: Probe, checkpoint: Path, stamp_ns: int,
                    identity: str | None = None) -> None:
    context = np.full((2, 8), 0.1, np.float32)
    probe.contexts.publish(encode_context(context, np.array([0.4, 0.0, 0.3], np.float32),
                                          stamp_ns, identity or checkpoint_id(checkpoint)))


def test_lifecycle_and_chunk_stamped_with_the_capture_time(
        graph_factory: Callable, checkpoint: Path) -> None:
    node, probe = graph_factory([Parameter('checkpoint', value=str(checkpoint))])
    assert probe.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert probe.state() == State.PRIMARY_STATE_INACTIVE
    wait_for(lambda: probe.contexts.get_subscription_count() > 0)
    publish_context(probe, checkpoint, STAMP - 1)  # inactive: ignored
    wait_for(lambda: node.counts['ignored_while_inactive'] == 1)
    assert probe.transition(Transition.TRANSITION_ACTIVATE)
    wait_for(lambda: node.chunk_pub.get_subscription_count() > 0)
    publish_context(probe, checkpoint, STAMP)
    wait_for(lambda: len(probe.chunks) == 1)
    chunk = probe.chunks[0]
    assert stamp_to_ns(chunk.header.stamp) == STAMP
    assert chunk.joint_names == list(COMMAND_JOINTS)
    assert len(chunk.points) == 8
    assert [p.time_from_start.sec * 10**9 + p.time_from_start.nanosec
            for p in chunk.points] == [(i + 1) * 100_000_000 for i in range(8)]
    assert all(len(p.positions) == 8 and np.all(np.isfinite(p.positions))
               for p in chunk.points)
    assert probe.transition(Transition.TRANSITION_DEACTIVATE)
    publish_context(probe, checkpoint, STAMP + 1)
    wait_for(lambda: node.counts['ignored_while_inactive'] == 2)
    wait_for(lambda: probe.latest_diagnostic().get('message') == 'inactive')
    assert len(probe.chunks) == 1 and node.counts['contexts'] == 1
    assert probe.transition(Transition.TRANSITION_CLEANUP)
    assert probe.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.policy is None


def test_busy_policy_never_queues_contexts(graph_factory: Callable, tmp_path: Path) -> None:
    # A wide U-Net with all 100 DDPM steps takes far longer per chunk than the whole burst takes
    # to publish, on any CPU, so contexts must pile up in the one-slot mailbox.
    torch.manual_seed(0)
    spec = PolicySpec(policy_type='diffusion', obs_shapes={'joint_pos': [8]}, goal_dim=3,
                      horizon=8, n_action_steps=4, n_obs_steps=2, dt=0.1)
    rng = np.random.default_rng(0)
    data = {'joint_pos': rng.standard_normal((50, 8)), 'goal': rng.standard_normal((50, 3)),
            'action': rng.standard_normal((50, 8))}
    slow = DiffusionPolicy.build(data, spec, unet={'down_dims': [128, 256, 512]})
    checkpoint = save_checkpoint(slow, tmp_path / 'slow')
    node, probe = graph_factory([Parameter('checkpoint', value=str(checkpoint)),
                                 Parameter('sampler', value='ddpm'),
                                 Parameter('num_inference_steps', value=100),
                                 Parameter('warmup_runs', value=0)])
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert probe.transition(Transition.TRANSITION_ACTIVATE)
    wait_for(lambda: probe.contexts.get_subscription_count() > 0
             and node.chunk_pub.get_subscription_count() > 0)
    stamps = [STAMP + i for i in range(20)]
    for stamp in stamps:
        publish_context(probe, checkpoint, stamp)
    wait_for(lambda: any(stamp_to_ns(c.header.stamp) == stamps[-1] for c in probe.chunks))
    chunk_stamps = [stamp_to_ns(c.header.stamp) for c in probe.chunks]
    assert chunk_stamps == sorted(chunk_stamps) and set(chunk_stamps) <= set(stamps)
    assert len(chunk_stamps) < len(stamps)
    # Every accepted context was either run or replaced by a newer one while waiting.
    assert node.counts['contexts'] == node.counts['chunks'] + node.mailbox.replaced
    assert node.mailbox.replaced > 0
    wait_for(lambda: int(probe.latest_diagnostic().get('replaced_contexts', -1))
             == node.mailbox.replaced)


def test_context_from_another_checkpoint_is_rejected(graph_factory: Callable,
                                                     checkpoint: Path) -> None:
    node, probe = graph_factory([Parameter('checkpoint', value=str(checkpoint)),
                                 Parameter('warmup_runs', value=0)])
    assert probe.transition(Transition.TRANSITION_CONFIGURE)
    assert probe.transition(Transition.TRANSITION_ACTIVATE)
    wait_for(lambda: probe.contexts.get_subscription_count() > 0)
    publish_context(probe, checkpoint, STAMP, identity='0123456789abcdef')
    wait_for(lambda: probe.latest_diagnostic().get('level') == DiagnosticStatus.ERROR)
    assert '0123456789abcdef' in probe.latest_diagnostic()['message']
    assert probe.chunks == [] and node.counts['rejected_contexts'] == 1


def test_configure_fails_cleanly_for_a_bad_checkpoint(graph_factory: Callable,
                                                      tmp_path: Path) -> None:
    node, probe = graph_factory([Parameter('checkpoint', value=str(tmp_path / 'missing'))])
    assert not probe.transition(Transition.TRANSITION_CONFIGURE)
    assert probe.state() == State.PRIMARY_STATE_UNCONFIGURED
    assert node.policy is None
    wait_for(lambda: 'does not exist' in probe.latest_diagnostic().get('message', ''))
    assert probe.latest_diagnostic()['level'] in (DiagnosticStatus.ERROR, DiagnosticStatus.WARN)


def test_destroyed_node_leaves_the_graph_at_once() -> None:
    """Not whenever the garbage collector frees its lifecycle state machine (disabled here)."""
    context = rclpy.Context()
    rclpy.init(context=context)
    gc.disable()
    try:
        node = PolicyNode(context=context, parameter_overrides=[
            Parameter('autostart', value=False)])
        watcher = Node('graph_watcher', context=context)
        wait_for(lambda: 'policy' in watcher.get_node_names())
        node.destroy_node()
        wait_for(lambda: 'policy' not in watcher.get_node_names(), timeout=5.0)
        watcher.destroy_node()
    finally:
        gc.enable()
        rclpy.shutdown(context=context)


def test_inference_parameters_map_to_policy_options(checkpoint: Path) -> None:
    defaults = {'num_inference_steps': 0, 'sampler': '', 'eta': -1.0, 'guidance_scale': -1.0,
                'beam_width': 0, 'n_expand': 0, 'planning_horizon': 0, 'top_k': 0,
                'plan_mode': '', 'context_transitions': -1, 'tracked_targets': ''}
    assert inference_options('diffusion', defaults) == {}
    options = inference_options('diffusion', {**defaults, 'num_inference_steps': 5,
                                              'sampler': 'ddpm', 'guidance_scale': 0.0})
    assert options == {'num_inference_steps': 5, 'sampler': 'ddpm', 'guidance_scale': 0.0}
    load_policy(checkpoint).set_inference_options(**options)
    assert inference_options('transformer', {**defaults, 'beam_width': 4, 'plan_mode': 'value'}) \
        == {'beam_width': 4, 'mode': 'value'}
    assert inference_options('transformer', {**defaults, 'context_transitions': 0}) \
        == {'context_transitions': 0}, '0 (no history) is a setting, not the default'
    assert inference_options('transformer', {**defaults, 'tracked_targets': 'false'}) \
        == {'tracked_targets': False}
    with pytest.raises(NodeConfigError, match="tracked_targets='yes'; expected 'true'"):
        inference_options('transformer', {**defaults, 'tracked_targets': 'yes'})
    assert inference_options('bc', {**defaults, 'num_inference_steps': 5}) == {}


def test_warm_up_leaves_no_history_for_the_first_episode() -> None:
    rng = np.random.default_rng(0)
    spec = PolicySpec(policy_type='transformer', obs_shapes={'joint_pos': [8]}, goal_dim=3,
                      horizon=2, n_action_steps=1, n_obs_steps=1, dt=0.1)
    data = {'joint_pos': rng.uniform(-1, 1, (40, 8)), 'goal': rng.uniform(-1, 1, (40, 3)),
            'action': rng.uniform(-1, 1, (40, 8)), 'reward': -rng.uniform(0, 1, 40),
            'episode_ends': np.array([20, 40])}
    policy = TrajectoryTransformerPolicy.build(
        data, spec, n_layer=1, n_head=2, n_embd=16, n_bins=8, window_transitions=4, dropout=0.0,
        planning={'beam_width': 2, 'planning_horizon': 2, 'context_transitions': 2})
    warm_up(policy, 2)
    assert policy.history == {}
    policy.act(np.zeros((1, 1, policy.context_dim), np.float32), np.zeros((1, 3), np.float32))
    assert len(policy.history[0]) == 1, 'real steps are remembered'
