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
