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
Resumable training state on disk: safetensors for tensors, JSON for the rest, never pickle.

A training run's resume state lives in ``<out>/resume/``:

* ``state.json``: step, world size, training configuration, scheduler state and the non-tensor
  part of the optimizer state (parameter groups, per-parameter scalars).
* ``model.safetensors``: the raw (non-averaged) policy weights.
* ``ema.safetensors``: the EMA weights, when the run keeps an EMA.
* ``optimizer.safetensors``: the optimizer's per-parameter tensors, flattened to
  ``state.<param index>.<name>`` (e.g. AdamW's ``exp_avg``).

No random-generator state is stored: the trainer derives the sample order and every random
draw of a step from ``(seed, step, rank)``, so the seed in the configuration is enough.

The folder is replaced as a whole: it is written as ``resume.tmp`` and then swapped in, so a
process killed at any instant leaves either the previous or the new state, never a mix.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

RESUME_DIR = 'resume'
STATE_FILE = 'state.json'
MODEL_FILE = 'model.safetensors'
EMA_FILE = 'ema.safetensors'
OPTIMIZER_FILE = 'optimizer.safetensors'
STATE_FORMAT_VERSION = 1


class TrainingStateError(ValueError):
    """A resume folder that is missing pieces or cannot be read."""


@dataclass
class TrainingState:
    """Everything a run needs to continue exactly where it stopped."""

    meta: dict[str, Any]
    model: dict[str, torch.Tensor]
    ema: dict[str, torch.Tensor] | None
    optimizer: dict[str, Any]


def flatten_optimizer_state(state_dict: dict[str, Any]
                            ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into a flat tensor dict and a JSON-able remainder."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for param_index, entries in state_dict['state'].items():
        scalars[str(param_index)] = {}
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f'state.{param_index}.{name}'] = value.detach().cpu().contiguous()
            else:
                scalars[str(param_index)][name] = value
    return tensors, {'state': scalars, 'param_groups': state_dict['param_groups']}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor],
                              remainder: dict[str, Any]) -> dict[str, Any]:
    """Invert :func:`flatten_optimizer_state` into a dict ``optimizer.load_state_dict`` takes."""
    state: dict[int, dict[str, Any]] = {int(index): dict(entries)
                                        for index, entries in remainder['state'].items()}
    for key, tensor in tensors.items():
        prefix, index, name = key.split('.', 2)
        if prefix != 'state':
            raise TrainingStateError(f'unexpected optimizer tensor {key!r}')
        state.setdefault(int(index), {})[name] = tensor
    return {'state': state, 'param_groups': remainder['param_groups']}


def _tensors(module_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().cpu().contiguous() for name, tensor in module_state.items()}


def save_training_state(out_dir: str | os.PathLike, state: TrainingState) -> Path:
    """Write ``state`` to ``<out_dir>/resume`` atomically (whole-folder swap)."""
    out_dir = Path(out_dir)
    final = out_dir / RESUME_DIR
    staging = out_dir / (RESUME_DIR + '.tmp')
    previous = out_dir / (RESUME_DIR + '.old')
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    optimizer_tensors, optimizer_rest = flatten_optimizer_state(state.optimizer)
    save_file(_tensors(state.model), str(staging / MODEL_FILE))
    if state.ema is not None:
        save_file(_tensors(state.ema), str(staging / EMA_FILE))
    save_file(optimizer_tensors, str(staging / OPTIMIZER_FILE))
    meta = {'format_version': STATE_FORMAT_VERSION, **state.meta, 'optimizer': optimizer_rest}
    (staging / STATE_FILE).write_text(json.dumps(meta, indent=1, sort_keys=True) + '\n')
    if final.exists():
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(final, previous)
    os.replace(staging, final)
    if previous.exists():
        shutil.rmtree(previous)
    return final


def find_training_state(out_dir: str | os.PathLike) -> Path | None:
    """Return the newest complete resume folder under ``out_dir``, or None if there is none."""
    out_dir = Path(out_dir)
    for candidate in (out_dir / RESUME_DIR, out_dir / (RESUME_DIR + '.old')):
        if (candidate / STATE_FILE).is_file():
            return candidate
    return None


def load_training_state(folder: str | os.PathLike) -> TrainingState:
    """Read a resume folder written by :func:`save_training_state`."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        raise TrainingStateError(f'cannot read {folder / STATE_FILE}: {error}') from error
    if meta.get('format_version') != STATE_FORMAT_VERSION:
        raise TrainingStateError(f'{folder / STATE_FILE} has format_version '
                                 f'{meta.get("format_version")!r}; expected '
                                 f'{STATE_FORMAT_VERSION}')
    optimizer_rest = meta.pop('optimizer')
    try:
        model = load_file(str(folder / MODEL_FILE))
        ema = load_file(str(folder / EMA_FILE)) if (folder / EMA_FILE).is_file() else None
        optimizer_tensors = load_file(str(folder / OPTIMIZER_FILE))
    except (SafetensorError, OSError, ValueError) as error:
        raise TrainingStateError(f'cannot read the tensors in {folder}: {error}') from error
    return TrainingState(meta=meta, model=model, ema=ema,
                         optimizer=unflatten_optimizer_state(optimizer_tensors, optimizer_rest))
