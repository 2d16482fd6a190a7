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
``dp-tt-ros bench NAME``: each benchmark module has ``add_arguments`` and ``run``.

Only the chosen benchmark's module is imported, so ``bench ros`` never loads PyBullet or a
benchmark it does not run; its options are parsed by its own parser.
"""

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
    parser.add_argument('benchmark', choices=list(BENCHMARKS), metavar='BENCHMARK',
                        help='; '.join(f'{name}: {text}'
                                       for name, (_, text) in BENCHMARKS.items()))
    parser.add_argument('bench_args', nargs=argparse.REMAINDER,
                        help='options of that benchmark (see dp-tt-ros bench BENCHMARK --help)')


def benchmark_parser(name: str) -> argparse.ArgumentParser:
    """Build the chosen benchmark's own parser, importing only its module."""
    module_name, help_text = BENCHMARKS[name]
    parser = argparse.ArgumentParser(prog=f'dp-tt-ros bench {name}', description=help_text)
    parser.add_argument('--json', metavar='FILE', help='write machine-readable results here')
    module = importlib.import_module(module_name)
    module.add_arguments(parser)
    parser.set_defaults(command='bench', benchmark=name, bench_run=module.run)
    return parser


def run(args: argparse.Namespace) -> int:
    bench_args = benchmark_parser(args.benchmark).parse_args(args.bench_args)
    return bench_args.bench_run(bench_args)
