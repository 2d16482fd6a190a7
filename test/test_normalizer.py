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

"""Min-max normaliser: [-1, 1] mapping, exact inverse, constant dimensions and bad input."""

import numpy as np
import pytest
import torch

from dp_tt_ros.policies.base import PolicySpec
from dp_tt_ros.policies.normalizer import (MinMaxField, Normalizer, fit_policy_normalizer,
                                           policy_fields)


def test_fit_maps_data_range_onto_minus_one_one_and_inverts():
    rng = np.random.default_rng(0)
    data = rng.uniform([-3.0, 10.0, 0.0], [5.0, 12.0, 1e-3], size=(200, 3))
    normalizer = Normalizer.fit({'x': data})
    x = torch.as_tensor(data, dtype=torch.float32)
    y = normalizer.normalize('x', x)
    assert torch.allclose(y.min(dim=0).values, torch.full((3,), -1.0), atol=1e-5)
    assert torch.allclose(y.max(dim=0).values, torch.full((3,), 1.0), atol=1e-5)
    assert torch.allclose(normalizer.unnormalize('x', y), x, atol=1e-5)


def test_constant_dimension_maps_to_zero_and_round_trips():
    data = np.stack([np.full(50, 0.7), np.linspace(0.0, 1.0, 50)], axis=1)
    normalizer = Normalizer.fit({'x': data})
    y = normalizer.normalize('x', torch.as_tensor(data, dtype=torch.float32))
    assert torch.allclose(y[:, 0], torch.zeros(50))
    assert torch.allclose(normalizer.unnormalize('x', y)[:, 0], torch.full((50,), 0.7))


def test_statistics_are_buffers_in_the_state_dict():
    normalizer = Normalizer.fit({'a': np.zeros((3, 2)), 'b': np.ones((4, 2, 3))})
    assert set(normalizer.state_dict()) == {'fields.a.scale', 'fields.a.offset',
                                            'fields.b.scale', 'fields.b.offset'}
    assert normalizer.shapes() == {'a': [2], 'b': [2, 3]}


def test_numpy_arrays_follow_fit_and_state_dict_loads():
    field = MinMaxField((2,))
    field.fit(np.array([[0.0, 1.0], [2.0, 5.0]]), 'x')
    scale, offset = field.arrays()
    assert np.array_equal(scale, field.scale.numpy())
    assert np.array_equal(offset, field.offset.numpy())
    assert field.arrays() is field.arrays()  # kept, not rebuilt per call
    field.fit(np.array([[0.0, 0.0], [4.0, 1.0]]), 'x')
    assert np.allclose(field.arrays()[0], [0.5, 2.0])
    other = MinMaxField((2,))
    other.arrays()
    other.load_state_dict(field.state_dict())
    assert np.array_equal(other.arrays()[0], field.scale.numpy())
    assert np.array_equal(other.arrays()[1], field.offset.numpy())


@pytest.mark.parametrize('data, message', [
    (np.zeros((5, 3)), 'expected \\(N, 2\\)'),
    (np.zeros((0, 2)), 'empty'),
    (np.array([[0.0, np.nan]]), 'NaN'),
])
def test_bad_fit_data_is_rejected_with_its_name(data, message):
    with pytest.raises(ValueError, match=message):
        MinMaxField([2]).fit(data, 'joint_pos')


def test_bad_field_names_and_unknown_fields():
    with pytest.raises(ValueError, match='without "."'):
        Normalizer({'obs.joint_pos': [2]})
    normalizer = Normalizer({'a': [1]})
    with pytest.raises(KeyError, match="no field 'b'"):
        normalizer.normalize('b', torch.zeros(1))


def test_policy_normalizer_fits_lowdim_goal_and_action_only():
    spec = PolicySpec('diffusion', {'joint_pos': [8], 'image': [16, 16, 3]}, image_keys=['image'],
                      goal_dim=3)
    assert policy_fields(spec) == {'joint_pos': [8], 'goal': [3], 'action': [8]}
    data = {'joint_pos': np.zeros((4, 8)), 'goal': np.zeros((4, 3)), 'action': np.zeros((4, 8)),
            'image': np.zeros((4, 16, 16, 3), np.uint8), 'episode_ends': np.array([4])}
    assert fit_policy_normalizer(data, spec).names == ['joint_pos', 'goal', 'action']
    del data['goal']
    with pytest.raises(KeyError, match="lacks \\['goal'\\]"):
        fit_policy_normalizer(data, spec)
    data['goal'] = np.zeros((4, 2))
    with pytest.raises(ValueError, match="'goal' has shape \\(4, 2\\); expected \\(N, 3\\)"):
        fit_policy_normalizer(data, spec)


def test_constant_action_dimension_is_pinned_for_any_output_in_range():
    actions = np.tile(np.array([[0.5, 0.04]]), (10, 1))
    actions[:, 0] = np.linspace(-1.0, 2.0, 10)
    normalizer = Normalizer.fit({'action': actions, 'joint_pos': actions.copy()})
    extremes = torch.tensor([[-1.0, -1.0], [1.0, 1.0]], dtype=torch.float64)
    decoded = normalizer.unnormalize('action', extremes).numpy()
    assert np.allclose(decoded[:, 0], [-1.0, 2.0])
    assert np.all(np.abs(decoded[:, 1] - 0.04) <= 1e-4)
    observation = normalizer.unnormalize('joint_pos', extremes).numpy()
    assert np.allclose(observation[:, 1], [-0.96, 1.04])
