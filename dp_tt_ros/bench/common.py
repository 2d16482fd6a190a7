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

"""Shared helpers for benchmarks: robust statistics, machine description, JSON output."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import yaml

from dp_tt_ros.cli import CommandError
from dp_tt_ros.paths import config_dir


def summarize(samples: Sequence[float]) -> dict[str, float]:
    """Median and tail percentiles: benchmarks quote medians, tails show jitter."""
    values = np.asarray(samples, dtype=float)
    if values.size == 0:
        raise ValueError('no samples to summarize')
    return {
        'n': int(values.size),
        'median': float(np.median(values)),
        'p90': float(np.percentile(values, 90)),
        'p99': float(np.percentile(values, 99)),
        'min': float(values.min()),
        'max': float(values.max()),
    }


def machine_info() -> dict[str, Any]:
    import torch
    return {
        'platform': platform.platform(),
        'processor': platform.processor() or platform.machine(),
        'cpu_count': os.cpu_count(),
        'python': platform.python_version(),
        'torch': torch.__version__,
        'torch_threads': torch.get_num_threads(),
        'cuda': torch.cuda.is_available(),
    }


def write_json(result: dict[str, Any], path: str | os.PathLike | None) -> None:
    """Print a one-line summary of ``result`` as JSON, and write it to ``path`` if given."""
    text = json.dumps(result, indent=2, sort_keys=True)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + '\n')
    print(text)


def robot_realtime_priority(requested: int | None) -> int:
    """
    SCHED_FIFO priority of a benchmark's robot stand-in: ``requested``, else the executor's own.

    On a robot the command receiver is ros2_control's controller_manager, which runs under
    SCHED_FIFO (priority 50), so a stand-in with the normal scheduler would time its own
    wake-ups as much as the graph's.
    """
    if requested is None:
        parameters = yaml.safe_load((config_dir() / 'executor.yaml').read_text())
        requested = int(parameters['executor']['ros__parameters'].get('realtime_priority', 0))
    if not 0 <= requested <= 99:
        raise CommandError(f'--realtime-priority must be 0 (off) to 99, got {requested}')
    return requested
