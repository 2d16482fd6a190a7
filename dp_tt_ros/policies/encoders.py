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
Observation encoders shared by Diffusion Policy and BC, so baselines differ only in the head.

Images go through a ResNet-18 trained from scratch (no downloaded weights) whose BatchNorm layers
are replaced by GroupNorm, because EMA weight averaging breaks BatchNorm running statistics;
spatial-softmax keypoints keep *where* features are rather than average them away. Training uses a
random crop as augmentation, evaluation the centre crop of the same size. ``image_backbone_stages``
keeps the first residual stages only: the last stage holds 8.4 M of ResNet-18's 11.2 M convolution
weights, and at 84-pixel crops its 3x3 output map leaves spatial softmax little to locate.
Low-dim observations (already normalised to [-1, 1]) pass through as they are or through a small
MLP. Passed through, the whole encoding is an affine map, and :func:`encode_history` computes it
in numpy: the perception node encodes one history every 100 ms, and torch's dispatch, cold after
each pause, then costs milliseconds for a few dozen values.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

import numpy as np
import torch
import torchvision
from torch import nn

from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.normalizer import Normalizer

LOWDIM_ENCODERS = ('identity', 'mlp')


@dataclass
class EncoderConfig:
    """Encoder sizes; stored in ``config.json`` next to the policy's other settings."""

    crop_shape: list[int] | None = None
    image_backbone_stages: int = 4
    num_keypoints: int = 32
    image_feature_dim: int = 64
    lowdim_encoder: str = 'identity'
    lowdim_hidden_dims: list[int] = field(default_factory=lambda: [128])
    lowdim_feature_dim: int = 64

    def __post_init__(self) -> None:
        if self.lowdim_encoder not in LOWDIM_ENCODERS:
            raise ValueError(f'lowdim_encoder {self.lowdim_encoder!r} is unknown; expected one of '
                             f'{LOWDIM_ENCODERS}')
        if self.crop_shape is not None and (len(self.crop_shape) != 2
                                            or min(self.crop_shape) < 8):
            raise ValueError(f'crop_shape {self.crop_shape} is invalid; expected [height, width] '
                             'of at least 8 pixels each')
        if not 1 <= self.image_backbone_stages <= 4:
            raise ValueError(f'image_backbone_stages is {self.image_backbone_stages}; expected 1 '
                             '.. 4 residual stages of ResNet-18')
        for name in ('num_keypoints', 'image_feature_dim', 'lowdim_feature_dim'):
            if getattr(self, name) < 1:
                raise ValueError(f'{name} is {getattr(self, name)}; expected a positive integer')

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> 'EncoderConfig':
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f'unknown encoder settings {unknown}; expected some of '
                             f'{sorted(known)}')
        return cls(**dict(data))


class SpatialSoftmax(nn.Module):
    """Per-channel softmax over the feature map -> expected (x, y) keypoint of each channel."""

    def __init__(self, in_channels: int, height: int, width: int, num_keypoints: int) -> None:
        super().__init__()
        self.keypoint_conv = nn.Conv2d(in_channels, num_keypoints, kernel_size=1)
        grid_y, grid_x = torch.meshgrid(torch.linspace(-1.0, 1.0, height),
                                        torch.linspace(-1.0, 1.0, width), indexing='ij')
        self.register_buffer('grid', torch.stack([grid_x.reshape(-1), grid_y.reshape(-1)], dim=1),
                             persistent=False)
        self.num_keypoints = num_keypoints

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        logits = self.keypoint_conv(features).flatten(2)
        attention = torch.softmax(logits, dim=-1)
        keypoints = attention @ self.grid
        return keypoints.flatten(1)


def replace_batchnorm_with_groupnorm(module: nn.Module) -> nn.Module:
    """Swap every BatchNorm2d for GroupNorm(channels // 16, channels) in place."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            channels = child.num_features
            setattr(module, name, nn.GroupNorm(max(1, channels // 16), channels))
        else:
            replace_batchnorm_with_groupnorm(child)
    return module


class ImageEncoder(nn.Module):
    """One camera: uint8 RGB ``(N, h, w, 3)`` -> ``(N, feature_dim)`` via ResNet-18 keypoints."""

    def __init__(self, image_shape: tuple[int, int, int], config: EncoderConfig) -> None:
        super().__init__()
        height, width, channels = image_shape
        if channels != 3:
            raise ValueError(f'image shape {image_shape} is not RGB; expected (h, w, 3)')
        crop = config.crop_shape or [height, width]
        if crop[0] > height or crop[1] > width:
            raise ValueError(f'crop_shape {crop} is larger than the image {height}x{width}')
        self.image_size = (height, width)
        self.crop_size = (int(crop[0]), int(crop[1]))
        resnet = torchvision.models.resnet18(weights=None)
        replace_batchnorm_with_groupnorm(resnet)
        stem = [resnet.conv1, resnet.bn1, resnet.relu, resnet.maxpool]
        stages = [resnet.layer1, resnet.layer2, resnet.layer3, resnet.layer4]
        self.backbone = nn.Sequential(*stem, *stages[:config.image_backbone_stages])
        with torch.no_grad():
            feature_map = self.backbone(torch.zeros(1, 3, *self.crop_size))
        _, feature_channels, feature_h, feature_w = feature_map.shape
        self.pool = SpatialSoftmax(feature_channels, feature_h, feature_w, config.num_keypoints)
        self.project = nn.Linear(2 * config.num_keypoints, config.image_feature_dim)
        self.feature_dim = config.image_feature_dim

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """Random crop per image in train mode, the centre crop in eval mode."""
        height, width = self.image_size
        crop_h, crop_w = self.crop_size
        if (crop_h, crop_w) == (height, width):
            return images
        if not self.training:
            top, left = (height - crop_h) // 2, (width - crop_w) // 2
            return images[:, :, top:top + crop_h, left:left + crop_w]
        count = images.shape[0]
        tops = torch.randint(0, height - crop_h + 1, (count,), device=images.device)
        lefts = torch.randint(0, width - crop_w + 1, (count,), device=images.device)
        rows = tops[:, None] + torch.arange(crop_h, device=images.device)
        cols = lefts[:, None] + torch.arange(crop_w, device=images.device)
        batch = torch.arange(count, device=images.device)[:, None, None]
        cropped = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]
        return cropped.permute(0, 3, 1, 2)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.shape[1:] != (*self.image_size, 3):
            raise ValueError(f'images have dtype {images.dtype} and shape '
                             f'{tuple(images.shape)}; expected uint8 (N, {self.image_size[0]}, '
                             f'{self.image_size[1]}, 3)')
        pixels = images.permute(0, 3, 1, 2).float() / 255.0
        return self.project(self.pool(self.backbone(self.crop(pixels))))


class ObservationEncoder(nn.Module):
    """
    All observation keys of one step -> one feature vector; applied to every history step.

    Low-dim keys must already be normalised; images are raw uint8. Keys are visited in the order
    of ``spec.obs_shapes`` so the feature layout is fixed by the spec.
    """

    def __init__(self, spec: PolicySpec, config: EncoderConfig) -> None:
        super().__init__()
        self.spec = spec
        self.image_keys = list(spec.image_keys)
        self.lowdim_keys = list(spec.lowdim_keys)
        self.cameras = nn.ModuleDict({
            key: ImageEncoder(tuple(spec.obs_shapes[key]), config) for key in self.image_keys})
        lowdim_width = sum(_flat_size(spec.obs_shapes[key]) for key in self.lowdim_keys)
        self.lowdim_mlp: nn.Module | None = None
        if config.lowdim_encoder == 'mlp' and lowdim_width > 0:
            layers: list[nn.Module] = []
            width = lowdim_width
            for hidden in config.lowdim_hidden_dims:
                layers += [nn.Linear(width, hidden), nn.Mish()]
                width = hidden
            layers.append(nn.Linear(width, config.lowdim_feature_dim))
            self.lowdim_mlp = nn.Sequential(*layers)
            lowdim_width = config.lowdim_feature_dim
        self.output_dim = lowdim_width + sum(camera.feature_dim
                                             for camera in self.cameras.values())
        if self.output_dim == 0:
            raise ValueError('the policy spec has no observation keys; expected at least one')

    @property
    def is_affine(self) -> bool:
        """Whether the features are just the normalised low-dim values (no camera, no MLP)."""
        return not self.cameras and self.lowdim_mlp is None

    def forward(self, obs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Encode ``key -> (B, To, *shape)`` into ``(B, To, output_dim)``."""
        missing = [key for key in self.spec.obs_shapes if key not in obs]
        if missing:
            raise KeyError(f'observation lacks keys {missing}; expected {list(obs)} to contain '
                           f'{list(self.spec.obs_shapes)}')
        first = obs[next(iter(self.spec.obs_shapes))]
        batch, steps = first.shape[:2]
        parts: list[torch.Tensor] = []
        if self.lowdim_keys:
            lowdim = torch.cat([obs[key].reshape(batch, steps, -1) for key in self.lowdim_keys],
                               dim=-1)
            parts.append(lowdim if self.lowdim_mlp is None else self.lowdim_mlp(lowdim))
        for key, camera in self.cameras.items():
            images = obs[key]
            features = camera(images.reshape(batch * steps, *images.shape[2:]))
            parts.append(features.reshape(batch, steps, -1))
        return torch.cat(parts, dim=-1)


def _flat_size(shape: list[int]) -> int:
    size = 1
    for dim in shape:
        size *= int(dim)
    return size


def prepare_observations(obs: Mapping[str, Any], spec: PolicySpec, normalizer: Normalizer,
                         device: torch.device, prefix: str = '') -> dict[str, torch.Tensor]:
    """
    Check an observation history and normalise it into encoder input tensors.

    ``obs[prefix + key]`` is ``(B, To', *shape)`` (numpy or torch) with ``To' >= n_obs_steps``;
    the newest ``n_obs_steps`` are kept. Low-dim keys become normalised float32, image keys stay
    uint8.
    """
    prepared: dict[str, torch.Tensor] = {}
    for key in spec.obs_shapes:
        name = prefix + key
        value = torch.as_tensor(_checked_history(obs, spec, key, prefix), device=device)
        value = value[:, value.shape[1] - spec.n_obs_steps:]
        if key in spec.image_keys:
            if value.dtype != torch.uint8:
                raise ValueError(f'image {name!r} has dtype {value.dtype}; expected uint8 RGB')
            prepared[key] = value
        else:
            prepared[key] = normalizer.normalize(key, value.float())
    return prepared


def _checked_history(obs: Mapping[str, Any], spec: PolicySpec, key: str,
                     prefix: str = '') -> Any:
    """Return ``obs[prefix + key]`` after checking it is ``(B, To' >= n_obs_steps, *shape)``."""
    name, shape = prefix + key, spec.obs_shapes[key]
    if name not in obs:
        raise KeyError(f'observation lacks {name!r}; expected keys '
                       f'{[prefix + k for k in spec.obs_shapes]}')
    value = obs[name]
    value_shape = tuple(np.shape(value))
    if len(value_shape) != len(shape) + 2 or list(value_shape[2:]) != list(shape) \
            or value_shape[1] < spec.n_obs_steps:
        raise ValueError(f'observation {name!r} has shape {value_shape}; expected '
                         f'(B, {spec.n_obs_steps}, {", ".join(map(str, shape))})')
    return value


def encode_history(obs: Mapping[str, Any], spec: PolicySpec, normalizer: Normalizer,
                   encoder: ObservationEncoder, device: torch.device) -> np.ndarray:
    """Encode a raw history ``key -> (B, To', *shape)`` into ``(B, To, output_dim)`` float32."""
    if not encoder.is_affine:
        with torch.inference_mode():
            prepared = prepare_observations(obs, spec, normalizer, device)
            return encoder(prepared).float().cpu().numpy()
    parts = []
    for key in encoder.lowdim_keys:
        value = np.asarray(_checked_history(obs, spec, key), dtype=np.float32)
        value = value[:, value.shape[1] - spec.n_obs_steps:]
        scale, offset = normalizer.field(key).arrays()
        parts.append((value * scale + offset).reshape(*value.shape[:2], -1))
    return np.concatenate(parts, axis=-1)
