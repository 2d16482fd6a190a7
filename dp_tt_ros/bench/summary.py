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
``dp-tt-ros bench all``: run every benchmark in its own process and write one report.

Each benchmark runs as ``python -m dp_tt_ros bench NAME --json FILE`` so that one benchmark's
threads, DDS participants or PyBullet server cannot skew the next one, and a crash in one is
reported instead of ending the run. The report keeps each benchmark's full JSON and pulls out
the numbers worth reading: medians (with tails) of every timing summary and every ratio.
"""

from __future__ import annotations

import argparse
import importlib
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from tqdm import tqdm

from dp_tt_ros.bench.cli import BENCHMARKS
from dp_tt_ros.bench.common import machine_info, write_json
from dp_tt_ros.cli import CommandError

BENCHMARK_NAMES: tuple[str, ...] = tuple(name for name in BENCHMARKS if name != 'all')
RATIO_WORDS = ('ratio', 'speedup', 'fraction')
# Small settings for ``--quick`` (a smoke test of the whole pipeline, not a measurement), used
# for benchmarks without a ``--quick`` option of their own.
QUICK_ARGS: dict[str, list[str]] = {
    'inference': ['--down-dims', '16,32,64', '--repeats', '3', '--warmup', '1'],
    'ros': ['--trials', '5', '--warmup-trials', '1'],
    'sim': ['--tasks', 'reach', '--physics-blocks', '2', '--frames', '3', '--episodes', '1'],
}
ERROR_TAIL_CHARS = 2000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--markdown', metavar='FILE', help='write a markdown report here')
    parser.add_argument('--quick', action='store_true',
                        help='small settings for every benchmark (a smoke test, not a '
                             'measurement)')
    parser.add_argument('--only', nargs='+', choices=BENCHMARK_NAMES, metavar='NAME',
                        help=f'run only these benchmarks (default: all of {BENCHMARK_NAMES})')
    parser.add_argument('--timeout', type=float, default=1800.0, metavar='SECONDS',
                        help='give up on one benchmark after this long (default 1800)')


def accepted_options(name: str) -> set[str]:
    """Return the option strings benchmark ``name`` declares (without running it)."""
    module = importlib.import_module(BENCHMARKS[name][0])
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return set(parser._option_string_actions)


def quick_arguments(name: str) -> list[str]:
    """Return the arguments that make benchmark ``name`` small, or [] if it has none."""
    options = accepted_options(name)
    if '--quick' in options:
        return ['--quick']
    arguments = QUICK_ARGS.get(name, [])
    if all(arg in options for arg in arguments if arg.startswith('--')):
        return list(arguments)
    return []


def benchmark_command(name: str, json_path: Path, quick: bool) -> list[str]:
    """Build the command line that runs one benchmark in a fresh interpreter."""
    command = [sys.executable, '-m', 'dp_tt_ros', 'bench', name, '--json', str(json_path)]
    return command + (quick_arguments(name) if quick else [])


def is_installed(name: str) -> bool:
    """Tell whether benchmark ``name``'s module exists in this checkout."""
    try:
        importlib.import_module(BENCHMARKS[name][0])
    except ModuleNotFoundError as error:
        if error.name != BENCHMARKS[name][0]:
            raise
        return False
    return True


def run_benchmark(name: str, workdir: Path, quick: bool, timeout: float) -> dict[str, Any]:
    """Run one benchmark subprocess and return its status, wall time and parsed JSON."""
    if not is_installed(name):
        return {'status': 'missing', 'error': f'module {BENCHMARKS[name][0]} is not installed'}
    json_path = workdir / f'{name}.json'
    command = benchmark_command(name, json_path, quick)
    entry: dict[str, Any] = {'command': command[1:]}
    started = time.perf_counter()
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        entry.update(status='failed', wall_s=time.perf_counter() - started,
                     error=f'timed out after {timeout:.0f} s')
        return entry
    entry['wall_s'] = time.perf_counter() - started
    entry['returncode'] = completed.returncode
    if completed.returncode != 0 or not json_path.is_file():
        output = completed.stderr or completed.stdout
        entry.update(status='failed', error=output[-ERROR_TAIL_CHARS:])
        return entry
    try:
        entry['result'] = json.loads(json_path.read_text())
    except json.JSONDecodeError as error:
        entry.update(status='failed', error=f'{json_path.name} is not valid JSON: {error}')
        return entry
    entry['status'] = 'ok'
    return entry


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _repeats_a_summary(mapping: dict[str, Any], key: str) -> bool:
    """Tell whether ``key`` is ``X_median`` next to a summary ``X`` that already has it."""
    base = key[:-len('_median')] if key.endswith('_median') else None
    sibling = mapping.get(base) if base else None
    return isinstance(sibling, dict) and sibling.get('median') == mapping[key]


def highlights(result: Any, prefix: str = '') -> Iterator[dict[str, Any]]:
    """
    Yield the headline numbers of one benchmark's JSON, depth first, in file order.

    A mapping with a numeric ``median`` is a timing summary (``bench.common.summarize``) and
    becomes one row; a numeric value whose key names a median or a ratio becomes one row,
    unless it only repeats the median of a summary next to it (``X_median`` beside ``X``).
    """
    if isinstance(result, dict):
        if _is_number(result.get('median')):
            tails = {key: result[key] for key in ('p90', 'p99', 'n')
                     if _is_number(result.get(key))}
            yield {'metric': prefix, 'median': result['median'], **tails}
            return
        for key, value in result.items():
            path = f'{prefix}.{key}' if prefix else str(key)
            if _repeats_a_summary(result, key):
                continue
            if _is_number(value) and ('median' in key or any(w in key for w in RATIO_WORDS)):
                yield {'metric': path, 'value': value}
            elif isinstance(value, (dict, list)):
                yield from highlights(value, path)
    elif isinstance(result, list):
        for index, value in enumerate(result):
            yield from highlights(value, f'{prefix}[{index}]')


def summarize_reports(entries: dict[str, dict[str, Any]], quick: bool) -> dict[str, Any]:
    """Assemble the combined report from per-benchmark entries (as ``run_benchmark`` returns)."""
    return {
        'created': datetime.now(timezone.utc).isoformat(timespec='seconds'),
        'quick': quick,
        'machine': machine_info(),
        'benchmarks': entries,
        'highlights': {name: list(highlights(entry['result']))
                       for name, entry in entries.items() if entry['status'] == 'ok'},
    }


def _format(value: Any) -> str:
    if not _is_number(value):
        return ''
    return f'{value:.4g}'


def markdown_report(report: dict[str, Any]) -> str:
    """Render the combined report as markdown: machine, status per benchmark, headline numbers."""
    lines = ['# dp_tt_ros benchmarks', '',
             f'Created {report["created"]}' + (' (quick settings)' if report['quick'] else ''),
             '', '| machine | |', '|---|---|']
    lines += [f'| {key} | {value} |' for key, value in report['machine'].items()]
    lines += ['', '| benchmark | status | wall (s) |', '|---|---|---|']
    for name, entry in report['benchmarks'].items():
        lines.append(f'| {name} | {entry["status"]} | {_format(entry.get("wall_s"))} |')
    for name, entry in report['benchmarks'].items():
        lines += ['', f'## {name}', '']
        if entry['status'] != 'ok':
            error = entry.get('error', '').strip().splitlines()
            lines.append(f'{entry["status"]}: {error[-1] if error else "no output"}')
            continue
        rows = report['highlights'][name]
        if not rows:
            lines.append('no medians or ratios in this benchmark\'s JSON')
            continue
        lines += ['| metric | median / value | p90 | p99 | n |', '|---|---|---|---|---|']
        for row in rows:
            lines.append(f'| {row["metric"]} | {_format(row.get("median", row.get("value")))} | '
                         f'{_format(row.get("p90"))} | {_format(row.get("p99"))} | '
                         f'{_format(row.get("n"))} |')
    return '\n'.join(lines) + '\n'


def run(args: argparse.Namespace) -> int:
    if args.timeout <= 0:
        raise CommandError(f'--timeout must be positive, got {args.timeout}')
    names = list(args.only or BENCHMARK_NAMES)
    entries: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix='dp_tt_ros_bench_') as workdir:
        progress = tqdm(names, desc='benchmarks', unit='bench')
        for name in progress:
            progress.set_postfix_str(name)
            entries[name] = run_benchmark(name, Path(workdir), args.quick, args.timeout)
    report = summarize_reports(entries, args.quick)
    write_json(report, args.json)
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown_report(report))
    failed = [name for name, entry in entries.items() if entry['status'] != 'ok']
    if failed:
        print(f'benchmarks not completed: {", ".join(failed)}', file=sys.stderr)
        return 1
    return 0
