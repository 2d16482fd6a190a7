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
Checkpoints: a directory with ``config.json`` and ``model.safetensors``; never pickle.

``config.json`` names the policy type and holds its ``config_dict()``; every tensor the policy
needs (weights, EMA weights, normaliser statistics, tokenizer bin edges) is a buffer or parameter
in ``model.safetensors``. Loading executes no code from the files and checks that the tensors
match the architecture the config describes, name for name and shape for shape.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from dp_tt_ros.policies.base import Policy

CONFIG_FILE = 'config.json'
WEIGHTS_FILE = 'model.safetensors'
FORMAT_VERSION = 1

POLICY_CLASSES: dict[str, str] = {
    'diffusion': 'dp_tt_ros.policies.diffusion.modeling:DiffusionPolicy',
    'bc': 'dp_tt_ros.policies.bc.modeling:BCPolicy',
    'transformer': 'dp_tt_ros.policies.transformer.modeling:TrajectoryTransformerPolicy',
    'sac': 'dp_tt_ros.policies.sac.modeling:SACPolicy',
}


class CheckpointError(ValueError):
    """A checkpoint directory that is missing, corrupt, or does not match its config."""


def checkpoint_id(directory: str | os.PathLike) -> str:
    """Identify a checkpoint by the content of its files (first 16 hex digits of a SHA-256)."""
    digest = hashlib.sha256()
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        with open(Path(directory) / name, 'rb') as file:
            for block in iter(lambda: file.read(1 << 20), b''):
                digest.update(block)
    return digest.hexdigest()[:16]


def policy_class(policy_type: str) -> type[Policy]:
    if policy_type not in POLICY_CLASSES:
        raise CheckpointError(
            f'unknown policy_type {policy_type!r}; expected one of {sorted(POLICY_CLASSES)}')
    module_name, class_name = POLICY_CLASSES[policy_type].split(':')
    return getattr(importlib.import_module(module_name), class_name)


def save_checkpoint(policy: Policy, directory: str | os.PathLike,
                    extra: dict[str, Any] | None = None) -> Path:
    """Write ``policy`` atomically: files land under a temporary name and are then renamed."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        'format_version': FORMAT_VERSION,
        'policy_type': policy.spec.policy_type,
        'policy': policy.config_dict(),
        **(extra or {}),
    }
    tensors = {name: tensor.detach().cpu().contiguous()
               for name, tensor in policy.state_dict().items()}
    weights_tmp = directory / (WEIGHTS_FILE + '.tmp')
    config_tmp = directory / (CONFIG_FILE + '.tmp')
    save_file(tensors, str(weights_tmp), metadata={'policy_type': policy.spec.policy_type})
    config_tmp.write_text(json.dumps(config, indent=2, sort_keys=True) + '\n')
    os.replace(weights_tmp, directory / WEIGHTS_FILE)
    os.replace(config_tmp, directory / CONFIG_FILE)
    return directory


def read_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``config.json`` of a checkpoint directory."""
    directory = Path(directory)
    config_path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise CheckpointError(f'checkpoint directory {directory} does not exist')
    if not config_path.is_file():
        raise CheckpointError(f'{config_path} is missing; a checkpoint needs {CONFIG_FILE} '
                              f'and {WEIGHTS_FILE}')
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CheckpointError(f'{config_path} is not valid JSON: {error}') from error
    if not isinstance(config, dict) or 'policy_type' not in config or 'policy' not in config:
        raise CheckpointError(f'{config_path} lacks "policy_type" and "policy" entries')
    if config.get('format_version') != FORMAT_VERSION:
        raise CheckpointError(f'{config_path} has format_version {config.get("format_version")!r};'
                              f' this version reads {FORMAT_VERSION}')
    return config


def load_policy(directory: str | os.PathLike, device: str | torch.device = 'cpu') -> Policy:
    """Load a checkpoint directory into an eval-mode policy on ``device``."""
    directory = Path(directory)
    config = read_config(directory)
    cls = policy_class(config['policy_type'])
    try:
        policy = cls.from_config(config['policy'])
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(f'{directory / CONFIG_FILE} does not describe a valid '
                              f'{config["policy_type"]} policy: {error}') from error
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise CheckpointError(f'{weights_path} is missing')
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f'{weights_path} is not a readable safetensors file '
                              f'(truncated or corrupt?): {error}') from error
    expected = policy.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f'{weights_path} does not match {CONFIG_FILE}: missing tensors '
                              f'{missing[:5]}, unexpected tensors {unexpected[:5]}')
    wrong_shapes = [f'{name}: file {tuple(tensors[name].shape)} vs config '
                    f'{tuple(tensor.shape)}' for name, tensor in expected.items()
                    if tuple(tensors[name].shape) != tuple(tensor.shape)]
    if wrong_shapes:
        raise CheckpointError(f'{weights_path} does not match {CONFIG_FILE}: '
                              + '; '.join(wrong_shapes[:5]))
    policy.load_state_dict(tensors, strict=True)
    return policy.to(device).eval()
