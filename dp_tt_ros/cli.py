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
The ``dp-tt-ros`` command line.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and
``run(args) -> int``.
Modules are imported only when their subcommand is chosen, so ``dp-tt-ros node executor`` never
pays for importing torch or PyBullet it does not use.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

SUBCOMMANDS: dict[str, tuple[str, str]] = {
    'sim': ('dp_tt_ros.ros.runner', 'run the whole simulated graph on a shipped checkpoint'),
    'node': ('dp_tt_ros.ros.nodes', 'run one node: pybullet_bridge, perception, policy, '
                                    'executor, recorder'),
    'collect': ('dp_tt_ros.data.collect', 'record scripted-expert demos into an episode store'),
    'train': ('dp_tt_ros.training.cli', 'train a diffusion, transformer or bc policy'),
    'eval': ('dp_tt_ros.evaluation.cli', 'closed-loop evaluation of a checkpoint'),
    'bench': ('dp_tt_ros.bench.cli', 'benchmarks: inference, planning, ros, executor, sim, all'),
}


class CommandError(Exception):
    """A user-facing error: printed as one line, exit status 2, no traceback."""


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser; only ``command``'s module is imported and wired in."""
    parser = argparse.ArgumentParser(prog='dp-tt-ros', description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest='command', metavar='COMMAND', required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((arg for arg in argv if not arg.startswith('-')), None)
    parser = build_parser(command if command in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CommandError as error:
        print(f'dp-tt-ros {args.command}: error: {error}', file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f'dp-tt-ros {args.command}: interrupted', file=sys.stderr)
        return 130
