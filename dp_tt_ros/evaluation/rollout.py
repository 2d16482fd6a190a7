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
In-process closed-loop evaluation: batched envs in lockstep, the executor's time alignment.

Per control tick ``t_k = k * dt`` and env:

1. the observation is added to per-key stamped buffers and the policy history is sampled from
   them with :func:`dp_tt_ros.data.history.align_history`, the same code the perception node uses;
2. when an inference is due (every ``replan_every`` ticks, by default ``n_action_steps``, with
   one request in flight at a time, as a single inference worker would), one batched call
   produces a chunk per env, anchored at
   ``t_k``; with injected latency ``L`` it reaches the plan at ``t_k + L``, where
   :class:`dp_tt_ros.control.plan.TimedPlan` drops the rows that are already due;
3. the env action is the plan's target for the end of the tick, ``t_k + dt`` (the env's
   position controller moves there during the tick, as the ROS bridge does with the executor's
   interpolated stream), passed through the executor's :class:`SafetyFilter`.

Episode ``i`` of an evaluation uses seed ``seed + i`` whatever the batch size, and torch's RNG is
seeded per batch, so repeated evaluations with the same arguments give identical results.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from tqdm import tqdm

from dp_tt_ros.control.plan import TimedPlan
from dp_tt_ros.control.safety import SafetyFilter
from dp_tt_ros.data.history import StampedBuffer, align_history, seconds_to_ns
from dp_tt_ros.evaluation.metrics import EpisodeResult
from dp_tt_ros.evaluation.sources import ChunkSource
from dp_tt_ros.robot import PANDA_LIMITS
from dp_tt_ros.sim.tasks import make_env

GIF_SIZE = (160, 120)  # width, height of recorded rollout frames
PROBE_CALLS = 5  # batch-1 inference calls timed after the episodes (latency a robot sees)
MAX_REASONS = 5  # distinct chunk rejection reasons kept for the report


@dataclass
class RolloutOptions:
    """
    How chunks are executed.

    ``n_action_steps`` (h) defaults to the chunk source's. ``replan_every`` is the number of
    ticks between inference requests and defaults to h, diffusion_policy's evaluation protocol;
    1 mirrors the ROS graph, whose perception node sends one context per ``dt``. The plan
    settings (``exec_latency``,
    ``blend``, ``crossfade_steps``, ``ensemble_decay``) mean what the executor node's parameters
    of the same names mean, and ``runs.executor_plan_settings`` reads them from its YAML.
    """

    episodes: int
    seed: int = 0
    batch: int = 1
    latency: float = 0.0
    n_action_steps: int | None = None
    replan_every: int | None = None
    exec_latency: float = 0.0
    blend: str = 'replace'
    crossfade_steps: int = 2
    ensemble_decay: float = 0.1
    max_steps: int | None = None
    record_dir: Path | None = None
    progress: bool = True

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        if self.episodes < 1:
            raise ValueError(f'episodes must be >= 1, got {self.episodes}')
        if self.batch < 1:
            raise ValueError(f'batch must be >= 1, got {self.batch}')
        if not np.isfinite(self.latency) or self.latency < 0:
            raise ValueError(f'latency must be a finite number of seconds >= 0, '
                             f'got {self.latency}')
        if self.n_action_steps is not None and self.n_action_steps < 1:
            raise ValueError(f'n_action_steps must be >= 1, got {self.n_action_steps}')
        if self.replan_every is not None and self.replan_every < 1:
            raise ValueError(f'replan_every must be >= 1 ticks, got {self.replan_every}')
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f'max_steps must be >= 1, got {self.max_steps}')


@dataclass
class RolloutRecord:
    """Everything an evaluation produced: episodes plus what plots and timings need."""

    episodes: list[EpisodeResult] = field(default_factory=list)
    ee_paths: list[np.ndarray] = field(default_factory=list)  # per episode (T, 3)
    inference_ms: list[float] = field(default_factory=list)  # per batched call
    probe_ms: list[float] = field(default_factory=list)  # per batch-1 call
    batch_sizes: list[int] = field(default_factory=list)  # envs in each batched call
    chunks_rejected: int = 0
    rejection_reasons: list[str] = field(default_factory=list)  # the first few, unique
    gifs: list[str] = field(default_factory=list)


@dataclass
class _EnvState:
    """Per-env bookkeeping inside one lockstep batch."""

    env: Any
    seed: int
    obs: dict[str, np.ndarray]
    plan: TimedPlan
    buffers: dict[str, StampedBuffer]
    last_command: np.ndarray
    pending: list[tuple[float, float, np.ndarray]] = field(default_factory=list)
    next_request_tick: int = 0
    times: list[float] = field(default_factory=list)
    commands: list[np.ndarray] = field(default_factory=list)
    ee_path: list[np.ndarray] = field(default_factory=list)
    frames: list[np.ndarray] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    done: bool = False


def _ee_position(env: Any) -> np.ndarray:
    return np.asarray(env.world.ee_position(), dtype=float)


class Evaluator:
    """Run seeded episodes of one task for one chunk source; reuses its envs across batches."""

    def __init__(self, source: ChunkSource, task: str, options: RolloutOptions) -> None:
        options.validate()
        self.source = source
        self.task = task
        self.options = options
        self.n_action_steps = options.n_action_steps or source.n_action_steps
        if self.n_action_steps > source.horizon:
            raise ValueError(f'n_action_steps {self.n_action_steps} exceeds the chunk horizon '
                             f'{source.horizon}')
        self.replan_every = options.replan_every or self.n_action_steps
        self.dt = source.dt
        self.dt_ns = seconds_to_ns(self.dt)
        self.safety = SafetyFilter(PANDA_LIMITS, self.dt)
        self._probe_input: tuple[dict[str, np.ndarray], np.ndarray | None, int] | None = None
        n_envs = min(options.batch, options.episodes)
        self.envs = [make_env(task, seed=options.seed, image_size=source.image_size,
                              max_steps=options.max_steps) for _ in range(n_envs)]

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def run(self) -> RolloutRecord:
        """Evaluate ``options.episodes`` episodes in batches of ``options.batch``."""
        record = RolloutRecord()
        seeds = [self.options.seed + index for index in range(self.options.episodes)]
        with tqdm(total=len(seeds), desc=f'eval {self.task}', unit='episode',
                  disable=not self.options.progress) as progress:
            for start in range(0, len(seeds), len(self.envs)):
                batch_seeds = seeds[start:start + len(self.envs)]
                self._run_batch(batch_seeds, record)
                progress.update(len(batch_seeds))
                successes = sum(episode.success for episode in record.episodes)
                progress.set_postfix(success=f'{successes}/{len(record.episodes)}')
        self._probe_latency(record)
        return record

    def _probe_latency(self, record: RolloutRecord) -> None:
        """Time batch-1 calls on a real history: batched calls hide per-chunk latency."""
        if self._probe_input is None:
            return
        obs, goal, env_index = self._probe_input
        for _ in range(PROBE_CALLS):
            started = time.perf_counter()
            self.source.predict(obs, goal, [env_index])
            record.probe_ms.append(1e3 * (time.perf_counter() - started))

    def _reset(self, env: Any, seed: int) -> _EnvState:
        obs, info = env.reset(seed=seed)
        plan = TimedPlan(PANDA_LIMITS, n_action_steps=self.n_action_steps,
                         exec_latency=self.options.exec_latency, blend=self.options.blend,
                         crossfade_steps=self.options.crossfade_steps,
                         ensemble_decay=self.options.ensemble_decay)
        position = np.asarray(obs['joint_pos'], dtype=float)
        plan.hold(position, 0.0)
        span_ns = self.source.n_obs_steps * self.dt_ns
        buffers = {key: StampedBuffer(span_ns) for key in self.source.obs_keys}
        return _EnvState(env=env, seed=seed, obs=obs, plan=plan, buffers=buffers,
                         last_command=position.copy(), info=dict(info))

    def _run_batch(self, seeds: Sequence[int], record: RolloutRecord) -> None:
        torch.manual_seed(seeds[0])
        states = [self._reset(env, seed) for env, seed in zip(self.envs, seeds)]
        self.source.start_episodes([state.env for state in states], list(seeds))
        tick = 0
        while not all(state.done for state in states):
            now = tick * self.dt
            active = [index for index, state in enumerate(states) if not state.done]
            for index in active:
                state = states[index]
                for key in self.source.obs_keys:
                    state.buffers[key].add(seconds_to_ns(now), np.asarray(state.obs[key]))
                self._deliver(state, now, record)
            self._request_chunks(states, active, tick, now, record)
            for index in active:
                self._step(states[index], now, record)
            tick += 1
        for state in states:
            record.episodes.append(self._episode_result(state))
            record.ee_paths.append(np.asarray(state.ee_path))
            if state.frames:
                record.gifs.append(self._write_gif(state))

    def _request_chunks(self, states: list[_EnvState], active: list[int], tick: int,
                        now: float, record: RolloutRecord) -> None:
        due = [index for index in active
               if tick >= states[index].next_request_tick and not states[index].pending]
        if not due:
            return
        histories = [align_history(states[index].buffers, self.source.n_obs_steps, self.dt_ns)
                     for index in due]
        obs = {key: np.stack([history.observations[key] for history in histories])
               for key in self.source.obs_keys}
        goal = (np.stack([np.asarray(states[index].obs['goal'], dtype=np.float32)
                          for index in due]) if self.source.uses_goal else None)
        self._probe_input = ({key: values[:1] for key, values in obs.items()},
                             None if goal is None else goal[:1], due[0])
        started = time.perf_counter()
        chunks = self.source.predict(obs, goal, due)
        record.inference_ms.append(1e3 * (time.perf_counter() - started))
        record.batch_sizes.append(len(due))
        for index, chunk in zip(due, chunks):
            state = states[index]
            state.pending.append((now + self.options.latency, now, np.asarray(chunk)))
            state.next_request_tick = tick + self.replan_every

    def _deliver(self, state: _EnvState, now: float, record: RolloutRecord) -> None:
        """Hand the plan every chunk that has arrived by ``now``, at its arrival time."""
        arrived = [item for item in state.pending if item[0] <= now + 1e-9]
        state.pending = [item for item in state.pending if item[0] > now + 1e-9]
        for arrival, stamp, chunk in arrived:
            verdict = state.plan.add_chunk(stamp, self.dt, chunk, arrival)
            if not verdict.accepted:
                record.chunks_rejected += 1
                if (len(record.rejection_reasons) < MAX_REASONS
                        and verdict.reason not in record.rejection_reasons):
                    record.rejection_reasons.append(verdict.reason)

    def _step(self, state: _EnvState, now: float, record: RolloutRecord) -> None:
        self._deliver(state, now, record)  # chunks requested this tick without latency
        target = state.plan.target(now + self.dt)
        command = self.safety.filter(target, state.last_command)
        state.last_command = command
        state.times.append(now)
        state.commands.append(command)
        state.ee_path.append(_ee_position(state.env))
        if self.options.record_dir is not None:
            state.frames.append(state.env.world.render(*GIF_SIZE))
        state.obs, _, terminated, truncated, info = state.env.step(command)
        state.info = dict(info)
        state.done = bool(terminated or truncated)
        if state.done and self.options.record_dir is not None:
            state.frames.append(state.env.world.render(*GIF_SIZE))

    def _episode_result(self, state: _EnvState) -> EpisodeResult:
        info = state.info
        time_to_goal = info.get('time_to_goal')
        return EpisodeResult(
            seed=state.seed, success=bool(info['success']),
            time_to_goal=None if time_to_goal is None else float(time_to_goal),
            n_collisions=int(info['n_collisions']),
            collision_time=float(info['collision_time']),
            duration=float(info['elapsed']),
            command_times=np.asarray(state.times), commands=np.asarray(state.commands))

    def _write_gif(self, state: _EnvState) -> str:
        from PIL import Image
        directory = Path(self.options.record_dir)
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f'{self.task}_seed{state.seed}.gif'
        images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)) for frame in state.frames]
        images[0].save(path, save_all=True, append_images=images[1:],
                       duration=int(round(1000 * self.dt)), loop=0)
        state.frames.clear()
        return str(path)


def evaluate(source: ChunkSource, task: str, options: RolloutOptions) -> RolloutRecord:
    """Run ``options.episodes`` seeded episodes of ``task`` in-process and return the record."""
    evaluator = Evaluator(source, task, options)
    try:
        return evaluator.run()
    finally:
        evaluator.close()
