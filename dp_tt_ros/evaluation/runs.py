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
One evaluation run: settings in, JSON-ready report out; shared by ``eval`` and ``eval --sweep``.

A run names a checkpoint (or the scripted expert), a task, inference options (K, sampler,
guidance, h) and an injected latency, and is executed in-process or through the ROS graph.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dp_tt_ros.bench.common import summarize
from dp_tt_ros.evaluation.metrics import EpisodeResult, summarize_episodes

EXPERT = 'expert'
INFERENCE_OPTION_NAMES = ('num_inference_steps', 'sampler', 'guidance_scale', 'tracked_targets')
PLAN_SETTING_NAMES = ('exec_latency', 'blend', 'crossfade_steps', 'ensemble_decay')


def executor_plan_settings() -> dict[str, Any]:
    """Read the executor node's plan parameters, so in-process runs execute chunks alike."""
    import yaml

    from dp_tt_ros import paths
    path = paths.config_dir() / 'executor.yaml'
    parameters = yaml.safe_load(path.read_text())['executor']['ros__parameters']
    missing = [name for name in PLAN_SETTING_NAMES if name not in parameters]
    if missing:
        raise ValueError(f'{path} lacks executor parameters {missing}')
    return {name: parameters[name] for name in PLAN_SETTING_NAMES}


@dataclass
class EvalSettings:
    """Everything that defines one evaluation run; ``checkpoint='expert'`` is the expert."""

    checkpoint: str
    task: str
    episodes: int
    label: str = ''
    seed: int = 0
    batch: int = 1
    latency: float = 0.0
    num_inference_steps: int | None = None
    sampler: str | None = None
    guidance_scale: float | None = None
    tracked_targets: bool | None = None
    n_action_steps: int | None = None
    replan_every: int | None = None
    blend: str | None = None
    max_steps: int | None = None
    ros: bool = False
    record_dir: str | None = None
    tags: dict[str, Any] = field(default_factory=dict)

    def inference_options(self) -> dict[str, Any]:
        """Return the policy inference options that were set explicitly."""
        return {name: getattr(self, name) for name in INFERENCE_OPTION_NAMES
                if getattr(self, name) is not None}

    def display_label(self) -> str:
        """Return the label, or one built from the checkpoint name and options."""
        if self.label:
            return self.label
        parts = [Path(self.checkpoint).name, self.task]
        parts += [f'{name}={value}' for name, value in self.inference_options().items()]
        if self.latency:
            parts.append(f'latency={self.latency:g}s')
        return ' '.join(parts)


@dataclass
class RunOutcome:
    """A finished run: the JSON report plus the raw trajectories for plots."""

    report: dict[str, Any]
    episodes: list[EpisodeResult]
    ee_paths: list[np.ndarray]


def load_source(settings: EvalSettings) -> tuple[Any, str]:
    """Build the chunk source for ``settings``; return it with its policy type."""
    from dp_tt_ros.evaluation.sources import ExpertSource, PolicySource
    from dp_tt_ros.policies.checkpoint import load_policy
    if settings.checkpoint == EXPERT:
        if settings.inference_options():
            raise ValueError(f'the scripted expert has no inference options '
                             f'{sorted(settings.inference_options())}')
        return ExpertSource(settings.task), EXPERT
    policy = load_policy(settings.checkpoint)
    policy.set_inference_options(**settings.inference_options())
    return PolicySource(policy), policy.spec.policy_type


RunnerResult = tuple[dict[str, Any], list[EpisodeResult], list[np.ndarray]]


def _run_in_process(settings: EvalSettings) -> RunnerResult:
    import torch

    from dp_tt_ros.evaluation.rollout import RolloutOptions, evaluate
    source, policy_type = load_source(settings)
    plan_settings = executor_plan_settings()
    if settings.blend is not None:
        plan_settings['blend'] = settings.blend
    elif policy_type == EXPERT:
        plan_settings['blend'] = 'replace'  # the expert replans every tick: pass it through
    options = RolloutOptions(
        episodes=settings.episodes, seed=settings.seed, batch=settings.batch,
        latency=settings.latency, n_action_steps=settings.n_action_steps,
        replan_every=settings.replan_every, max_steps=settings.max_steps,
        record_dir=Path(settings.record_dir) if settings.record_dir else None, **plan_settings)
    with torch.inference_mode():
        record = evaluate(source, settings.task, options)
    extra: dict[str, Any] = {
        'policy_type': policy_type,
        'n_action_steps': options.n_action_steps or source.n_action_steps,
        'replan_every': (options.replan_every or options.n_action_steps
                         or source.n_action_steps),
        'plan': plan_settings,
        'chunks_rejected': record.chunks_rejected,
        'rejection_reasons': record.rejection_reasons,
        'gifs': record.gifs,
        'inference_ms_per_call': summarize(record.inference_ms),
        'inference_probe_ms': summarize(record.probe_ms),
        'inference_batch_mean': float(np.mean(record.batch_sizes)),
    }
    return extra, record.episodes, record.ee_paths


def _run_through_ros(settings: EvalSettings) -> RunnerResult:
    from tqdm import tqdm

    from dp_tt_ros.policies.checkpoint import read_config
    from dp_tt_ros.ros.graph import GraphOptions
    from dp_tt_ros.ros.runner import run_episodes
    from dp_tt_ros.sim.tasks import CONTROL_DT
    if settings.checkpoint == EXPERT:
        raise ValueError('the ROS graph runs a checkpoint; the scripted expert is in-process only')
    unsupported = {name: value for name, value in (
        ('latency', settings.latency), ('record_dir', settings.record_dir),
        ('n_action_steps', settings.n_action_steps), ('blend', settings.blend),
        ('replan_every', settings.replan_every),
        *((name, True) for name in settings.inference_options())) if value}
    if unsupported:
        raise ValueError(f'--ros runs the nodes with their parameter files; these in-process '
                         f'options do not apply: {sorted(unsupported)}')
    policy_type = read_config(settings.checkpoint)['policy_type']
    graph = GraphOptions(policy_type=policy_type, checkpoint=str(settings.checkpoint),
                         task=settings.task, seed=settings.seed)
    timeout = None if settings.max_steps is None else settings.max_steps * CONTROL_DT
    with tqdm(total=settings.episodes, desc=f'eval {settings.task} (ROS)',
              unit='episode') as progress:
        episodes = run_episodes(graph, settings.episodes, settings.seed,
                                timeout_per_episode=timeout,
                                on_episode=lambda index, result: progress.update(1),
                                on_wait=progress.set_postfix_str)
    return {'policy_type': policy_type}, list(episodes), []


def run_evaluation(settings: EvalSettings) -> RunOutcome:
    """Execute one run and build its report (summary with CIs, settings, timings)."""
    started = time.perf_counter()
    runner = _run_through_ros if settings.ros else _run_in_process
    extra, episodes, ee_paths = runner(settings)
    report = {
        'label': settings.display_label(),
        'mode': 'ros' if settings.ros else 'in-process',
        'settings': asdict(settings),
        'summary': summarize_episodes(episodes, seed=settings.seed),
        'wall_s': time.perf_counter() - started,
        **extra,
    }
    return RunOutcome(report, episodes, ee_paths)
