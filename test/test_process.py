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

"""Per-process node plumbing: real-time scheduling, asked for in child processes only."""

import os
import struct
import subprocess
import sys
import textwrap

# Runs in a fresh interpreter: init rclpy, ask for the priority, print the outcome, then the
# scheduling policy of every thread of the process, one per line.
REQUEST = textwrap.dedent("""
    import os, sys
    import rclpy
    from rclpy.node import Node
    from dp_tt_ros.ros.process import request_realtime
    rclpy.init()
    node = Node('realtime_probe')
    print(request_realtime(node, int(sys.argv[1])))
    for tid in os.listdir('/proc/self/task'):
        print(os.sched_getscheduler(int(tid)))
    node.destroy_node()
    rclpy.shutdown()
""")


def _request(priority: int) -> tuple[str, list[int], str]:
    done = subprocess.run([sys.executable, '-c', REQUEST, str(priority)], capture_output=True,
                          text=True, timeout=60, check=True)
    outcome, *policies = done.stdout.splitlines()
    return outcome, [int(policy) for policy in policies], done.stderr


def test_priority_zero_leaves_the_scheduler_alone() -> None:
    outcome, policies, stderr = _request(0)
    assert outcome == 'normal' and set(policies) == {os.SCHED_OTHER}
    assert 'realtime_priority' not in stderr


def test_granted_priority_covers_every_thread_and_a_refusal_only_warns() -> None:
    outcome, policies, stderr = _request(10)
    if outcome == 'SCHED_FIFO 10':  # permitted here: DDS threads too, not just the caller
        assert len(policies) > 1 and set(policies) == {os.SCHED_FIFO}
    else:  # no CAP_SYS_NICE: the node still runs, with the normal scheduler and a warning
        assert outcome == 'normal' and set(policies) == {os.SCHED_OTHER}
        assert 'realtime_priority 10' in stderr
    # A priority the kernel rejects outright (SCHED_FIFO takes 1..99) is the same warning.
    outcome, policies, stderr = _request(100)
    assert outcome == 'normal' and set(policies) == {os.SCHED_OTHER}
    assert 'realtime_priority 100' in stderr and 'normal scheduler' in stderr


# Runs in a fresh interpreter: hold the bound, print the outcome and the system-wide value the
# kernel then applies (read back from the same device), or the outcome alone if it is unreadable.
HOLD = textwrap.dedent("""
    import struct, sys
    import rclpy
    from rclpy.node import Node
    from dp_tt_ros.ros import process
    from dp_tt_ros.ros.process import CPU_LATENCY_DEVICE, hold_cpu_wakeup_latency
    if len(sys.argv) > 2:  # a machine without the device (or without write access to it)
        process.CPU_LATENCY_DEVICE = sys.argv[2]
    rclpy.init()
    node = Node('cpu_latency_probe')
    print(hold_cpu_wakeup_latency(node, int(sys.argv[1])))
    try:
        with open(CPU_LATENCY_DEVICE, 'rb') as device:
            print(struct.unpack('i', device.read(4))[0])
    except OSError:
        pass
    node.destroy_node()
    rclpy.shutdown()
""")


def _hold(microseconds: int, *device: str) -> tuple[list[str], str]:
    done = subprocess.run([sys.executable, '-c', HOLD, str(microseconds), *device],
                          capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.splitlines(), done.stderr


def _system_cpu_latency() -> int | None:
    try:
        with open('/dev/cpu_dma_latency', 'rb') as device:
            return struct.unpack('i', device.read(4))[0]
    except OSError:
        return None


def test_cpu_wakeup_latency_holds_while_the_process_runs_and_a_refusal_only_warns() -> None:
    before = _system_cpu_latency()
    lines, stderr = _hold(-1)
    assert lines[0] == 'system setting' and 'cpu_wakeup_latency_us' not in stderr
    lines, stderr = _hold(0)
    if lines[0] == 'at most 0 us':  # permitted: the kernel applies the bound while it is held
        assert lines[1:] == ['0']
    else:  # no write access to /dev/cpu_dma_latency: a warning, and nothing changes
        assert lines[0] == 'system setting' and 'cpu_wakeup_latency_us 0' in stderr
    # The request ends with the process that made it.
    assert _system_cpu_latency() == before
    # Where the kernel offers no such device the node warns and runs on.
    lines, stderr = _hold(0, '/nonexistent/cpu_dma_latency')
    assert lines[0] == 'system setting'
    assert 'cpu_wakeup_latency_us 0' in stderr and 'No such file' in stderr
