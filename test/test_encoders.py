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

"""Encoders: ResNet-18 with GroupNorm, spatial softmax, crops, multi-camera and low-dim layout."""

import numpy as np
import pytest
import torch
from torch import nn

from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.encoders import (encode_history, EncoderConfig, ImageEncoder,
                                         ObservationEncoder, SpatialSoftmax,
                                         prepare_observations)
from dp_tt_ros.policies.normalizer import Normalizer

torch.set_num_threads(1)


def test_spatial_softmax_finds_the_peak_of_each_channel():
    pool = SpatialSoftmax(in_channels=2, height=5, width=7, num_keypoints=2)
    with torch.no_grad():
        pool.keypoint_conv.weight.copy_(torch.eye(2)[:, :, None, None])
        pool.keypoint_conv.bias.zero_()
    features = torch.zeros(1, 2, 5, 7)
    features[0, 0, 0, 6] = 50.0   # top right
    features[0, 1, 4, 0] = 50.0   # bottom left
    keypoints = pool(features).reshape(2, 2)
    assert torch.allclose(keypoints, torch.tensor([[1.0, -1.0], [-1.0, 1.0]]), atol=1e-3)


def test_image_encoder_uses_groupnorm_and_crops_randomly_only_in_training():
    torch.manual_seed(0)
    encoder = ImageEncoder((40, 48, 3), EncoderConfig(crop_shape=[32, 40], image_feature_dim=16))
    norms = [m for m in encoder.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    assert norms and all(isinstance(m, nn.GroupNorm) for m in norms)
    assert all(m.num_groups == m.num_channels // 16 for m in norms)
    images = torch.randint(0, 256, (2, 40, 48, 3), dtype=torch.uint8)
    encoder.eval()
    first, second = encoder(images), encoder(images)
    assert first.shape == (2, 16) and torch.equal(first, second)
    pixels = images.permute(0, 3, 1, 2)
    assert torch.equal(encoder.crop(pixels), pixels[:, :, 4:36, 4:44])
    encoder.train()
    crops = {tuple(encoder.crop(pixels)[0, 0, 0, :3].tolist()) for _ in range(10)}
    assert len(crops) > 1


def test_image_encoder_keeps_the_requested_resnet_stages():
    sizes = {}
    for stages in (2, 3, 4):
        encoder = ImageEncoder((64, 64, 3), EncoderConfig(image_backbone_stages=stages))
        sizes[stages] = sum(p.numel() for p in encoder.backbone.parameters())
        assert encoder.pool.keypoint_conv.in_channels == [64, 128, 256, 512][stages - 1]
        assert encoder(torch.zeros(1, 64, 64, 3, dtype=torch.uint8)).shape == (1, 64)
    # layer4 holds most of ResNet-18's convolution weights.
    assert sizes[4] > 11e6 and sizes[3] < 3e6 and sizes[2] < 0.8e6
    with pytest.raises(ValueError, match='image_backbone_stages is 5'):
        EncoderConfig(image_backbone_stages=5)


def test_image_encoder_rejects_wrong_images():
    encoder = ImageEncoder((32, 32, 3), EncoderConfig(image_feature_dim=8)).eval()
    with pytest.raises(ValueError, match='expected uint8 \\(N, 32, 32, 3\\)'):
        encoder(torch.zeros(1, 32, 32, 3))
    with pytest.raises(ValueError, match='larger than the image'):
        ImageEncoder((32, 32, 3), EncoderConfig(crop_shape=[40, 30]))


def make_spec() -> PolicySpec:
    return PolicySpec('diffusion', {'joint_pos': [8], 'front': [32, 32, 3], 'object_state': [4],
                                    'wrist': [24, 24, 3]},
                      image_keys=['front', 'wrist'], n_obs_steps=2)


def test_observation_encoder_concatenates_lowdim_and_one_encoder_per_camera():
    spec = make_spec()
    encoder = ObservationEncoder(spec, EncoderConfig(image_feature_dim=16)).eval()
    assert set(encoder.cameras) == {'front', 'wrist'}
    assert encoder.output_dim == 8 + 4 + 2 * 16
    obs = {'joint_pos': torch.randn(3, 2, 8), 'object_state': torch.randn(3, 2, 4),
           'front': torch.randint(0, 256, (3, 2, 32, 32, 3), dtype=torch.uint8),
           'wrist': torch.randint(0, 256, (3, 2, 24, 24, 3), dtype=torch.uint8)}
    context = encoder(obs)
    assert context.shape == (3, 2, encoder.output_dim)
    assert torch.equal(context[..., :8], obs['joint_pos'])
    assert torch.equal(context[..., 8:12], obs['object_state'])


def test_lowdim_mlp_encoder_width():
    spec = PolicySpec('bc', {'joint_pos': [8], 'goal': [3]})
    config = EncoderConfig(lowdim_encoder='mlp', lowdim_hidden_dims=[32], lowdim_feature_dim=20)
    encoder = ObservationEncoder(spec, config)
    assert encoder.output_dim == 20
    assert encoder({'joint_pos': torch.zeros(1, 2, 8), 'goal': torch.zeros(1, 2, 3)}).shape == (
        1, 2, 20)
    with pytest.raises(ValueError, match="lowdim_encoder 'cnn' is unknown"):
        EncoderConfig(lowdim_encoder='cnn')


def test_prepare_observations_normalises_keeps_newest_steps_and_checks_input():
    spec = PolicySpec('diffusion', {'joint_pos': [2], 'front': [8, 8, 3]}, image_keys=['front'],
                      n_obs_steps=2)
    normalizer = Normalizer.fit({'joint_pos': np.array([[0.0, 0.0], [2.0, 4.0]])})
    obs = {'obs.joint_pos': np.array([[[9.0, 9.0], [0.0, 0.0], [2.0, 4.0]]], np.float32),
           'obs.front': np.zeros((1, 3, 8, 8, 3), np.uint8)}
    prepared = prepare_observations(obs, spec, normalizer, torch.device('cpu'), prefix='obs.')
    assert torch.allclose(prepared['joint_pos'], torch.tensor([[[-1.0, -1.0], [1.0, 1.0]]]))
    assert prepared['front'].shape == (1, 2, 8, 8, 3) and prepared['front'].dtype == torch.uint8
    with pytest.raises(KeyError, match="lacks 'obs.front'"):
        prepare_observations({'obs.joint_pos': obs['obs.joint_pos']}, spec, normalizer,
                             torch.device('cpu'), prefix='obs.')
    with pytest.raises(ValueError, match="'joint_pos' has shape \\(1, 1, 2\\); expected "
                                         "\\(B, 2, 2\\)"):
        prepare_observations({'joint_pos': np.zeros((1, 1, 2)), 'front': obs['obs.front']},
                             spec, normalizer, torch.device('cpu'))
    with pytest.raises(ValueError, match='expected uint8'):
        prepare_observations({'joint_pos': obs['obs.joint_pos'],
                              'front': np.zeros((1, 2, 8, 8, 3), np.float32)},
                             spec, normalizer, torch.device('cpu'))


@pytest.mark.parametrize('lowdim_encoder', ['identity', 'mlp'])
def test_encode_history_matches_the_torch_encoder_bit_for_bit(lowdim_encoder):
    spec = PolicySpec('diffusion', {'joint_pos': [8], 'object_state': [3]}, n_obs_steps=2)
    rng = np.random.default_rng(0)
    normalizer = Normalizer.fit({'joint_pos': rng.normal(size=(50, 8)),
                                 'object_state': rng.normal(size=(50, 3))})
    encoder = ObservationEncoder(spec, EncoderConfig(lowdim_encoder=lowdim_encoder)).eval()
    assert encoder.is_affine == (lowdim_encoder == 'identity')
    obs = {'joint_pos': rng.normal(size=(4, 3, 8)).astype(np.float32),
           'object_state': rng.normal(size=(4, 3, 3))}
    cpu = torch.device('cpu')
    with torch.inference_mode():
        expected = encoder(prepare_observations(obs, spec, normalizer, cpu)).numpy()
    encoded = encode_history(obs, spec, normalizer, encoder, cpu)
    assert encoded.dtype == np.float32 and encoded.shape == (4, 2, encoder.output_dim)
    np.testing.assert_array_equal(encoded, expected)
    with pytest.raises(ValueError, match="'object_state' has shape \\(4, 1, 3\\); expected"):
        encode_history({**obs, 'object_state': obs['object_state'][:, :1]}, spec, normalizer,
                       encoder, cpu)
    with pytest.raises(KeyError, match="lacks 'object_state'"):
        encode_history({'joint_pos': obs['joint_pos']}, spec, normalizer, encoder, cpu)
