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
The policy node: encoded contexts in, time-stamped action chunks out (a lifecycle node).

* configure: loads the checkpoint (``policy_type`` diffusion | transformer | bc), applies the
  inference parameters, and warms the model up (the first call traces/allocates) so the first real
  chunk is not late. A bad parameter or checkpoint fails the transition with the reason logged.
* activate: contexts from ``/policy/context`` are run through ``Policy.act``; deactivate stops.

Inference runs on a dedicated worker thread, never on the executor thread. Between the two sits a
one-slot mailbox: a context that arrives while the model is busy replaces the one waiting, so the
policy always works on the newest observation and nothing queues up. The goal travels inside the
context message (see :mod:`dp_tt_ros.ros.context`), and every context is checked against this
checkpoint: same encoder checkpoint id, ``n_obs_steps``, context width and goal size.

Each chunk goes out on ``/policy/action_chunk`` (trajectory_msgs/JointTrajectory, RELIABLE):
joint names from the checkpoint, H points at ``(i + 1) * dt``, ``header.stamp`` = capture time of
the newest observation in the context. ``/diagnostics`` reports inference time and
capture-to-publish age percentiles, replaced (skipped) contexts and rejections. With
``publish_timing`` each chunk's timing also goes to ``/policy/timing`` (DiagnosticStatus with exact
integer nanosecond values) for ``dp-tt-ros bench ros``.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
import numpy as np
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecyclePublisher, Node, State, TransitionCallbackReturn
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile
from rclpy.subscription import Subscription
from std_msgs.msg import Float32MultiArray
import torch
from trajectory_msgs.msg import JointTrajectory

from dp_tt_ros.policies.base import Policy
from dp_tt_ros.policies.checkpoint import checkpoint_id, CheckpointError, load_policy
from dp_tt_ros.ros.context import (
    ChunkMessage, declare_parameters, decode_context, key_values,
    LatestOnly, NodeConfigError, PolicyContext, resolve_checkpoint, RollingSamples, spin,
    task_episode)
from dp_tt_ros.ros.process import (
    CPU_WAKEUP_LATENCY_PARAMETER, float_range, hold_cpu_wakeup_latency, int_range,
    REALTIME_PRIORITY_PARAMETER, request_realtime, run_node_process)

NODE_NAME = 'policy'
DEVICES = ('cpu', 'cuda')
WORKER_POLL_S = 0.1


PARAMETERS: dict[str, tuple[Any, str, dict[str, Any]]] = {
    'checkpoint': ('', 'checkpoint directory; empty = models/<policy_type>_<task>', {}),
    'policy_type': ('diffusion', 'diffusion, transformer, bc or sac (must match the checkpoint)',
                    {}),
    'task': ('reach', 'task of the shipped default checkpoint', {}),
    'device': ('cpu', 'torch device for inference: cpu or cuda', {}),
    'torch_threads': (0, 'torch CPU threads for inference; 0 keeps torch\'s default',
                      int_range(0, 256)),
    'autostart': (True, 'configure and activate on start-up (no lifecycle manager needed)', {}),
    'warmup_runs': (2, 'inference calls on a dummy context during configure',
                    int_range(0, 100)),
    'num_inference_steps': (0, 'diffusion: denoising steps K; 0 = checkpoint default',
                            int_range(0, 10000)),
    'sampler': ('', "diffusion: 'ddim' or 'ddpm'; empty = checkpoint default", {}),
    'eta': (-1.0, 'diffusion: DDIM eta; negative = checkpoint default', float_range(-1.0, 1.0)),
    'guidance_scale': (-1.0, 'diffusion: classifier-free guidance w (0 unconditional, 1 '
                       'conditional); negative = checkpoint default', float_range(-1.0, 100.0)),
    'beam_width': (0, 'transformer: beam width; 0 = checkpoint default', int_range(0, 4096)),
    'n_expand': (0, 'transformer: expansions per beam; 0 = checkpoint default',
                 int_range(0, 4096)),
    'planning_horizon': (0, 'transformer: planned steps; 0 = checkpoint default',
                         int_range(0, 4096)),
    'top_k': (0, 'transformer: top-k truncation of token sampling; 0 = checkpoint default',
              int_range(0, 100000)),
    'plan_mode': ('', "transformer: 'value', 'return' or 'likelihood'; empty = checkpoint default",
                  {}),
    'context_transitions': (-1, 'transformer: past transitions the plan sees (0 = none); '
                            'negative = checkpoint default', int_range(-1, 4096)),
    'tracked_targets': ('', "transformer: 'true' computes predicted states from the commanded "
                        "targets, 'false' decodes them; empty = checkpoint default", {}),
    'publish_timing': (False, 'publish per-chunk timing on /policy/timing (for bench ros)', {}),
    'diagnostics_period': (1.0, 'seconds between /diagnostics messages',
                           float_range(0.05, 3600.0)),
    'realtime_priority': REALTIME_PRIORITY_PARAMETER,
    'cpu_wakeup_latency_us': CPU_WAKEUP_LATENCY_PARAMETER,
}


def inference_options(policy_type: str, params: dict[str, Any]) -> dict[str, Any]:
    """Map the node parameters that are set (not at their 'default' value) to policy options."""
    if policy_type == 'diffusion':
        options = {'num_inference_steps': params['num_inference_steps'] or None,
                   'sampler': params['sampler'] or None,
                   'eta': params['eta'] if params['eta'] >= 0.0 else None,
                   'guidance_scale': (params['guidance_scale']
                                      if params['guidance_scale'] >= 0.0 else None)}
    elif policy_type == 'transformer':
        options = {name: params[name] or None
                   for name in ('beam_width', 'n_expand', 'planning_horizon', 'top_k')}
        options['mode'] = params['plan_mode'] or None
        if params['context_transitions'] >= 0:
            options['context_transitions'] = params['context_transitions']
        if params['tracked_targets'] not in ('', 'true', 'false'):
            raise NodeConfigError(f"parameter tracked_targets={params['tracked_targets']!r}; "
                                  "expected 'true', 'false' or empty")
        if params['tracked_targets']:
            options['tracked_targets'] = params['tracked_targets'] == 'true'
    else:
        options = {}
    return {name: value for name, value in options.items() if value is not None}


def warm_up(policy: Policy, runs: int) -> None:
    """Run inference on a dummy context so tracing and allocation happen before activation."""
    context = np.zeros((1, policy.n_obs_steps, policy.context_dim), np.float32)
    goal = np.zeros((1, policy.spec.goal_dim), np.float32) if policy.spec.goal_dim else None
    for _ in range(runs):
        policy.act(context, goal)
    policy.reset()  # the dummy steps are no episode's history


class PolicyNode(Node):
    """Lifecycle-managed inference: newest context in, one action chunk out."""

    def __init__(self, **node_kwargs: Any) -> None:
        super().__init__(NODE_NAME, **node_kwargs)
        self.params = declare_parameters(self, PARAMETERS)
        self.scheduling = 'normal'  # what main's request_realtime got
        self.cpu_wakeup_latency = 'system setting'  # what main's hold_cpu_wakeup_latency got
        self.policy: Policy | None = None
        self.checkpoint_id = ''
        self.mailbox: LatestOnly[tuple[PolicyContext, int]] = LatestOnly()
        self.active = threading.Event()
        self.stop_worker = threading.Event()
        self.worker: threading.Thread | None = None
        self._chunk_msg: ChunkMessage | None = None  # reused by the worker for every chunk
        self.policy_lock = threading.Lock()
        self.inference_ms = RollingSamples()
        self.age_ms = RollingSamples()
        self.counts = {'contexts': 0, 'chunks': 0, 'rejected_contexts': 0, 'errors': 0,
                       'ignored_while_inactive': 0}
        self.last_problem = ''
        self.recent_problems = 0
        self.episode: str | None = None
        self.entities: list[Any] = []
        self.chunk_pub: LifecyclePublisher | None = None
        self.timing_pub: Publisher | None = None
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics',
                                                     QoSProfile(depth=10))
        # Callbacks share the counters and the mailbox: never run them concurrently, even when
        # the node is composed into a multi-threaded executor.
        self.group = MutuallyExclusiveCallbackGroup()
        self.create_timer(self.params['diagnostics_period'], self._publish_diagnostics,
                          callback_group=self.group)

    # ------------------------------------------------------------------ lifecycle
    def on_configure(self, state: State) -> TransitionCallbackReturn:
        params = self.params
        try:
            if params['device'] not in DEVICES:
                raise NodeConfigError(f"parameter device={params['device']!r}; expected one of "
                                      f'{list(DEVICES)}')
            if params['torch_threads']:
                torch.set_num_threads(params['torch_threads'])
            directory = resolve_checkpoint(params['checkpoint'], params['policy_type'],
                                           params['task'])
            policy = load_policy(directory, device=params['device'])
            options = inference_options(params['policy_type'], params)
            try:
                policy.set_inference_options(**options)
            except (ValueError, TypeError) as error:
                raise NodeConfigError(f'inference parameters {options}: {error}') from error
            self.checkpoint_id = checkpoint_id(directory)
            warm_up(policy, params['warmup_runs'])
        except (NodeConfigError, CheckpointError, RuntimeError) as error:
            self._problem(f'configure failed: {error}')
            return TransitionCallbackReturn.FAILURE
        self.policy = policy
        spec = policy.spec
        self.chunk_pub = self.create_lifecycle_publisher(JointTrajectory, '/policy/action_chunk',
                                                         QoSProfile(depth=10))
        self.timing_pub = (self.create_publisher(DiagnosticStatus, '/policy/timing',
                                                 QoSProfile(depth=100))
                           if params['publish_timing'] else None)
        self.entities = [
            self.chunk_pub, self.timing_pub,
            # Episode change first: of the two waiting together, the context is the newer (the
            # perception node sends the new episode's first context after the change).
            self.create_subscription(DiagnosticStatus, '/sim/task_status', self._on_task_status,
                                     QoSProfile(depth=10), callback_group=self.group),
            self.create_subscription(Float32MultiArray, '/policy/context', self._on_context,
                                     QoSProfile(depth=1), callback_group=self.group),
        ]
        self.stop_worker.clear()
        self.worker = threading.Thread(target=self._work, name='policy-inference', daemon=True)
        self.worker.start()
        self.get_logger().info(
            f'loaded {spec.policy_type} policy from {directory} (checkpoint {self.checkpoint_id}) '
            f'on {params["device"]}: context {spec.n_obs_steps} x {policy.context_dim}, goal '
            f'{spec.goal_dim}, chunk {spec.horizon} x {spec.action_dim} every {spec.dt:g} s, '
            f'options {options or "checkpoint defaults"}')
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        with self.policy_lock:
            if self.policy is not None:
                self.policy.reset()  # the arm may have moved while inactive
        self.active.set()
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.active.clear()
        self.mailbox.clear()
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.release()
        return TransitionCallbackReturn.SUCCESS

    def release(self) -> None:
        """Stop the worker and drop the model and every ROS entity made in configure."""
        self.active.clear()
        self.stop_worker.set()
        if self.worker is not None:
            self.worker.join()
            self.worker = None
        self.mailbox.clear()
        for entity in self.entities:
            if isinstance(entity, LifecyclePublisher):
                self.destroy_lifecycle_publisher(entity)
            elif isinstance(entity, Publisher):
                self.destroy_publisher(entity)
            elif isinstance(entity, Subscription):
                self.destroy_subscription(entity)
        self.entities = []
        self.chunk_pub = self.timing_pub = None
        with self.policy_lock:
            self.policy = None

    def destroy_node(self) -> None:
        """
        Destroy the node and its lifecycle state machine now.

        rclpy's ``destroy_node`` leaves the state machine, which keeps the node, its lifecycle
        services and even the context's DDS participant (past ``rclpy.shutdown``) alive until the
        garbage collector frees it, at any later moment: freed there, it once deadlocked a test
        process inside FastDDS against another participant's discovery thread.
        """
        super().destroy_node()
        self._state_machine.destroy_when_not_in_use()

    # ------------------------------------------------------------------ inputs
    def _problem(self, message: str) -> None:
        """Log a problem (throttled) and show it on /diagnostics until a period passes without."""
        self.last_problem = message
        self.recent_problems += 1
        self.get_logger().error(message, throttle_duration_sec=5.0)

    def _reject(self, reason: str) -> None:
        self.counts['rejected_contexts'] += 1
        self._problem(f'rejected context: {reason}')

    def _on_context(self, msg: Float32MultiArray) -> None:
        if not self.active.is_set() or self.policy is None:
            self.counts['ignored_while_inactive'] += 1
            return
        received_ns = self.get_clock().now().nanoseconds
        try:
            context = decode_context(msg)
        except ValueError as error:
            self._reject(str(error))
            return
        policy = self.policy
        expected = (policy.n_obs_steps, policy.context_dim)
        goal_dim = 0 if context.goal is None else context.goal.shape[1]
        if context.checkpoint_id != self.checkpoint_id:
            self._reject(f'context was encoded by checkpoint {context.checkpoint_id}, this node '
                         f'runs {self.checkpoint_id}; give perception and policy the same '
                         f'checkpoint')
        elif context.context.shape[1:] != expected or goal_dim != policy.spec.goal_dim:
            self._reject(f'context is {context.context.shape[1:]} with a {goal_dim}-d goal; '
                         f'expected {expected} with a {policy.spec.goal_dim}-d goal')
        else:
            self.counts['contexts'] += 1
            self.mailbox.put((context, received_ns))

    def _on_task_status(self, msg: DiagnosticStatus) -> None:
        episode = task_episode(msg)
        if episode is None or episode == self.episode:
            return
        self.episode = episode
        self.mailbox.clear()
        with self.policy_lock:
            if self.policy is not None:
                self.policy.reset()

    # ------------------------------------------------------------------ inference
    def _chunk_message(self, joint_names: list[str], dt: float, horizon: int) -> ChunkMessage:
        message = self._chunk_msg
        if (message is None or message.joint_names != list(joint_names)
                or message.dt != dt or len(message.msg.points) != horizon):
            message = self._chunk_msg = ChunkMessage(joint_names, dt, horizon)
        return message

    def _work(self) -> None:
        while not self.stop_worker.is_set():
            item = self.mailbox.take(timeout=WORKER_POLL_S)
            if item is None or not self.active.is_set():
                continue
            context, received_ns = item
            with self.policy_lock:
                if self.policy is None:
                    continue
                started_ns = time.perf_counter_ns()
                try:
                    chunk = self.policy.act(context.context, context.goal)[0]
                except (RuntimeError, ValueError) as error:
                    self.counts['errors'] += 1
                    self._problem(f'inference failed: {error}')
                    continue
                inference_ns = time.perf_counter_ns() - started_ns
                spec = self.policy.spec
            if not np.all(np.isfinite(chunk)):
                self.counts['errors'] += 1
                self._problem('policy produced NaN/Inf actions; chunk not published')
                continue
            msg = self._chunk_message(spec.joint_names, spec.dt, len(chunk)).fill(
                chunk, context.stamp_ns)
            if not self.active.is_set():
                continue
            published_ns = self.get_clock().now().nanoseconds
            try:
                self.chunk_pub.publish(msg)
            except RuntimeError:
                if self.context.ok():
                    raise
                return  # Ctrl-C shut the context down while this chunk was being computed.
            self.counts['chunks'] += 1
            if self.counts['chunks'] == 1:
                self.get_logger().info(
                    f'first action chunk published ({inference_ns / 1e6:.1f} ms inference)')
            self.inference_ms.add(inference_ns / 1e6)
            self.age_ms.add((published_ns - context.stamp_ns) / 1e6)
            if self.timing_pub is not None:
                self.timing_pub.publish(DiagnosticStatus(
                    name=f'{NODE_NAME}: chunk timing', hardware_id=NODE_NAME,
                    values=key_values([('capture_stamp_ns', context.stamp_ns),
                                       ('received_ns', received_ns),
                                       ('inference_ns', inference_ns),
                                       ('published_ns', published_ns)])))

    # ------------------------------------------------------------------ diagnostics
    def _publish_diagnostics(self) -> None:
        status = DiagnosticStatus(name=f'{NODE_NAME}: inference', hardware_id=NODE_NAME)
        if self.recent_problems:
            status.level = DiagnosticStatus.ERROR
            status.message = self.last_problem
        elif self.policy is None:
            status.level = DiagnosticStatus.WARN
            status.message = 'unconfigured' + (f' ({self.last_problem})'
                                               if self.last_problem else '')
        else:
            status.level = DiagnosticStatus.OK
            status.message = 'active' if self.active.is_set() else 'inactive'
        self.recent_problems = 0
        status.values = key_values(self.counts.items())
        status.values += key_values([('replaced_contexts', self.mailbox.replaced),
                                     ('checkpoint_id', self.checkpoint_id),
                                     ('scheduling', self.scheduling),
                                     ('cpu_wakeup_latency', self.cpu_wakeup_latency)])
        status.values += self.inference_ms.key_values('inference_ms')
        status.values += self.age_ms.key_values('capture_to_publish_ms')
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)


def main(args: list[str] | None = None) -> int:
    """Run the policy node; with ``autostart`` it configures and activates itself."""
    def run(node: PolicyNode) -> int:
        if node.params['autostart']:
            node.trigger_configure()
            if node.policy is None:
                return 2
            node.trigger_activate()
        # After the warm-up: at real-time priority it would starve the simulator while it starts.
        node.scheduling = request_realtime(node, node.params['realtime_priority'])
        node.cpu_wakeup_latency = hold_cpu_wakeup_latency(node,
                                                          node.params['cpu_wakeup_latency_us'])
        spin(node)
        return 0

    return run_node_process(NODE_NAME, args, PolicyNode, run, release=PolicyNode.release)
