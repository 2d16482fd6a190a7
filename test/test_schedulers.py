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

"""DDPM / DDIM maths: schedules, exact posterior, deterministic DDIM, prediction-type agreement."""

import numpy as np
import pytest
import torch

from dp_tt_ros.policies.diffusion.schedulers import (BETA_SCHEDULES, MAX_BETA, NoiseScheduleConfig,
                                                     NoiseScheduler, make_betas)


def scheduler(**overrides) -> NoiseScheduler:
    return NoiseScheduler(NoiseScheduleConfig(**overrides))


@pytest.mark.parametrize('schedule', BETA_SCHEDULES)
@pytest.mark.parametrize('steps', [10, 100])
def test_alpha_bar_decreases_strictly_inside_zero_one(schedule, steps):
    betas = make_betas(schedule, steps)
    assert betas.shape == (steps,) and np.all(betas > 0) and np.all(betas <= MAX_BETA)
    alpha_bar = scheduler(beta_schedule=schedule, num_train_timesteps=steps).alpha_bar.numpy()
    assert np.all(alpha_bar > 0) and np.all(alpha_bar < 1)
    assert np.all(np.diff(alpha_bar) < 0)


def test_schedules_differ_and_cosine_caps_the_last_beta():
    linear, cosine, squared = (make_betas(name, 100) for name in BETA_SCHEDULES)
    assert linear[0] == pytest.approx(1e-4) and linear[-1] == pytest.approx(0.02)
    assert squared[-1] == pytest.approx(MAX_BETA)
    assert not np.allclose(cosine, squared)
    with pytest.raises(ValueError, match="'sigmoid' is unknown"):
        make_betas('sigmoid', 10)


def test_ddpm_step_with_true_noise_is_the_exact_gaussian_posterior_mean():
    sched = scheduler()
    x0 = torch.rand(4, 16, 8, dtype=torch.float64) * 2 - 1
    eps = torch.randn_like(x0)
    for t in (99, 50, 1):
        xt = sched.add_noise(x0, eps, torch.full((4,), t))
        mean = sched.step(xt, eps, t, t - 1, sampler='ddpm', noise=torch.zeros_like(x0))
        # Independent derivation: product of q(x_s | x0) and q(x_t | x_s), precision-weighted.
        ab_s = float(sched.alpha_bar[t - 1])
        a_t = 1.0 - float(sched.betas[t])
        var = 1.0 / (1.0 / (1.0 - ab_s) + a_t / (1.0 - a_t))
        expected = var * (np.sqrt(ab_s) * x0 / (1.0 - ab_s) + np.sqrt(a_t) * xt / (1.0 - a_t))
        assert torch.allclose(mean, expected, atol=1e-9)
        sigma = sched.step_coefficients(t, t - 1, 'ddpm', 0.0)['sigma']
        assert sigma == pytest.approx(np.sqrt(var))
    last = sched.step(sched.add_noise(x0, eps, torch.zeros(4)), eps, 0, -1, sampler='ddpm')
    assert torch.allclose(last, x0, atol=1e-9)


def test_ddpm_step_variance_matches_the_posterior_variance():
    sched = scheduler()
    x0 = torch.zeros(20000, 1, dtype=torch.float64)
    xt = torch.full_like(x0, 0.3)
    eps = (xt - float(sched.alpha_bar[40]) ** 0.5 * x0) / (1 - float(sched.alpha_bar[40])) ** 0.5
    torch.manual_seed(0)
    draws = sched.step(xt, eps, 40, 39, sampler='ddpm')
    sigma = sched.step_coefficients(40, 39, 'ddpm', 0.0)['sigma']
    assert draws.std().item() == pytest.approx(sigma, rel=0.03)


@pytest.mark.parametrize('num_steps', [1, 5, 10, 100])
def test_ddim_eta_zero_with_true_noise_is_deterministic_and_recovers_x0(num_steps):
    sched = scheduler()
    x0 = torch.rand(3, 16, 8, dtype=torch.float64) * 2 - 1
    eps = torch.randn_like(x0)

    def run() -> torch.Tensor:
        timesteps = sched.inference_timesteps(num_steps)
        x = sched.add_noise(x0, eps, torch.full((3,), timesteps[0]))
        for t, s in zip(timesteps, timesteps[1:] + [-1]):
            ab = float(sched.alpha_bar[t])
            true_eps = (x - ab ** 0.5 * x0) / (1 - ab) ** 0.5
            x = sched.step(x, true_eps, t, s, sampler='ddim', eta=0.0)
        return x

    first, second = run(), run()
    assert torch.equal(first, second)
    assert torch.allclose(first, x0, atol=1e-8)


@pytest.mark.parametrize('sampler, eta', [('ddpm', 0.0), ('ddim', 0.0), ('ddim', 0.7)])
def test_sample_and_epsilon_prediction_agree_on_consistent_outputs(sampler, eta):
    eps_sched = scheduler(prediction_type='epsilon')
    x0_sched = scheduler(prediction_type='sample')
    x0 = torch.rand(2, 16, 8, dtype=torch.float64) * 2 - 1
    eps = torch.randn_like(x0)
    noise = torch.randn_like(x0)
    xt = eps_sched.add_noise(x0, eps, torch.full((2,), 70))
    from_eps = eps_sched.step(xt, eps, 70, 60, sampler=sampler, eta=eta, noise=noise)
    from_x0 = x0_sched.step(xt, x0, 70, 60, sampler=sampler, eta=eta, noise=noise)
    assert torch.allclose(from_eps, from_x0, atol=1e-9)


def test_ddim_with_eta_one_has_the_ddpm_variance():
    sched = scheduler()
    for t, s in [(99, 89), (50, 40), (9, -1)]:
        ddpm = sched.step_coefficients(t, s, 'ddpm', 0.0)['sigma']
        ddim = sched.step_coefficients(t, s, 'ddim', 1.0)['sigma']
        assert ddim == pytest.approx(ddpm)


def test_clipping_bounds_the_predicted_clean_sample():
    sched = scheduler(clip_sample=True)
    xt = torch.full((1, 4, 2), 5.0)
    alpha_bar = sched.alpha_bar_at(torch.tensor(10))
    x0, eps = sched.split_prediction(xt, torch.zeros_like(xt), alpha_bar)
    assert x0.max().item() == pytest.approx(1.0)
    ab = float(sched.alpha_bar[10])
    assert torch.allclose(xt, ab ** 0.5 * x0 + (1 - ab) ** 0.5 * eps)


def test_inference_timesteps_stride_and_cover_all_steps_at_k_train():
    sched = scheduler(num_train_timesteps=100)
    assert sched.inference_timesteps(100) == list(range(99, -1, -1))
    assert sched.inference_timesteps(10) == list(range(99, -1, -10))
    strided = sched.inference_timesteps(7)
    assert strided[0] == 99 and len(strided) == 7 and all(np.diff(strided) < 0)
    for bad in (0, 101):
        with pytest.raises(ValueError, match=f'num_inference_steps is {bad}; expected 1 .. 100'):
            sched.inference_timesteps(bad)


def test_bad_settings_are_named():
    with pytest.raises(ValueError, match="prediction_type 'v' is unknown"):
        NoiseScheduleConfig(prediction_type='v')
    with pytest.raises(ValueError, match="sampler 'euler' is unknown"):
        scheduler().step(torch.zeros(1), torch.zeros(1), 5, 4, sampler='euler')
    with pytest.raises(ValueError, match='reverse step 4 -> 5 is invalid'):
        scheduler().step_coefficients(4, 5, 'ddim', 0.0)
    with pytest.raises(ValueError, match='unknown noise schedule settings'):
        NoiseScheduleConfig.from_dict({'num_steps': 3})
