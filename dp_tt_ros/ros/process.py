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
One node per process: init, build, run, report bad configuration, always clean up.

Every node's ``main`` goes through :func:`run_node_process`, so they share one contract: exit 0
on a normal or Ctrl-C shutdown, exit 2 with one ``NAME: error: ...`` line for bad parameters,
checkpoints or stores, and the node's resources are released whatever happened.
"""

from __future__ import annotations

import os
import struct
import sys
from typing import Any, BinaryIO, Callable, TypeVar

import rclpy
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rcl_interfaces.msg import FloatingPointRange, IntegerRange

NodeT = TypeVar('NodeT', bound=Node)
PARAMETER_ERRORS = (InvalidParameterTypeException, InvalidParameterValueException)
# Linux PM QoS: a written bound holds for every CPU while the file stays open.
CPU_LATENCY_DEVICE = '/dev/cpu_dma_latency'
_cpu_latency_requests: list[BinaryIO] = []  # kept open until the process exits


def float_range(low: float, high: float) -> dict[str, Any]:
    """Descriptor fields limiting a float parameter to [low, high]."""
    return {'floating_point_range': [FloatingPointRange(from_value=low, to_value=high, step=0.0)]}


def int_range(low: int, high: int) -> dict[str, Any]:
    """Descriptor fields limiting an integer parameter to [low, high]."""
    return {'integer_range': [IntegerRange(from_value=low, to_value=high, step=1)]}


def make_thread_realtime(priority: int) -> str:
    """Put the calling thread (and threads it starts later) under SCHED_FIFO; say what it got."""
    if priority <= 0:
        return 'normal'
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
    except OSError as error:
        return f'normal ({error})'
    return f'SCHED_FIFO {priority}'


def make_process_realtime(priority: int) -> None:
    """
    Put every thread of this process (ROS executor, DDS, node threads) under SCHED_FIFO.

    One thread alone is not enough in Python: a normal-priority thread holding the GIL can be
    preempted by any other process, and the real-time one then waits for it. Threads started
    later inherit the policy. Raises OSError when not permitted.
    """
    for thread_id in sorted(int(tid) for tid in os.listdir('/proc/self/task')):
        os.sched_setscheduler(thread_id, os.SCHED_FIFO, os.sched_param(priority))


def request_realtime(node: Node, priority: int) -> str:
    """
    Ask for SCHED_FIFO ``priority`` (0: leave the scheduler alone) and name what the process got.

    Like ros2_control's controller_manager, a refusal (no CAP_SYS_NICE or rtprio limit) is a
    warning, not an error: the node runs, only with more latency jitter on a loaded machine.
    """
    if priority <= 0:
        return 'normal'
    try:
        make_process_realtime(priority)
    except OSError as error:
        node.get_logger().warning(f'realtime_priority {priority}: {error}; the node runs with '
                                  f'the normal scheduler')
        return 'normal'
    return f'SCHED_FIFO {priority}'


REALTIME_PRIORITY_PARAMETER: tuple[Any, str, dict[str, Any]] = (
    0, 'SCHED_FIFO priority of every thread of the node\'s process, set at start-up; 0 keeps the '
    'normal scheduler; without CAP_SYS_NICE it warns and keeps it too', int_range(0, 99))

CPU_WAKEUP_LATENCY_PARAMETER: tuple[Any, str, dict[str, Any]] = (
    -1, 'longest wake-up from idle, in microseconds, that any CPU may take while the process '
    'runs (Linux PM QoS via /dev/cpu_dma_latency); 0 keeps idle CPUs polling; -1 leaves the '
    'system setting; without write access it warns and leaves it too', int_range(-1, 1_000_000))


def hold_cpu_wakeup_latency(node: Node, microseconds: int) -> str:
    """
    Keep idle CPUs in states they wake from within ``microseconds`` (-1: leave them alone).

    A callback that lands on a CPU halted in a deep idle state (or on a halted vCPU) starts late
    and runs on cold caches; SCHED_FIFO does not help with that. This is the knob cyclictest and
    tuned's latency-performance profile turn. Idle CPUs then burn power instead of sleeping, so
    it is a parameter, and a refusal is a warning as for ``realtime_priority``.
    """
    if microseconds < 0:
        return 'system setting'
    request = None
    try:
        request = open(CPU_LATENCY_DEVICE, 'wb', buffering=0)
        request.write(struct.pack('i', microseconds))
    except OSError as error:
        if request is not None:
            request.close()
        node.get_logger().warning(f'cpu_wakeup_latency_us {microseconds}: {error}; idle CPUs '
                                  f'keep the system setting')
        return 'system setting'
    _cpu_latency_requests.append(request)
    return f'at most {microseconds} us'


def run_node_process(name: str, args: list[str] | None, build: Callable[[], NodeT],
                     run: Callable[[NodeT], int | None],
                     config_errors: tuple[type[Exception], ...] = (),
                     release: Callable[[NodeT], None] = lambda node: None) -> int:
    """Run one node until shutdown and return the process exit status."""
    rclpy.init(args=args)
    node = None
    try:
        node = build()
        return int(run(node) or 0)
    except (*config_errors, *PARAMETER_ERRORS) as error:
        print(f'{name}: error: {error}', file=sys.stderr)
        return 2
    except (KeyboardInterrupt, ExternalShutdownException):
        return 0
    except Exception:
        # Ctrl-C shuts the context down from rclpy's signal handler; a publish or take that
        # races it fails, and that is part of shutting down. Anything else is a real failure.
        if rclpy.ok():
            raise
        return 0
    finally:
        if node is not None:
            release(node)
            node.destroy_node()
        rclpy.try_shutdown()
