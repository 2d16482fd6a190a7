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

"""``dp-tt-ros bench NAME``: each benchmark module has ``add_arguments`` and ``run``."""

from __future__ import annotations

import argparse
import importlib

BENCHMARKS: dict[str, tuple[str, str]] = {
    'inference': ('dp_tt_ros.bench.inference', 'DP/BC inference: ms per action chunk'),
    'planning': ('dp_tt_ros.bench.planning', 'TT planning: cached vs full re-forward'),
    'ros': ('dp_tt_ros.bench.ros', 'observation capture to first command through the graph'),
    'executor': ('dp_tt_ros.bench.executor', 'command rate and period jitter at 200 Hz'),
    'sim': ('dp_tt_ros.bench.sim', 'physics steps/s, render ms/frame, eval episodes/min'),
    'all': ('dp_tt_ros.bench.summary', 'run every benchmark, write JSON + markdown report'),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    subparsers = parser.add_subparsers(dest='benchmark', metavar='BENCHMARK', required=True)
    for name, (module_name, help_text) in BENCHMARKS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.add_argument('--json', metavar='FILE', help='write machine-readable results here')
        sub.set_defaults(bench_module=module_name)
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as error:
            if error.name != module_name:
                raise
            continue
        module.add_arguments(sub)
        sub.set_defaults(bench_run=module.run)


def run(args: argparse.Namespace) -> int:
    if not hasattr(args, 'bench_run'):
        raise ModuleNotFoundError(f'benchmark module {args.bench_module} is not installed')
    return args.bench_run(args)
