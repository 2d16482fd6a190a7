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
Diffusion Policy (Chi et al. 2023): denoise an action chunk conditioned on observations + goal.

Training: DDPM noising of the normalised action chunk at a uniformly drawn step, the denoiser
predicts the noise (or the clean chunk), MSE. The goal is replaced by a learned "no goal" token
with probability ``goal_dropout`` so the same network also models the goal-free distribution, which
classifier-free guidance needs: ``eps = eps_uncond + w (eps_cond - eps_uncond)``.

Inference (``act``) runs the fast path by default for the U-Net: FiLM vectors for every step are
computed once per chunk (:meth:`ConditionalUnet1D.film_table`), the conditional and unconditional
passes of guidance share one batched call, and the per-step body is a channels-last matmul
version of the U-Net (:class:`PackedUnet`) traced into a frozen TorchScript graph, cached per batch
size and rebuilt whenever the weights change. The ``backend`` inference option selects an earlier
stage of this pipeline instead (the benchmark measures each); ``precision='bfloat16'`` stores the
packed convolution weights and runs their matmuls in bfloat16 (half the weight bytes per step,
bfloat16 matmul units where the CPU has them); element-wise work stays float32.
"""

from __future__ import annotations

import warnings
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dp_tt_ros.policies.base import Policy, PolicySpec
from dp_tt_ros.policies.diffusion.configuration import (PRECISIONS, DiffusionConfig,
                                                        InferenceOptions)
from dp_tt_ros.policies.diffusion.schedulers import NoiseScheduler
from dp_tt_ros.policies.diffusion.transformer_denoiser import TransformerDenoiser
from dp_tt_ros.policies.diffusion.unet1d import ConditionalUnet1D, PackedUnet
from dp_tt_ros.policies.encoders import (encode_history, ObservationEncoder,
                                         prepare_observations)
from dp_tt_ros.policies.normalizer import fit_policy_normalizer, Normalizer, spec_normalizer


class GoalEmbedding(nn.Module):
    """Normalised goal -> token; a learned null token stands for "no goal" (CFG)."""

    def __init__(self, goal_dim: int, embed_dim: int) -> None:
        super().__init__()
        self.project = nn.Linear(goal_dim, embed_dim)
        self.null = nn.Parameter(torch.zeros(embed_dim))

    def forward(self, goal: torch.Tensor | None, batch: int,
                keep: torch.Tensor | None = None) -> torch.Tensor:
        """Embed ``goal (B, goal_dim)``; rows with ``keep == False`` (all, if no goal) get null."""
        null = self.null.expand(batch, -1)
        if goal is None:
            return null
        token = self.project(goal)
        return token if keep is None else torch.where(keep[:, None], token, null)


class DiffusionPolicy(Policy):
    """Observation history (+ goal) -> action chunk by iterative denoising."""

    def __init__(self, config: DiffusionConfig, normalizer: Normalizer | None = None) -> None:
        super().__init__()
        self.config = config
        self.spec = config.spec
        spec = config.spec
        self.normalizer = spec_normalizer(spec, normalizer)
        self.encoder = ObservationEncoder(spec, config.encoder)
        self.goal_embedding = (GoalEmbedding(spec.goal_dim, config.goal_embed_dim)
                               if spec.goal_dim else None)
        goal_width = config.goal_embed_dim if spec.goal_dim else 0
        self.denoiser: nn.Module
        if config.denoiser == 'unet':
            cond_dim = spec.n_obs_steps * self.encoder.output_dim + goal_width
            self.denoiser = ConditionalUnet1D(spec.action_dim, cond_dim, config.unet)
        else:
            self.denoiser = TransformerDenoiser(spec.action_dim, spec.horizon,
                                                self.encoder.output_dim, spec.n_obs_steps,
                                                goal_width, config.transformer)
        self.scheduler = NoiseScheduler(config.noise)
        self.inference = InferenceOptions(**vars(config.inference))
        self._traced: dict[Any, tuple[Any, Any]] = {}

    # ----- construction -------------------------------------------------------------------
    @classmethod
    def build(cls, store_or_stats: Mapping[str, Any], spec: PolicySpec,
              **config: Any) -> 'DiffusionPolicy':
        """Create an untrained policy whose normaliser is fitted on raw data."""
        parsed = DiffusionConfig.from_dict({'spec': spec, **config})
        return cls(parsed, fit_policy_normalizer(store_or_stats, spec))

    def config_dict(self) -> dict[str, Any]:
        """Return the architecture plus the current inference options (tuned K/sampler persist)."""
        return {**self.config.to_dict(), 'inference': dict(vars(self.inference))}

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> 'DiffusionPolicy':
        return cls(DiffusionConfig.from_dict(config))

    def __getstate__(self) -> dict[str, Any]:
        """Drop cached traces when copied (EMA copies): they hold the old weights."""
        return {**self.__dict__, '_traced': {}}

    # ----- interface ----------------------------------------------------------------------
    @property
    def context_dim(self) -> int:
        return self.encoder.output_dim

    def set_inference_options(self, **options: Any) -> None:
        """Set any of the :class:`InferenceOptions` fields by name, validated together."""
        unknown = sorted(set(options) - set(vars(self.inference)))
        if unknown:
            raise ValueError(f'DiffusionPolicy has no inference options {unknown}; expected some '
                             f'of {sorted(vars(self.inference))}')
        updated = InferenceOptions(**{**vars(self.inference), **options})
        updated.validate(self.scheduler.num_train_timesteps)
        self.inference = updated

    def encode_observations(self, obs: Mapping[str, np.ndarray]) -> np.ndarray:
        return encode_history(obs, self.spec, self.normalizer, self.encoder, self.device)

    def act(self, context: np.ndarray, goal: np.ndarray | None = None) -> np.ndarray:
        with torch.inference_mode():
            context_t, goal_t = self._check_inputs(context, goal)
            actions = self.sample(context_t, goal_t)
            return self.normalizer.unnormalize('action', actions).cpu().numpy()

    def compute_loss(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        device = self.device
        obs = prepare_observations(batch, self.spec, self.normalizer, device, prefix='obs.')
        context = self.encoder(obs)
        action = self.normalizer.normalize('action', batch['action'].to(device).float())
        if action.shape[1:] != (self.horizon, self.action_dim):
            raise ValueError(f'batch action has shape {tuple(action.shape)}; expected '
                             f'(B, {self.horizon}, {self.action_dim})')
        count = action.shape[0]
        goal_token = None
        if self.goal_embedding is not None:
            goal = self.normalizer.normalize('goal', batch['goal'].to(device).float())
            keep = torch.rand(count, device=device) >= self.config.goal_dropout
            goal_token = self.goal_embedding(goal, count, keep if self.training else None)
        noise = torch.randn_like(action)
        timesteps = torch.randint(0, self.scheduler.num_train_timesteps, (count,), device=device)
        noisy = self.scheduler.add_noise(action, noise, timesteps)
        prediction = self._denoise_reference(noisy, timesteps, context, goal_token)
        return F.mse_loss(prediction, self.scheduler.training_target(action, noise))

    # ----- sampling -----------------------------------------------------------------------
    def sample(self, context: torch.Tensor, goal: torch.Tensor | None,
               noise: torch.Tensor | None = None,
               step_noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        """
        Draw normalised chunks ``(B, H, d_a)`` for a normalised-goal batch.

        ``noise`` is the initial sample and ``step_noise`` the per-step draws of the stochastic
        samplers; both default to fresh standard normal draws (given only to compare paths).
        """
        if context.device.type == 'cuda' and not self.training:
            autocast = torch.autocast('cuda', dtype=PRECISIONS[self.inference.precision],
                                      enabled=self.inference.precision != 'float32',
                                      cache_enabled=False)  # casts must live in the graph
            with autocast:
                if self.inference.backend == 'traced':
                    return self._graphed_sampler(context, goal)(context, goal, noise, step_noise)
                return self._sample_loop(context, goal, noise, step_noise).float()
        return self._sample_loop(context, goal, noise, step_noise)

    def _sample_loop(self, context: torch.Tensor, goal: torch.Tensor | None,
                     noise: torch.Tensor | None,
                     step_noise: list[torch.Tensor] | None) -> torch.Tensor:
        options = self.inference
        count = context.shape[0]
        timesteps = self.scheduler.inference_timesteps(options.num_inference_steps)
        prev = timesteps[1:] + [-1]
        coefficients = [self.scheduler.step_coefficients(t, s, options.sampler, options.eta)
                        for t, s in zip(timesteps, prev)]
        sample = noise if noise is not None else torch.randn(
            count, self.horizon, self.action_dim, device=context.device)
        goal_tokens = self._guidance_tokens(goal, count)
        fast = options.backend != 'reference' and isinstance(self.denoiser, ConditionalUnet1D)
        step_fn = (self._fast_step_fn(context, goal_tokens, timesteps) if fast
                   else self._reference_step_fn(context, goal_tokens, timesteps))
        for index, coefficient in enumerate(coefficients):
            output = step_fn(sample, index)
            draw = step_noise[index] if step_noise is not None else None
            sample = self.scheduler.apply_step(sample, output, coefficient, draw)
        return sample

    def _guidance_tokens(self, goal: torch.Tensor | None,
                         count: int) -> list[torch.Tensor | None]:
        """Goal tokens of the passes guidance needs: [cond], [uncond] or [uncond, cond]."""
        if self.goal_embedding is None:
            return [None]
        unconditional = self.goal_embedding(None, count)
        scale = self.inference.guidance_scale
        if goal is None or scale == 0.0:
            return [unconditional]
        conditional = self.goal_embedding(goal, count)
        return [conditional] if scale == 1.0 else [unconditional, conditional]

    def _combine(self, outputs: torch.Tensor, passes: int) -> torch.Tensor:
        if passes == 1:
            return outputs
        unconditional, conditional = outputs.chunk(2)
        return unconditional + self.inference.guidance_scale * (conditional - unconditional)

    def _denoise_reference(self, sample: torch.Tensor, timesteps: torch.Tensor,
                           context: torch.Tensor, goal_token: torch.Tensor | None) -> torch.Tensor:
        if isinstance(self.denoiser, ConditionalUnet1D):
            cond = context.flatten(1)
            if goal_token is not None:
                cond = torch.cat([cond, goal_token], dim=-1)
            return self.denoiser(sample, timesteps, cond)
        return self.denoiser(sample, timesteps, context, goal_token)

    def _reference_step_fn(self, context: torch.Tensor, goal_tokens: list[torch.Tensor | None],
                           timesteps: list[int]):
        passes = len(goal_tokens)
        contexts = context.repeat(passes, 1, 1)
        tokens = None if goal_tokens[0] is None else torch.cat(goal_tokens)

        def step(sample: torch.Tensor, index: int) -> torch.Tensor:
            steps = torch.full((contexts.shape[0],), timesteps[index], device=sample.device)
            outputs = self._denoise_reference(sample.repeat(passes, 1, 1), steps, contexts,
                                              tokens)
            return self._combine(outputs, passes)
        return step

    def _fast_step_fn(self, context: torch.Tensor, goal_tokens: list[torch.Tensor | None],
                      timesteps: list[int]):
        passes = len(goal_tokens)
        cond = context.flatten(1).repeat(passes, 1)
        if goal_tokens[0] is not None:
            cond = torch.cat([cond, torch.cat(goal_tokens)], dim=-1)
        unet: ConditionalUnet1D = self.denoiser
        film = unet.film_table(torch.tensor(timesteps), cond)
        core = self._step_network(cond.shape[0], film[0])

        def step(sample: torch.Tensor, index: int) -> torch.Tensor:
            batch = sample if passes == 1 else sample.repeat(passes, 1, 1)
            return self._combine(core(batch, film[index]), passes)
        return step

    def _step_network(self, rows: int, film: torch.Tensor) -> nn.Module:
        """
        Return the U-Net body the chosen backend runs each step; the eager body when training.

        Packed networks copy the weights, so they are cached per (backend, rows, precision) and
        keyed on the weights' version counters: training steps or ``load_state_dict`` after a
        call rebuild them instead of reusing stale weights.
        """
        unet: ConditionalUnet1D = self.denoiser
        backend = self.inference.backend
        if (film.device.type == 'cuda' and backend == 'traced' and self.inference.compile
                and not self.training):
            return self._compiled_core()
        if self.training or backend == 'precomputed' or film.device.type != 'cpu':
            return unet.core
        dtype = PRECISIONS[self.inference.precision]
        key = (backend, rows, dtype)
        version = tuple(param._version for param in unet.core.parameters())
        if key not in self._traced or self._traced[key][0] != version:
            packed = PackedUnet(unet.core, dtype).eval()
            if backend == 'traced':
                example = torch.zeros(rows, self.horizon, self.action_dim)
                with warnings.catch_warnings():
                    warnings.simplefilter('ignore', FutureWarning)
                    packed = torch.jit.freeze(
                        torch.jit.trace(packed, (example, film), check_trace=False))
            self._traced[key] = (version, packed)
        return self._traced[key][1]

    def _compiled_core(self) -> nn.Module:
        """
        Return the packed U-Net compiled by TorchInductor, for the CUDA graph.

        A graph removes launch overhead but still runs one kernel per op; at batch 1 the GPU
        time is those few-microsecond kernels back to back. The packed form turns each
        convolution into an ``addmm`` whose im2col gather fuses with the GroupNorm, FiLM and Mish
        around it, where cuDNN would add kernels of its own. Float32 storage: autocast picks the
        precision. Rebuilt when the weights change, like the CPU packed networks.
        """
        core = self.denoiser.core
        version = tuple((param.data_ptr(), param._version) for param in core.parameters())
        cached = self._traced.get('compiled_core')
        if cached is None or cached[0] != version:
            cached = (version, torch.compile(PackedUnet(core).eval(), dynamic=False))
            self._traced['compiled_core'] = cached
        return cached[1]

    def _graphed_sampler(self, context: torch.Tensor,
                         goal: torch.Tensor | None) -> 'GraphedSampler':
        """Return the cached CUDA graph of the sampling loop for these shapes and options."""
        options = self.inference
        key = ('cuda_graph', tuple(context.shape), None if goal is None else tuple(goal.shape),
               context.device, options.num_inference_steps, options.sampler, options.eta,
               options.guidance_scale, options.precision, options.compile)
        version = tuple((param.data_ptr(), param._version) for param in self.parameters())
        if key not in self._traced or self._traced[key][0] != version:
            self._traced[key] = (version, GraphedSampler(self, context, goal))
        return self._traced[key][1]

    def train(self, mode: bool = True) -> 'DiffusionPolicy':
        self._traced.clear()
        return super().train(mode)

    def _check_inputs(self, context: np.ndarray,
                      goal: np.ndarray | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        context_t = torch.as_tensor(np.asarray(context, dtype=np.float32), device=self.device)
        expected = (self.n_obs_steps, self.context_dim)
        if context_t.dim() != 3 or tuple(context_t.shape[1:]) != expected:
            raise ValueError(f'context has shape {tuple(context_t.shape)}; expected (B, '
                             f'{expected[0]}, {expected[1]})')
        if goal is None or self.goal_embedding is None:
            return context_t, None
        goal_t = torch.as_tensor(np.asarray(goal, dtype=np.float32), device=self.device)
        if tuple(goal_t.shape) != (context_t.shape[0], self.spec.goal_dim):
            raise ValueError(f'goal has shape {tuple(goal_t.shape)}; expected '
                             f'({context_t.shape[0]}, {self.spec.goal_dim})')
        return context_t, self.normalizer.normalize('goal', goal_t)


class GraphedSampler:
    """
    The whole denoising loop for one input shape, captured once as a CUDA graph.

    At batch 1 a GPU chunk is launch-bound: K steps of a few dozen small kernels each, every one
    dispatched from Python. Replaying the graph launches them all at once. Inputs and the noise
    draws live in static buffers that each call refills; the output buffer is copied out.
    """

    def __init__(self, policy: DiffusionPolicy, context: torch.Tensor,
                 goal: torch.Tensor | None) -> None:
        steps = policy.inference.num_inference_steps
        self.context = context.clone()
        self.goal = None if goal is None else goal.clone()
        self.noise = torch.randn(steps + 1, context.shape[0], policy.horizon, policy.action_dim,
                                 device=context.device)
        self.graph = torch.cuda.CUDAGraph()

        def loop() -> torch.Tensor:
            return policy._sample_loop(self.context, self.goal, self.noise[0],
                                       list(self.noise[1:])).float()

        with torch.inference_mode():
            side = torch.cuda.Stream(context.device)
            side.wait_stream(torch.cuda.current_stream(context.device))
            with torch.cuda.stream(side):
                for _ in range(2):  # lazy initialisation, kernel choice and caches: not captured
                    loop()
            torch.cuda.current_stream(context.device).wait_stream(side)
            with torch.cuda.graph(self.graph):
                self.output = loop()
        # The graph reads the U-Net's cached step-only FiLM part in place: keep that tensor alive
        # even after the cache moves on to another step schedule.
        self.film_cache = getattr(policy.denoiser, '_film_cache', None)

    def __call__(self, context: torch.Tensor, goal: torch.Tensor | None,
                 noise: torch.Tensor | None = None,
                 step_noise: list[torch.Tensor] | None = None) -> torch.Tensor:
        with torch.inference_mode():
            self.context.copy_(context)
            if self.goal is not None:
                self.goal.copy_(goal)
            if noise is None and step_noise is None:
                self.noise.normal_()
            else:
                if noise is None:
                    self.noise[0].normal_()
                else:
                    self.noise[0].copy_(noise)
                if step_noise is None:
                    self.noise[1:].normal_()
                for index, draw in enumerate(step_noise or []):
                    self.noise[index + 1].copy_(draw)
            self.graph.replay()
            return self.output.clone()
