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
SAC (stable-baselines3) on a task environment, exported as a pickle-free :class:`SACPolicy`.

SAC acts in bounded joint-target offsets: :class:`JointDeltaEnv` turns its 7 numbers in
[-1, 1] into ``joint_pos + max_delta * a`` on the arm joints, gripper held, through the same
:func:`absolute_targets` the exported policy uses. Offsets keep exploration local (an absolute
target drawn uniformly from the joint range would throw the arm around), and the export still
answers absolute joint targets like every other policy. Training sends the targets straight to
the env; evaluation and the robot put them through the executor, whose crossfade blends each
one-row chunk halfway into the current plan. Closed loop that only slows the approach, and the
reported time-to-goal includes it.

Our :class:`SACFeatures` (normaliser + :class:`ObservationEncoder` + goal) is SB3's features
extractor for actor and critics. Its normaliser is fitted on seeded training scenes (seeds from
1000 on, as the demos): their start configurations, goals and the IK solution at each goal, so
it spans the configurations a reach visits. Training is seeded: SB3's seed for networks, replay
sampling and exploration noise, and the environment's scene generator.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import gymnasium
import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import SAC
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.common.vec_env import DummyVecEnv
from torch import nn
from tqdm import tqdm

from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.checkpoint import save_checkpoint
from dp_tt_ros.policies.normalizer import Normalizer
from dp_tt_ros.policies.sac.configuration import REFERENCE_KEY, SACConfig
from dp_tt_ros.policies.sac.modeling import absolute_targets, normalizer_fields, SACFeatures, \
    SACPolicy
from dp_tt_ros.sim.tasks import make_env, PandaTaskEnv

LOG_FILE = 'train_log.jsonl'
TRAIN_SCENE_SEED = 1000  # training scenes start here; evaluation uses seeds 0..999
SUCCESS_WINDOW = 50  # episodes in the logged success rate


@dataclass
class SACTrainConfig:
    """
    SB3 SAC settings and our run settings; the defaults are the shipped ``sac_reach`` recipe.

    Against SB3's defaults: smaller networks and batches (a 2-core CPU), a larger learning rate
    and ``gamma = 0.95`` (episodes end at the goal or after 60 steps), a 100k-step buffer.
    """

    steps: int = 40000
    seed: int = 0
    lr: float = 1e-3
    batch_size: int = 128
    buffer_size: int = 100_000
    learning_starts: int = 1000
    gamma: float = 0.95
    tau: float = 0.005
    train_freq: int = 1
    gradient_steps: int = 1
    ent_coef: str | float = 'auto'
    critic_arch: list[int] = field(default_factory=lambda: [128, 128])
    normalizer_scenes: int = 100
    log_every: int = 1000

    def __post_init__(self) -> None:
        for name in ('steps', 'batch_size', 'buffer_size', 'train_freq', 'gradient_steps',
                     'normalizer_scenes', 'log_every'):
            if int(getattr(self, name)) < 1:
                raise ValueError(f'{name} is {getattr(self, name)}; expected >= 1')
        if self.learning_starts < 0:
            raise ValueError(f'learning_starts is {self.learning_starts}; expected >= 0')
        if not 0.0 < self.gamma <= 1.0 or not 0.0 < self.tau <= 1.0:
            raise ValueError(f'gamma {self.gamma} and tau {self.tau} must lie in (0, 1]')


@dataclass
class SACTrainResult:
    """What a finished run reports."""

    out_dir: Path
    steps: int
    episodes: int
    recent_success: float
    wall_time_s: float


def split_overrides(overrides: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Sort ``--config`` items into SACConfig (policy) and SACTrainConfig (training) settings."""
    train_keys = {f.name for f in fields(SACTrainConfig)}
    policy_keys = {'encoder', 'net_arch', 'max_delta', 'n_delta_joints', 'obs_keys'}
    unknown = sorted(set(overrides) - train_keys - policy_keys)
    if unknown:
        raise ValueError(f'unknown sac settings {unknown}; expected some of '
                         f'{sorted(train_keys | policy_keys)}')
    return ({k: v for k, v in overrides.items() if k in policy_keys},
            {k: v for k, v in overrides.items() if k in train_keys})


def build_config(task: str, overrides: Mapping[str, Any] | None = None) -> SACConfig:
    """Build the SACConfig for ``task``: joint_pos (plus object_state off reach) and the goal."""
    overrides = dict(overrides or {})
    default_keys = ['joint_pos'] if task == 'reach' else ['joint_pos', 'object_state']
    obs_keys = overrides.pop('obs_keys', default_keys)
    obs_keys = [obs_keys] if isinstance(obs_keys, str) else list(obs_keys)
    env = make_env(task)
    try:
        space = env.observation_space
        unknown = [key for key in obs_keys if key not in space.spaces or key == 'goal']
        if unknown:
            raise ValueError(f'obs_keys {unknown} are not low-dim observations of {task}; '
                             f'expected some of {sorted(set(space.spaces) - {"goal", "image"})}')
        spec = PolicySpec('sac', {key: list(space[key].shape) for key in obs_keys},
                          goal_dim=int(space['goal'].shape[0]), horizon=1, n_action_steps=1,
                          n_obs_steps=1, dt=env.control_dt)
    finally:
        env.close()
    return SACConfig.from_dict({'spec': spec, **overrides})


def fit_normalizer(task: str, config: SACConfig, scenes: int,
                   seed: int = TRAIN_SCENE_SEED) -> Normalizer:
    """Min-max statistics over ``scenes`` seeded training scenes: starts, goals, goal IK."""
    env = make_env(task, seed=seed)
    rows: dict[str, list[np.ndarray]] = {name: [] for name in normalizer_fields(config)}
    try:
        for index in range(scenes):
            obs, _ = env.reset(seed=seed + index)
            for name in rows:
                rows[name].append(np.asarray(obs[name], dtype=np.float64))
            if REFERENCE_KEY in rows:
                at_goal = env.world.inverse_kinematics(obs['goal'])
                rows[REFERENCE_KEY].append(np.append(at_goal, obs[REFERENCE_KEY][len(at_goal):]))
    finally:
        env.close()
    return Normalizer.fit({name: np.stack(values) for name, values in rows.items()}, pinned=())


class JointDeltaEnv(gymnasium.Wrapper):
    """The task env with SAC's action space: unit offsets of the arm joints, gripper held."""

    def __init__(self, env: PandaTaskEnv, config: SACConfig) -> None:
        super().__init__(env)
        self.config = config
        keys = list(config.spec.obs_shapes) + (['goal'] if config.spec.goal_dim else [])
        self.observation_space = spaces.Dict({key: env.observation_space[key] for key in keys})
        self.action_space = spaces.Box(-1.0, 1.0, (config.n_delta_joints,), np.float32)
        self._reference = np.zeros(config.spec.action_dim, np.float32)

    def _filter(self, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        self._reference = np.asarray(obs[REFERENCE_KEY], dtype=np.float32)
        return {key: obs[key] for key in self.observation_space.spaces}

    def target(self, action: np.ndarray) -> np.ndarray:
        """Absolute joint targets for a unit action, from the last observed joint position."""
        unit = torch.as_tensor(np.asarray(action, dtype=np.float32)[None])
        reference = torch.as_tensor(self._reference[None])
        return absolute_targets(reference, unit, self.config.max_delta)[0].numpy()

    def reset(self, **kwargs: Any) -> tuple[dict[str, np.ndarray], dict]:
        obs, info = self.env.reset(**kwargs)
        return self._filter(obs), info

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict]:
        obs, reward, terminated, truncated, info = self.env.step(self.target(action))
        return self._filter(obs), reward, terminated, truncated, info


class EncoderFeaturesExtractor(BaseFeaturesExtractor):
    """Our :class:`SACFeatures` as SB3's features extractor; observations have no history axis."""

    def __init__(self, observation_space: spaces.Dict, config: dict[str, Any],
                 normalizer_state: dict[str, torch.Tensor]) -> None:
        sac_config = SACConfig.from_dict(config)
        features = SACFeatures(sac_config)
        super().__init__(observation_space, features.output_dim)
        features.normalizer.load_state_dict(normalizer_state)
        self.features = features

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        history = {key: observations[key][:, None] for key in self.features.spec.obs_shapes}
        return self.features(self.features.context(history), observations.get('goal'))


def make_training_env(task: str, config: SACConfig, seed: int) -> JointDeltaEnv:
    """Seeded training env: its scenes come from the generator seeded at ``1000 + seed``."""
    return JointDeltaEnv(make_env(task, seed=TRAIN_SCENE_SEED + seed), config)


def make_model(task: str, config: SACConfig, train: SACTrainConfig, normalizer: Normalizer,
               device: str = 'cpu') -> SAC:
    """SB3 SAC with our encoder as features extractor, on a seeded :class:`JointDeltaEnv`."""
    env = DummyVecEnv([lambda: Monitor(make_training_env(task, config, train.seed))])
    policy_kwargs = {
        'features_extractor_class': EncoderFeaturesExtractor,
        'features_extractor_kwargs': {'config': config.to_dict(),
                                      'normalizer_state': normalizer.state_dict()},
        'net_arch': {'pi': list(config.net_arch), 'qf': list(train.critic_arch)},
        'activation_fn': nn.ReLU,
    }
    return SAC('MultiInputPolicy', env, learning_rate=train.lr, buffer_size=train.buffer_size,
               learning_starts=train.learning_starts, batch_size=train.batch_size, tau=train.tau,
               gamma=train.gamma, train_freq=train.train_freq,
               gradient_steps=train.gradient_steps, ent_coef=train.ent_coef,
               policy_kwargs=policy_kwargs, seed=train.seed, device=device, verbose=0)


def export_actor(model: SAC, config: SACConfig) -> SACPolicy:
    """Copy the deterministic actor (extractor, latent_pi, mu) into an eval-mode SACPolicy."""
    actor = model.actor
    policy = SACPolicy(config)
    policy.features.load_state_dict(actor.features_extractor.features.state_dict())
    policy.latent_pi.load_state_dict(actor.latent_pi.state_dict())
    policy.mu.load_state_dict(actor.mu.state_dict())
    return policy.cpu().eval()


class _ProgressLog(BaseCallback):
    """tqdm bar with the recent success rate; ``train_log.jsonl`` every ``log_every`` steps."""

    def __init__(self, total: int, log_path: Path, log_every: int, progress: bool) -> None:
        super().__init__()
        self.total, self.log_path, self.log_every = total, log_path, log_every
        self.show = progress
        self.successes: list[bool] = []
        self.returns: list[float] = []
        self.losses: dict[str, list[float]] = {'critic_loss': [], 'actor_loss': [],
                                               'ent_coef': []}
        self.started = time.perf_counter()
        self.bar: tqdm | None = None

    def _on_training_start(self) -> None:
        self.started = time.perf_counter()
        self.bar = tqdm(total=self.total, desc='train sac', unit='step', disable=not self.show)

    def recent_success(self) -> float:
        window = self.successes[-SUCCESS_WINDOW:]
        return float(np.mean(window)) if window else 0.0

    def _on_step(self) -> bool:
        for done, info in zip(self.locals['dones'], self.locals['infos']):
            if done:
                self.successes.append(bool(info['success']))
                self.returns.append(float(info['episode']['r']))
        values = self.model.logger.name_to_value
        if 'train/critic_loss' in values:
            for name in self.losses:
                self.losses[name].append(float(values[f'train/{name}']))
        self.bar.update(1)
        if self.num_timesteps % self.log_every == 0:
            self._log()
        return True

    def _log(self) -> None:
        entry = {'step': self.num_timesteps, 'episodes': len(self.successes),
                 'success_rate': self.recent_success(),
                 'return_mean': (float(np.mean(self.returns[-SUCCESS_WINDOW:]))
                                 if self.returns else None),
                 'wall_s': time.perf_counter() - self.started,
                 **{name: float(np.mean(values)) if values else None
                    for name, values in self.losses.items()}}
        for values in self.losses.values():
            values.clear()
        with self.log_path.open('a') as stream:
            stream.write(json.dumps(entry, sort_keys=True) + '\n')
        self.bar.set_postfix(success=f'{entry["success_rate"]:.2f}',
                             episodes=entry['episodes'])

    def _on_training_end(self) -> None:
        self.bar.close()


def train_sac(task: str, out_dir: str | Path, train: SACTrainConfig,
              policy_overrides: Mapping[str, Any] | None = None, device: str = 'cpu',
              progress: bool = True) -> SACTrainResult:
    """Train SAC for ``train.steps`` env steps and export the actor to ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / LOG_FILE
    log_path.unlink(missing_ok=True)
    config = build_config(task, policy_overrides)
    normalizer = fit_normalizer(task, config, train.normalizer_scenes)
    model = make_model(task, config, train, normalizer, device)
    callback = _ProgressLog(train.steps, log_path, train.log_every, progress)
    started = time.perf_counter()
    try:
        model.learn(total_timesteps=train.steps, callback=callback, log_interval=None)
    finally:
        model.get_env().close()
    wall = time.perf_counter() - started
    save_checkpoint(export_actor(model, config), out, extra={'training': {
        'algorithm': 'stable-baselines3 SAC', 'task': task, 'train_config': asdict(train),
        'policy_overrides': dict(policy_overrides or {}), 'episodes': len(callback.successes),
        'recent_success': callback.recent_success(), 'wall_s': wall,
        'scene_seed': TRAIN_SCENE_SEED + train.seed}})
    return SACTrainResult(out, train.steps, len(callback.successes), callback.recent_success(),
                          wall)
