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

"""DiffusionPolicy on CUDA: the graphed sampling loop equals eager sampling. Needs a GPU."""

import json

import numpy as np
import pytest
import torch

from dp_tt_ros.cli import main
from test_diffusion_modeling import make_policy, observation

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs a CUDA device')
TINY_TRANSFORMER = {'n_layer': 1, 'n_head': 2, 'n_emb': 16}


@pytest.fixture(autouse=True)
def exact_float32():
    """Compare paths in full float32: cuDNN convolutions default to TF32."""
    previous = torch.backends.cudnn.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32 = previous


def cuda_inputs(policy, size: int = 2, steps: int = 5):
    context = torch.as_tensor(policy.encode_observations(observation(policy, size)),
                              device='cuda')
    goal = torch.rand(size, 3, device='cuda')
    noise = torch.randn(size, 8, 8, device='cuda')
    step_noise = [torch.randn(size, 8, 8, device='cuda') for _ in range(steps)]
    return context, goal, noise, step_noise


@pytest.mark.parametrize('denoiser', ['unet', 'transformer'])
@pytest.mark.parametrize('sampler, eta, guidance', [('ddim', 0.0, 1.0), ('ddpm', 0.0, 2.5)])
def test_cuda_graph_equals_eager_and_cpu(denoiser, sampler, eta, guidance):
    policy = make_policy(denoiser=denoiser, transformer=TINY_TRANSFORMER)
    cpu_policy = make_policy(denoiser=denoiser, transformer=TINY_TRANSFORMER)
    policy.to('cuda')
    context, goal, noise, step_noise = cuda_inputs(policy)
    results = {}
    with torch.inference_mode():
        for backend, fused in (('reference', False), ('precomputed', False), ('traced', False),
                               ('traced', True)):
            policy.set_inference_options(backend=backend, sampler=sampler, eta=eta,
                                         guidance_scale=guidance, num_inference_steps=5,
                                         compile=fused)
            name = f'{backend}_compiled' if fused else backend
            results[name] = policy.sample(context, goal, noise, step_noise)
            # A second call replays the captured graph with the new inputs copied in.
            again = policy.sample(context, goal, noise, step_noise)
            assert torch.equal(again, results[name]), name
        cpu_policy.set_inference_options(sampler=sampler, eta=eta, guidance_scale=guidance,
                                         num_inference_steps=5)
        on_cpu = cpu_policy.sample(context.cpu(), goal.cpu(), noise.cpu(),
                                   [draw.cpu() for draw in step_noise])
    for backend, result in results.items():
        assert torch.allclose(result, results['reference'], atol=1e-4), backend
    assert torch.allclose(results['traced'].cpu(), on_cpu, atol=1e-4)


def test_graph_replays_draw_fresh_noise_and_follow_weight_changes():
    policy = make_policy().to('cuda')
    context = policy.encode_observations(observation(policy))
    goal = np.full((2, 3), 0.5, np.float32)
    first, second = policy.act(context, goal), policy.act(context, goal)
    assert first.shape == (2, 8, 8) and not np.array_equal(first, second)
    other = make_policy()
    with torch.no_grad():
        for param in other.denoiser.parameters():
            param.add_(0.05 * torch.randn_like(param))
    policy.load_state_dict(other.state_dict())
    other.to('cuda')
    context_t, goal_t, noise, step_noise = cuda_inputs(policy, steps=10)
    with torch.inference_mode():
        assert torch.allclose(policy.sample(context_t, goal_t, noise, step_noise),
                              other.sample(context_t, goal_t, noise, step_noise), atol=1e-5)


def test_bfloat16_autocast_stays_close_to_float32():
    policy = make_policy().to('cuda')
    context, goal, noise, step_noise = cuda_inputs(policy, steps=10)
    with torch.inference_mode():
        exact = policy.sample(context, goal, noise, step_noise)
        policy.set_inference_options(precision='bfloat16')
        approximate = policy.sample(context, goal, noise, step_noise)
    assert approximate.dtype == torch.float32
    assert torch.allclose(approximate, exact, atol=0.05)


def test_bench_inference_on_cuda_reports_every_graph_variant(tmp_path, capsys):
    out = tmp_path / 'bench.json'
    assert main(['bench', 'inference', '--device', 'cuda', '--repeats', '3', '--warmup', '1',
                 '--json', str(out)]) == 0
    result = json.loads(out.read_text())
    assert result['config']['device'] == 'cuda'
    assert set(result['variants']) == {'reference', 'precomputed', 'cuda_graph', 'traced',
                                       'traced_bf16'}
    assert result['default_path'] == 'traced' and result['ms_per_chunk_median'] > 0
