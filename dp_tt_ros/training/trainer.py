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
The trainer: AdamW with cosine warm-up, EMA, periodic resumable checkpoints, DDP.

One loop serves Diffusion Policy, BC and the Trajectory Transformer. The policy class supplies
``build`` (fit normalisers / tokenizers on the raw arrays), ``compute_loss`` and, if it needs its
own samples, ``make_dataset``; otherwise the windows of :mod:`dp_tt_ros.data.sequence` are used.

Determinism: the sample order and every random draw inside ``compute_loss`` (diffusion noise,
dropout, crop augmentation) are functions of ``(seed, step, rank)`` only. Batch ``s`` takes
positions ``[s * B, (s + 1) * B)`` of an endless stream of per-epoch permutations seeded by
``(seed, epoch)``, and torch's generator is re-seeded from ``(seed, step, rank)`` before each
step. A resumed run therefore replays exactly what an uninterrupted run would have done, and
``torchrun`` with R ranks of batch b trains on the same samples as one process with batch R * b
(rank r takes slice r of each global batch).

Output folder ``DIR``: ``config.json`` + ``model.safetensors`` (a loadable checkpoint holding the
EMA weights when EMA is on), ``resume/`` (see :mod:`dp_tt_ros.training.state`) and
``train_log.jsonl`` (one JSON object per logged step or evaluation).
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, default_collate
from tqdm import tqdm

from dp_tt_ros.data.sequence import SequenceDataset
from dp_tt_ros.policies.base import Policy, PolicySpec
from dp_tt_ros.policies.checkpoint import CONFIG_FILE, policy_class, save_checkpoint
from dp_tt_ros.training.distributed import (DistributedContext, init_distributed,
                                            shutdown_distributed)
from dp_tt_ros.training.state import (TrainingState, find_training_state, load_training_state,
                                      save_training_state)

POLICY_TYPES = ('diffusion', 'transformer', 'bc')
LOG_FILE = 'train_log.jsonl'

# Per-family optimiser defaults: diffusion_policy's low-dim U-Net recipe for DP (and BC, so the
# baseline trains identically); trajectory-transformer's GPT recipe for TT.
TRAINING_DEFAULTS: dict[str, dict[str, Any]] = {
    'diffusion': {'lr': 1e-4, 'betas': (0.95, 0.999), 'weight_decay': 1e-6,
                  'warmup_steps': 500, 'grad_clip': None, 'use_ema': True},
    'bc': {'lr': 1e-4, 'betas': (0.95, 0.999), 'weight_decay': 1e-6,
           'warmup_steps': 500, 'grad_clip': None, 'use_ema': True},
    'transformer': {'lr': 6e-4, 'betas': (0.9, 0.95), 'weight_decay': 0.1,
                    'warmup_steps': 500, 'grad_clip': 1.0, 'use_ema': False},
}

# Observation keys a policy sees unless ``obs_keys`` is given; missing or empty keys are skipped.
DEFAULT_OBS_KEYS: dict[str, tuple[str, ...]] = {
    'diffusion': ('joint_pos', 'joint_vel', 'object_state'),
    'bc': ('joint_pos', 'joint_vel', 'object_state'),
    'transformer': ('joint_pos', 'object_state'),
}
SPEC_OVERRIDES = ('obs_keys', 'horizon', 'n_obs_steps', 'n_action_steps')
NON_OBSERVATION_KEYS = ('goal', 'action', 'reward', 'success')


class TrainingError(ValueError):
    """Bad training input: unknown policy, unusable data, conflicting resume settings."""


@dataclass
class TrainConfig:
    """Optimisation settings; saved with the run and required to match on resume."""

    policy_type: str
    steps: int = 5000
    batch_size: int = 64
    lr: float = 1e-4
    betas: tuple[float, float] = (0.95, 0.999)
    weight_decay: float = 1e-6
    warmup_steps: int = 500
    grad_clip: float | None = None
    use_ema: bool = True
    seed: int = 0
    checkpoint_every: int = 1000
    log_every: int = 10
    eval_every: int = 0
    eval_task: str | None = None
    eval_episodes: int = 10
    policy_overrides: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def for_policy(cls, policy_type: str, **overrides: Any) -> 'TrainConfig':
        """Start from the policy family's defaults; ``None`` overrides keep the default."""
        if policy_type not in TRAINING_DEFAULTS:
            raise TrainingError(f'unknown policy type {policy_type!r}; expected one of '
                                f'{list(POLICY_TYPES)}')
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise TrainingError(f'unknown training settings {unknown}; expected some of '
                                f'{sorted(known)}')
        values = {**TRAINING_DEFAULTS[policy_type],
                  **{key: value for key, value in overrides.items() if value is not None}}
        config = cls(policy_type=policy_type, **values)
        config.betas = tuple(config.betas)
        config.validate()
        return config

    def validate(self) -> None:
        """Reject settings the loop cannot honour, naming the bad value."""
        positive = {'steps': self.steps, 'batch_size': self.batch_size,
                    'checkpoint_every': self.checkpoint_every, 'log_every': self.log_every}
        for name, value in positive.items():
            if value < 1:
                raise TrainingError(f'{name} must be >= 1, got {value}')
        if not self.lr > 0:
            raise TrainingError(f'lr must be > 0, got {self.lr}')
        if self.warmup_steps < 0 or self.weight_decay < 0:
            raise TrainingError(f'warmup_steps and weight_decay must be >= 0, got '
                                f'{self.warmup_steps} and {self.weight_decay}')
        if len(self.betas) != 2 or not all(0 <= beta < 1 for beta in self.betas):
            raise TrainingError(f'betas must be two numbers in [0, 1), got {self.betas}')
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise TrainingError(f'grad_clip must be > 0 or None, got {self.grad_clip}')
        if self.eval_every < 0:
            raise TrainingError(f'eval_every must be >= 0, got {self.eval_every}')
        if self.eval_every and (not self.eval_task or self.eval_episodes < 1):
            raise TrainingError(f'eval_every={self.eval_every} needs an eval_task and '
                                f'eval_episodes >= 1, got {self.eval_task!r} and '
                                f'{self.eval_episodes}')

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data['betas'] = list(self.betas)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'TrainConfig':
        config = cls(**dict(data))
        config.betas = tuple(config.betas)
        return config


@dataclass
class StoreData:
    """An episode store loaded into memory: raw arrays, episode ends and attributes."""

    arrays: dict[str, np.ndarray]
    episode_ends: np.ndarray
    attrs: dict[str, Any]
    path: str

    @property
    def n_steps(self) -> int:
        return int(self.episode_ends[-1]) if self.episode_ends.size else 0

    def build_inputs(self) -> dict[str, np.ndarray]:
        """Return the mapping ``Policy.build`` and ``make_dataset`` take: arrays + episode_ends."""
        return {**self.arrays, 'episode_ends': self.episode_ends}


def load_store(path: str | os.PathLike) -> StoreData:
    """Read every committed step of an episode store into memory."""
    from dp_tt_ros.data.episode_store import EpisodeStore, EpisodeStoreError

    try:
        store = EpisodeStore.open(path)
    except EpisodeStoreError as error:
        raise TrainingError(f'cannot train on {path}: {error}') from error
    episode_ends = np.asarray(store.episode_ends, dtype=np.int64)
    if episode_ends.size == 0:
        raise TrainingError(f'episode store {path} holds no finished episodes')
    arrays = {key: np.asarray(store[key][:]) for key in store.keys}
    return StoreData(arrays=arrays, episode_ends=episode_ends, attrs=dict(store.attrs),
                     path=str(path))


def make_spec(policy_type: str, data: StoreData,
              overrides: Mapping[str, Any]) -> tuple[PolicySpec, dict[str, Any]]:
    """Derive the policy's spec from the store; return it and the remaining build config."""
    config = dict(overrides)
    spec_values = {key: config.pop(key) for key in SPEC_OVERRIDES if key in config}
    obs_keys = spec_values.pop('obs_keys', None)
    if obs_keys is None:
        obs_keys = [key for key in DEFAULT_OBS_KEYS[policy_type]
                    if key in data.arrays and np.prod(data.arrays[key].shape[1:]) > 0]
    elif isinstance(obs_keys, str):
        obs_keys = [obs_keys]
    unusable = [key for key in obs_keys
                if key not in data.arrays or key in NON_OBSERVATION_KEYS]
    if unusable or not obs_keys:
        observation_keys = sorted(set(data.arrays) - set(NON_OBSERVATION_KEYS))
        raise TrainingError(f'obs_keys {list(obs_keys)} are not usable observation keys of '
                            f'{data.path}; expected a non-empty subset of {observation_keys}')
    if 'action' not in data.arrays:
        raise TrainingError(f'episode store {data.path} has no "action" key')
    image_keys = [key for key in obs_keys
                  if data.arrays[key].dtype == np.uint8 and data.arrays[key].ndim == 4]
    # use_goal=false trains without the goal vector, e.g. an image policy that must find the
    # goal marker in the camera image.
    use_goal = bool(config.pop('use_goal', True))
    goal_dim = int(data.arrays['goal'].shape[-1]) if use_goal and 'goal' in data.arrays else 0
    try:
        spec = PolicySpec(
            policy_type=policy_type,
            obs_shapes={key: list(data.arrays[key].shape[1:]) for key in obs_keys},
            image_keys=image_keys,
            goal_dim=goal_dim,
            action_dim=int(data.arrays['action'].shape[-1]),
            dt=float(data.attrs.get('control_dt', 0.1)),
            **spec_values,
        )
    except TypeError as error:
        raise TrainingError(f'bad spec override in {spec_values}: {error}') from error
    if not 1 <= spec.n_action_steps <= spec.horizon or spec.n_obs_steps < 1:
        raise TrainingError(f'need 1 <= n_action_steps <= horizon and n_obs_steps >= 1, got '
                            f'n_action_steps={spec.n_action_steps}, horizon={spec.horizon}, '
                            f'n_obs_steps={spec.n_obs_steps}')
    return spec, config


def make_dataset(policy: Policy, data: StoreData) -> Dataset:
    """Return the policy's own dataset if it defines one, else DP/BC observation windows."""
    if hasattr(policy, 'make_dataset'):
        return policy.make_dataset(data.build_inputs())
    return SequenceDataset.from_spec(data.arrays, data.episode_ends, policy.spec)


class BatchStream:
    """Deterministic sample order: an endless concatenation of seeded per-epoch permutations."""

    def __init__(self, n_samples: int, seed: int) -> None:
        if n_samples < 1:
            raise TrainingError('the training dataset is empty: no window fits in any episode')
        self.n_samples = n_samples
        self.seed = seed
        self._epoch = -1
        self._order = np.zeros(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._order = np.random.default_rng([self.seed, epoch]).permutation(self.n_samples)
            self._epoch = epoch
        return self._order

    def positions(self, start: int, count: int) -> np.ndarray:
        """Sample indices at stream positions ``start ... start + count - 1``."""
        out = np.empty(count, dtype=np.int64)
        for i, position in enumerate(range(start, start + count)):
            epoch, offset = divmod(position, self.n_samples)
            out[i] = self._permutation(epoch)[offset]
        return out

    def epoch(self, position: int) -> float:
        return position / self.n_samples


class CosineWithWarmup:
    """LR multiplier: linear warm-up to 1, then half a cosine down to 0 at the last step."""

    def __init__(self, warmup_steps: int, total_steps: int) -> None:
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / (self.warmup_steps + 1)
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


class _LossModule(nn.Module):
    """Routes ``forward`` to ``compute_loss`` so DistributedDataParallel sees the loss pass."""

    def __init__(self, policy: Policy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return self.policy.compute_loss(batch)


def step_seed(seed: int, step: int, rank: int) -> int:
    """Derive a well-mixed torch seed for one (run, step, rank)."""
    return int(np.random.SeedSequence([seed, step, rank]).generate_state(1, np.uint64)[0]
               % (2 ** 63))


@dataclass
class TrainResult:
    """What a finished run reports."""

    out_dir: Path
    steps: int
    final_loss: float
    wall_time_s: float
    resumed_from: int
    rank: int = 0


EvaluateFn = Callable[[Policy, str, int, int], Mapping[str, Any]]


class Trainer:
    """Trains one policy on one episode store into ``out_dir``; see the module docstring."""

    def __init__(self, config: TrainConfig, data_path: str | os.PathLike,
                 out_dir: str | os.PathLike, *, resume: bool = False, device: str = 'cpu',
                 progress: bool = True) -> None:
        config.validate()
        self.config = config
        self.data_path = str(data_path)
        self.out_dir = Path(out_dir)
        self.resume = resume
        self.requested_device = device
        self.progress = progress
        self.evaluate_fn = _find_evaluator() if config.eval_every else None

    def run(self) -> TrainResult:
        """Train to ``config.steps`` (continuing a saved run when resuming) and save."""
        context = init_distributed(self.requested_device)
        try:
            return self._run(context)
        finally:
            shutdown_distributed(context)

    def _prepare_out_dir(self) -> TrainingState | None:
        saved = find_training_state(self.out_dir)
        if saved is not None and not self.resume:
            raise TrainingError(f'{self.out_dir} already holds a training run; pass --resume to '
                                f'continue it or choose another --out')
        if saved is None:
            if (self.out_dir / CONFIG_FILE).exists() and not self.resume:
                raise TrainingError(f'{self.out_dir} already holds a checkpoint; choose another '
                                    f'--out')
            return None
        state = load_training_state(saved)
        self._check_resumable(state.meta)
        return state

    def _check_resumable(self, meta: Mapping[str, Any]) -> None:
        saved = meta['train_config']
        current = self.config.to_dict()
        ignored = {'checkpoint_every', 'log_every', 'eval_every', 'eval_task', 'eval_episodes'}
        differences = {key: (saved.get(key), value) for key, value in current.items()
                       if key not in ignored and saved.get(key) != value}
        if differences:
            listed = ', '.join(f'{key}: saved {old!r}, now {new!r}'
                               for key, (old, new) in sorted(differences.items()))
            raise TrainingError(f'cannot resume {self.out_dir} with different settings ({listed})')

    def _run(self, context: DistributedContext) -> TrainResult:
        config = self.config
        device = context.device(self.requested_device)
        saved = self._prepare_out_dir()
        data = load_store(self.data_path)
        if saved is not None and saved.meta['data']['n_steps'] != data.n_steps:
            raise TrainingError(f'{self.data_path} now has {data.n_steps} steps but the run in '
                                f'{self.out_dir} was trained on {saved.meta["data"]["n_steps"]}')
        saved_world = saved.meta.get('world_size', 1) if saved is not None else None
        if saved is not None and saved_world != context.world_size:
            raise TrainingError(f'the run in {self.out_dir} used {saved_world} '
                                f'processes; resume it with the same number, not '
                                f'{context.world_size}')

        torch.manual_seed(config.seed)
        cls = policy_class(config.policy_type)
        if saved is None:
            spec, build_config = make_spec(config.policy_type, data, config.policy_overrides)
            try:
                policy = cls.build(data.build_inputs(), spec, **build_config)
            except (KeyError, TypeError, ValueError) as error:
                raise TrainingError(f'cannot build a {config.policy_type} policy with settings '
                                    f'{build_config} on {self.data_path}: {error}') from error
        else:
            policy = cls.from_config(saved.meta['policy_config'])
            policy.load_state_dict(saved.model, strict=True)
        policy.to(device).train()
        dataset = make_dataset(policy, data)
        stream = BatchStream(len(dataset), config.seed)

        ema = _make_ema(policy) if config.use_ema else None
        optimizer = torch.optim.AdamW(policy.parameters(), lr=config.lr, betas=config.betas,
                                      weight_decay=config.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, CosineWithWarmup(config.warmup_steps, config.steps))
        start_step = 0
        if saved is not None:
            optimizer.load_state_dict(saved.optimizer)
            scheduler.load_state_dict(saved.meta['scheduler'])
            if ema is not None:
                ema.averaged.load_state_dict(saved.ema, strict=True)
            start_step = int(saved.meta['step'])
        loss_module: nn.Module = _LossModule(policy)
        if context.enabled:
            loss_module = DistributedDataParallel(
                loss_module, device_ids=[device.index] if device.type == 'cuda' else None)

        log = _TrainLog(self.out_dir / LOG_FILE, enabled=context.is_main)
        if context.is_main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            log.truncate_after(start_step)
        global_batch = config.batch_size * context.world_size
        get_batch = getattr(dataset, 'get_batch', None) or _collate_getter(dataset)
        bar = tqdm(total=config.steps, initial=start_step, desc=f'train {config.policy_type}',
                   unit='step', dynamic_ncols=True,
                   disable=not (self.progress and context.is_main))
        started = time.monotonic()
        window_losses: list[float] = []
        loss_value = float('nan')
        for step in range(start_step, config.steps):
            indices = stream.positions(step * global_batch, global_batch)
            shard = indices[context.rank * config.batch_size:
                            (context.rank + 1) * config.batch_size]
            batch = {key: value.to(device, non_blocking=True)
                     for key, value in get_batch(shard).items()}
            torch.manual_seed(step_seed(config.seed, step, context.rank))
            loss = loss_module(batch)
            if not torch.isfinite(loss):
                raise TrainingError(f'loss became {loss.item()} at step {step}; lower --lr or '
                                    f'check the data for NaN/Inf')
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip is not None:
                nn.utils.clip_grad_norm_(policy.parameters(), config.grad_clip)
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(policy, step)
            loss_value = float(context.mean(loss.detach()).item())
            window_losses.append(loss_value)
            done = step + 1
            bar.update(1)
            bar.set_postfix(loss=f'{loss_value:.4f}', lr=f'{scheduler.get_last_lr()[0]:.2e}',
                            refresh=False)
            if done % config.log_every == 0 or done == config.steps:
                log.write({'step': done, 'loss': float(np.mean(window_losses)),
                           'lr': scheduler.get_last_lr()[0],
                           'epoch': stream.epoch(done * global_batch),
                           'elapsed_s': time.monotonic() - started})
                window_losses = []
            if done % config.checkpoint_every == 0 or done == config.steps:
                if context.is_main:
                    self._save(done, policy, ema, optimizer, scheduler, data, loss_value,
                               context.world_size)
                context.barrier()
            if config.eval_every and done % config.eval_every == 0 and context.is_main:
                self._evaluate(done, _inference_policy(policy, ema), log, bar)
        bar.close()
        return TrainResult(out_dir=self.out_dir, steps=config.steps, final_loss=loss_value,
                           wall_time_s=time.monotonic() - started, resumed_from=start_step,
                           rank=context.rank)

    def _save(self, step: int, policy: Policy, ema: Any, optimizer: torch.optim.Optimizer,
              scheduler: torch.optim.lr_scheduler.LRScheduler, data: StoreData,
              loss: float, world_size: int) -> None:
        """Write the resume state first, then the loadable checkpoint (EMA weights if kept)."""
        data_info = {'path': data.path, 'n_steps': data.n_steps,
                     'n_episodes': int(data.episode_ends.size),
                     'task': data.attrs.get('task')}
        meta = {
            'step': step,
            'world_size': world_size,
            'train_config': self.config.to_dict(),
            'policy_config': policy.config_dict(),
            'scheduler': _json_ready(scheduler.state_dict()),
            'data': data_info,
        }
        save_training_state(self.out_dir, TrainingState(
            meta=meta, model=policy.state_dict(),
            ema=ema.averaged.state_dict() if ema is not None else None,
            optimizer=optimizer.state_dict()))
        save_checkpoint(_inference_policy(policy, ema), self.out_dir, extra={'training': {
            'step': step, 'loss': loss, 'ema': ema is not None, 'data': data_info,
            'train_config': self.config.to_dict()}})

    def _evaluate(self, step: int, policy: Policy, log: '_TrainLog', bar: tqdm) -> None:
        was_training = policy.training
        policy.eval()
        summary = dict(self.evaluate_fn(policy, self.config.eval_task,
                                        self.config.eval_episodes, self.config.seed))
        policy.train(was_training)
        log.write({'step': step, 'eval': _json_ready(summary)})
        bar.write(f'step {step}: eval on {self.config.eval_task}: '
                  + json.dumps(_json_ready(summary), sort_keys=True))


class _TrainLog:
    """Append-only JSON-lines log; on resume, entries past the resumed step are dropped."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path = path
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        if not self.path.exists():
            return
        kept = []
        for line in self.path.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(entry, dict) and entry.get('step', 0) <= step:
                kept.append(line)
        self.path.write_text(''.join(line + '\n' for line in kept))

    def write(self, entry: Mapping[str, Any]) -> None:
        if self.enabled:
            with self.path.open('a') as stream:
                stream.write(json.dumps(entry, sort_keys=True) + '\n')


def read_train_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Read ``train_log.jsonl`` (a folder or the file itself) into a list of entries."""
    path = Path(path)
    if path.is_dir():
        path = path / LOG_FILE
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _make_ema(policy: Policy) -> Any:
    from dp_tt_ros.policies.ema import EMA
    return EMA(policy)


def _inference_policy(policy: Policy, ema: Any) -> Policy:
    return ema.averaged if ema is not None else policy


def _collate_getter(dataset: Dataset) -> Callable[[Sequence[int]], dict[str, torch.Tensor]]:
    def get_batch(indices: Sequence[int]) -> dict[str, torch.Tensor]:
        return default_collate([dataset[int(index)] for index in indices])
    return get_batch


def _find_evaluator() -> EvaluateFn:
    """Return a ``(policy, task, episodes, seed) -> summary`` function over the evaluator."""
    try:
        from dp_tt_ros.evaluation.metrics import summarize_episodes
        from dp_tt_ros.evaluation.rollout import evaluate, RolloutOptions
        from dp_tt_ros.evaluation.sources import PolicySource
    except ImportError as error:
        raise TrainingError(f'periodic evaluation needs dp_tt_ros.evaluation, which is not '
                            f'available: {error}') from error

    def evaluate_policy(policy: Policy, task: str, episodes: int,
                        seed: int) -> Mapping[str, Any]:
        options = RolloutOptions(episodes=episodes, seed=seed, progress=False)
        record = evaluate(PolicySource(policy), task, options)
        summary = summarize_episodes(record.episodes, seed)
        summary.pop('per_episode', None)
        return summary

    return evaluate_policy


def _json_ready(value: Any) -> Any:
    """Convert numpy / torch scalars, tuples and paths into plain JSON types."""
    if isinstance(value, Mapping):
        return {str(key): _json_ready(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(item) for item in value]
    if isinstance(value, (np.generic, torch.Tensor)) and np.size(value) == 1:
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    return value
