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

"""Message <-> numpy conversions shared by the nodes; images always go through a buffer copy."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import Image

CHANNELS = {'rgb8': 3, 'bgr8': 3, 'rgba8': 4, 'bgra8': 4, 'mono8': 1}


def seconds_to_stamp(seconds: float) -> Time:
    nanoseconds = int(round(seconds * 1e9))
    return Time(sec=nanoseconds // 1_000_000_000, nanosec=nanoseconds % 1_000_000_000)


def stamp_to_seconds(stamp: Time) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def image_to_msg(rgb: np.ndarray, stamp: Time, frame_id: str) -> Image:
    """Wrap an ``(H, W, 3)`` uint8 RGB array as an ``rgb8`` Image without per-element work."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f'expected an (H, W, 3) uint8 RGB array, got {rgb.shape} {rgb.dtype}')
    msg = Image()
    msg.header.stamp = stamp
    msg.header.frame_id = frame_id
    msg.height, msg.width = int(rgb.shape[0]), int(rgb.shape[1])
    msg.encoding = 'rgb8'
    msg.is_bigendian = 0
    msg.step = msg.width * 3
    msg.data = np.ascontiguousarray(rgb).tobytes()
    return msg


def msg_to_rgb(msg: Image) -> np.ndarray:
    """
    Decode an Image into an ``(H, W, 3)`` uint8 RGB array, honouring a padded ``step``.

    Raises ValueError naming what is wrong for unsupported encodings, inconsistent ``step`` or a
    data size that does not match ``step * height``.
    """
    if msg.encoding not in CHANNELS:
        raise ValueError(f'unsupported image encoding {msg.encoding!r}; '
                         f'expected one of {sorted(CHANNELS)}')
    channels = CHANNELS[msg.encoding]
    if msg.height == 0 or msg.width == 0:
        raise ValueError(f'empty image {msg.width}x{msg.height}')
    if msg.step < msg.width * channels:
        raise ValueError(f'step {msg.step} is smaller than width {msg.width} x {channels} '
                         f'channels for {msg.encoding}')
    if len(msg.data) != msg.step * msg.height:
        raise ValueError(f'data has {len(msg.data)} bytes, expected step {msg.step} x height '
                         f'{msg.height} = {msg.step * msg.height}')
    rows = np.frombuffer(msg.data, dtype=np.uint8).reshape(msg.height, msg.step)
    pixels = rows[:, :msg.width * channels].reshape(msg.height, msg.width, channels)
    if msg.encoding == 'mono8':
        return np.repeat(pixels, 3, axis=2)
    if msg.encoding in ('bgr8', 'bgra8'):
        pixels = pixels[:, :, 2::-1]
    return np.ascontiguousarray(pixels[:, :, :3])
