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
Message layouts shared by the perception, policy and recorder nodes.

``/policy/context`` (std_msgs/Float32MultiArray) carries one encoded observation history, its goal
and its capture time. Float32MultiArray has no header and float32 cannot hold a stamp, so the
metadata lives in the layout's dimension labels, as exact decimal integers::

    layout.data_offset = G                                goal values come first: data[0:G]
    layout.dim[0] = ('capture_stamp_ns=<int>', 1, To*C)    one observation, captured at <int> ns
    layout.dim[1] = ('obs_steps', To, To*C)                history, oldest first
    layout.dim[2] = ('features=<checkpoint id>', C, C)     encoder output of that checkpoint
    data[G:G + To*C] = context, row-major

Strides follow the MultiArrayLayout convention (``dim[i].stride`` = product of the sizes from
``i`` on), so a generic consumer that honours ``data_offset`` reads the ``(1, To, C)`` context and
skips the goal. The goal travels in the same message as the context it belongs to, so the policy
never pairs a context with a goal from another moment or episode. The checkpoint id (a hash of the
checkpoint's files) lets the policy node refuse features produced by another checkpoint's encoders,
which would have the right shape and the wrong meaning.
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass
from pathlib import Path
import threading
from typing import Any, Generic, Iterable, Sequence, TypeVar

from builtin_interfaces.msg import Duration, Time
from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
import numpy as np
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from std_msgs.msg import Float32MultiArray, MultiArrayDimension
from trajectory_msgs.msg import JointTrajectory, JointTrajectoryPoint

from dp_tt_ros.data.history import NANOSECONDS_PER_SECOND
from dp_tt_ros.paths import models_dir
from dp_tt_ros.policies.checkpoint import CheckpointError, read_config
from dp_tt_ros.robot import ARM_JOINTS, FINGER_JOINTS

Item = TypeVar('Item')
POLICY_TYPES = ('diffusion', 'transformer', 'bc', 'sac')

STAMP_LABEL = 'capture_stamp_ns'
STEPS_LABEL = 'obs_steps'
FEATURES_LABEL = 'features'


@dataclass
class PolicyContext:
    """A decoded ``/policy/context`` message, batched for ``Policy.act``."""

    context: np.ndarray
    goal: np.ndarray | None
    stamp_ns: int
    checkpoint_id: str


def stamp_to_ns(stamp: Time) -> int:
    return stamp.sec * NANOSECONDS_PER_SECOND + stamp.nanosec


def ns_to_stamp(stamp_ns: int) -> Time:
    seconds, nanoseconds = divmod(stamp_ns, NANOSECONDS_PER_SECOND)
    return Time(sec=seconds, nanosec=nanoseconds)


def ns_to_duration(duration_ns: int) -> Duration:
    seconds, nanoseconds = divmod(duration_ns, NANOSECONDS_PER_SECOND)
    return Duration(sec=seconds, nanosec=nanoseconds)


def encode_context(context: np.ndarray, goal: np.ndarray | None, stamp_ns: int,
                   checkpoint: str) -> Float32MultiArray:
    """Pack one ``(To, C)`` context, its goal and capture stamp into a Float32MultiArray."""
    if context.ndim != 2:
        raise ValueError(f'context must be (obs_steps, features), got shape {context.shape}')
    n_steps, width = context.shape
    goal_values = np.zeros(0, np.float32) if goal is None else np.asarray(goal, np.float32)
    if goal_values.ndim != 1:
        raise ValueError(f'goal must be a vector, got shape {goal_values.shape}')
    msg = Float32MultiArray()
    msg.layout.data_offset = int(goal_values.size)
    msg.layout.dim = [
        MultiArrayDimension(label=f'{STAMP_LABEL}={stamp_ns}', size=1, stride=n_steps * width),
        MultiArrayDimension(label=STEPS_LABEL, size=n_steps, stride=n_steps * width),
        MultiArrayDimension(label=f'{FEATURES_LABEL}={checkpoint}', size=width, stride=width),
    ]
    values = np.concatenate([goal_values, np.asarray(context, np.float32).ravel()])
    data = array('f')
    data.frombytes(values.tobytes())
    msg.data = data
    return msg


def _label_value(label: str, name: str) -> str:
    prefix = f'{name}='
    if not label.startswith(prefix):
        raise ValueError(f'context layout label {label!r} should start with {prefix!r}')
    return label[len(prefix):]


def decode_context(msg: Float32MultiArray) -> PolicyContext:
    """Unpack a ``/policy/context`` message; ValueError names what does not match the layout."""
    dims = msg.layout.dim
    if len(dims) != 3 or dims[1].label != STEPS_LABEL:
        labels = [dim.label for dim in dims]
        raise ValueError(f'context layout has dims {labels}; expected '
                         f"['{STAMP_LABEL}=<ns>', '{STEPS_LABEL}', '{FEATURES_LABEL}=<id>']")
    stamp_text = _label_value(dims[0].label, STAMP_LABEL)
    if not stamp_text.isdigit():
        raise ValueError(f'capture stamp {stamp_text!r} is not a non-negative integer of ns')
    checkpoint = _label_value(dims[2].label, FEATURES_LABEL)
    n_steps, width, goal_dim = dims[1].size, dims[2].size, msg.layout.data_offset
    expected = goal_dim + n_steps * width
    if dims[0].size != 1 or len(msg.data) != expected:
        raise ValueError(f'context has {len(msg.data)} values and batch size {dims[0].size}; '
                         f'expected 1 x ({goal_dim} goal + {n_steps} x {width} context) '
                         f'= {expected} values')
    values = np.frombuffer(msg.data, dtype=np.float32)
    goal = values[:goal_dim].reshape(1, goal_dim).copy() if goal_dim else None
    context = values[goal_dim:].reshape(1, n_steps, width).copy()
    return PolicyContext(context=context, goal=goal, stamp_ns=int(stamp_text),
                         checkpoint_id=checkpoint)


class ChunkMessage:
    """
    One JointTrajectory per chunk shape, refilled in place for every chunk.

    Building 16 points, each with its Duration, takes about 1 ms on this CPU when that code has
    not run for 0.1 s (under 0.1 ms when it just ran); refilling the same message takes under
    half of that. A publish serialises the message before it returns, so reuse is safe on one
    publishing thread.
    """

    def __init__(self, joint_names: Sequence[str], dt: float, horizon: int) -> None:
        self.joint_names = list(joint_names)
        self.dt = dt
        self.msg = JointTrajectory()
        self.msg.joint_names = list(joint_names)
        dt_ns = int(round(dt * NANOSECONDS_PER_SECOND))
        self.msg.points = [JointTrajectoryPoint(time_from_start=ns_to_duration((i + 1) * dt_ns))
                           for i in range(horizon)]

    def fill(self, chunk: np.ndarray, stamp_ns: int) -> JointTrajectory:
        """Point ``i`` of the ``(H, d_a)`` chunk lands at ``(i + 1) * dt`` after the stamp."""
        if chunk.shape != (len(self.msg.points), len(self.joint_names)):
            raise ValueError(f'chunk shape {chunk.shape} does not match {len(self.msg.points)} '
                             f'points of {len(self.joint_names)} joints')
        self.msg.header.stamp = ns_to_stamp(stamp_ns)
        for point, row in zip(self.msg.points, np.asarray(chunk, dtype=np.float64)):
            point.positions = array('d', row.tobytes())
        return self.msg


def chunk_to_trajectory(chunk: np.ndarray, joint_names: Sequence[str], dt: float,
                        stamp_ns: int) -> JointTrajectory:
    """Wrap an ``(H, d_a)`` chunk in a new message: point ``i`` at ``(i + 1) * dt`` after it."""
    if chunk.ndim != 2 or chunk.shape[1] != len(joint_names):
        raise ValueError(f'chunk shape {chunk.shape} does not match {len(joint_names)} joints')
    return ChunkMessage(joint_names, dt, len(chunk)).fill(chunk, stamp_ns)


def joint_state_vectors(names: Sequence[str], positions: Sequence[float],
                        velocities: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """
    Map a Panda JointState onto the 8-d observation layout used in training.

    The 7 arm joints in order, then the gripper opening as the mean of the two finger joints,
    exactly as the simulator defines ``joint_pos``/``joint_vel``. Velocities may be absent
    (empty), which reads as zeros.
    """
    index = {name: i for i, name in enumerate(names)}
    missing = [name for name in ARM_JOINTS + FINGER_JOINTS if name not in index]
    if missing:
        raise ValueError(f'joint state lacks joints {missing}; got {list(names)}')
    if len(positions) != len(names) or len(velocities) not in (0, len(names)):
        raise ValueError(f'joint state has {len(names)} names, {len(positions)} positions and '
                         f'{len(velocities)} velocities; expected equal counts')
    arm = [index[name] for name in ARM_JOINTS]
    fingers = [index[name] for name in FINGER_JOINTS]
    position = np.asarray(positions, dtype=np.float32)
    velocity = (np.asarray(velocities, dtype=np.float32) if len(velocities)
                else np.zeros(len(names), np.float32))
    joint_pos = np.append(position[arm], position[fingers].mean()).astype(np.float32)
    joint_vel = np.append(velocity[arm], velocity[fingers].mean()).astype(np.float32)
    return joint_pos, joint_vel


def task_episode(status: DiagnosticStatus) -> str | None:
    """Return the ``episode`` key-value of a ``/sim/task_status`` message, if present."""
    for item in status.values:
        if item.key == 'episode':
            return item.value
    return None


class NodeConfigError(ValueError):
    """A parameter value a node cannot run with; the message names it and what was expected."""


def declare_parameters(node: Node,
                       table: dict[str, tuple[Any, str, dict[str, Any]]]) -> dict[str, Any]:
    """
    Declare ``name -> (default, description, descriptor extras)`` read-only; return values.

    ROS cannot type an empty YAML list (``image_keys: []`` arrives as an unset parameter), so an
    unset list parameter reads as the empty list it was meant to be.
    """
    values = {}
    for name, (default, description, extras) in table.items():
        node.declare_parameter(name, default, ParameterDescriptor(
            description=description, read_only=True, **extras))
        value = node.get_parameter_or(name).value
        if value is None and isinstance(default, list):
            value = []
        values[name] = value
    return values


def resolve_checkpoint(checkpoint: str, policy_type: str, task: str) -> Path:
    """
    Find the checkpoint directory and check that it holds the expected policy type.

    An empty ``checkpoint`` means the shipped default ``models/<policy_type>_<task>``.
    """
    if policy_type not in POLICY_TYPES:
        raise NodeConfigError(f'parameter policy_type={policy_type!r}; expected one of '
                              f'{list(POLICY_TYPES)}')
    directory = (Path(checkpoint).expanduser() if checkpoint
                 else models_dir() / f'{policy_type}_{task}')
    found = read_config(directory)['policy_type']
    if found != policy_type:
        raise CheckpointError(f'checkpoint {directory} holds a {found!r} policy but parameter '
                              f'policy_type is {policy_type!r}')
    return directory


class LatestOnly(Generic[Item]):
    """
    A one-slot mailbox between a ROS callback and a worker thread.

    ``put`` replaces whatever is still waiting, so a slow consumer always gets the newest item
    and nothing queues up behind it; ``replaced`` counts the items that were never taken.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._item: Item | None = None
        self._closed = False
        self.replaced = 0

    def put(self, item: Item) -> None:
        with self._condition:
            if self._item is not None:
                self.replaced += 1
            self._item = item
            self._condition.notify()

    def take(self, timeout: float | None = None) -> Item | None:
        """Wait for an item and remove it; ``None`` on timeout or after ``close``."""
        with self._condition:
            self._condition.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def clear(self) -> None:
        with self._condition:
            self._item = None

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify_all()


class RollingSamples:
    """The most recent samples of a latency, summarised for ``/diagnostics``."""

    def __init__(self, size: int = 1000) -> None:
        self._values: deque[float] = deque(maxlen=size)
        self.count = 0

    def add(self, value: float) -> None:
        self._values.append(value)
        self.count += 1

    def key_values(self, name: str) -> list[KeyValue]:
        """Return median / p99 / max of the window as KeyValues, e.g. ``inference_ms_p99``."""
        if not self._values:
            return []
        values = np.fromiter(self._values, dtype=float)
        summary = {'p50': np.median(values), 'p99': np.percentile(values, 99), 'max': values.max()}
        return [KeyValue(key=f'{name}_{key}', value=f'{value:.3f}')
                for key, value in summary.items()]


def key_values(items: Iterable[tuple[str, object]]) -> list[KeyValue]:
    return [KeyValue(key=key, value=str(value)) for key, value in items]


def spin(node: Node) -> None:
    """
    Spin ``node`` on a single-threaded executor until shutdown.

    On Ctrl-C / SIGINT rclpy shuts the context down from its signal handler; a message take that
    races it fails with a RuntimeError, which is part of shutting down, not an error.
    """
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    try:
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except RuntimeError:
        if node.context.ok():
            raise
