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

"""PandaWorld: seeded scenes, position control, collision bookkeeping and the camera."""

import numpy as np
import pytest

from dp_tt_ros.robot import ARM_JOINTS, FINGER_JOINTS, PANDA_LIMITS
from dp_tt_ros.sim.world import TASKS, PandaWorld


@pytest.fixture
def reach_world():
    world = PandaWorld('reach', seed=0)
    yield world
    world.close()


def drive_to(world: PandaWorld, position: np.ndarray, steps: int = 240) -> None:
    """Command the IK solution for ``position`` and let physics run."""
    world.set_command(np.append(world.inverse_kinematics(np.asarray(position)), 0.04))
    world.step_physics(steps)


def test_unknown_task_names_the_known_ones():
    with pytest.raises(ValueError, match='pick_place'):
        PandaWorld('stack')


@pytest.mark.parametrize('task', TASKS)
def test_same_seed_gives_the_same_scene_and_other_seeds_differ(task):
    first, second = PandaWorld(task, seed=5), PandaWorld(task)
    try:
        second.reset(seed=5)
        a, b = first.observation(), second.observation()
        for key in a:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        second.reset(seed=6)
        assert not np.array_equal(a['goal'], second.observation()['goal'])
    finally:
        first.close()
        second.close()


def test_physics_is_deterministic_for_the_same_commands():
    worlds = [PandaWorld('push', seed=3) for _ in range(2)]
    try:
        for world in worlds:
            for step in range(5):
                command = world.command.copy()
                command[0] += 0.05 * (step + 1)
                world.set_command(command)
                world.step_physics(24)
        np.testing.assert_array_equal(worlds[0].joint_state()[1], worlds[1].joint_state()[1])
        np.testing.assert_array_equal(worlds[0].observation()['object_state'],
                                      worlds[1].observation()['object_state'])
    finally:
        for world in worlds:
            world.close()


def test_commands_are_validated_and_clamped(reach_world):
    with pytest.raises(ValueError, match=r'shape \(8,\)'):
        reach_world.set_command(np.zeros(7))
    with pytest.raises(ValueError, match='finite'):
        reach_world.set_command(np.full(8, np.nan))
    reach_world.set_command(PANDA_LIMITS.upper + 1.0)
    np.testing.assert_array_equal(reach_world.command, PANDA_LIMITS.upper)


def test_time_counts_fixed_physics_steps(reach_world):
    reach_world.step_physics(24)
    reach_world.step_physics(24)
    assert reach_world.time == pytest.approx(48 / 240)
    assert reach_world.status().elapsed == pytest.approx(0.2)
    with pytest.raises(ValueError, match='n >= 1'):
        reach_world.step_physics(0)
    reach_world.reset(seed=1)
    assert reach_world.time == 0.0


def test_joint_state_and_observation_layout(reach_world):
    names, positions, velocities = reach_world.joint_state()
    assert names == list(ARM_JOINTS + FINGER_JOINTS)
    assert positions.shape == velocities.shape == (9,)
    obs = reach_world.observation()
    assert sorted(obs) == ['goal', 'joint_pos', 'joint_vel', 'object_state']
    assert obs['joint_pos'].dtype == np.float32 and obs['joint_pos'].shape == (8,)
    assert obs['joint_pos'][7] == pytest.approx(positions[7:].mean())
    assert obs['object_state'].shape == (9,) and obs['goal'].shape == (3,)
    assert reach_world.observation(image_size=(24, 32))['image'].shape == (24, 32, 3)


def test_driving_into_the_table_counts_collisions(reach_world):
    assert reach_world.status().n_collisions == 0
    drive_to(reach_world, [0.5, 0.0, -0.05])
    status = reach_world.status()
    assert status.collision and status.n_collisions == 1 and status.collision_time > 0
    assert status.reward < -reach_world.scene.task_distance(reach_world.ee_position())
    drive_to(reach_world, [0.5, 0.0, 0.3])
    reach_world.step_physics(1)
    assert not reach_world.status().collision, 'collision reports contact in the last call only'
    assert reach_world.status().n_collisions == 1
    drive_to(reach_world, [0.5, 0.0, -0.05])
    assert reach_world.status().n_collisions == 2


def test_driving_through_the_pillar_is_a_collision():
    world = PandaWorld('avoid', seed=2)
    try:
        pillar = world.observation()['object_state'][:3]
        drive_to(world, [pillar[0], pillar[1], 0.12])
        assert world.status().n_collisions >= 1
        assert world.status().collision_time > 0
    finally:
        world.close()


def test_reaching_the_goal_latches_success_and_time_to_goal(reach_world):
    drive_to(reach_world, reach_world.scene.goal)
    status = reach_world.status()
    assert status.success and 0 < status.time_to_goal <= reach_world.time
    first = status.time_to_goal
    drive_to(reach_world, [0.4, 0.0, 0.45])
    assert reach_world.status().success and reach_world.status().time_to_goal == first


def _project(world: PandaWorld, point: np.ndarray, width: int, height: int) -> np.ndarray:
    """Pixel (u, v) of a world point through the camera's view matrix and pinhole intrinsics."""
    info = world.camera_info(width, height)
    camera = np.array(info['world_to_camera']) @ np.append(point, 1.0)
    depth = -camera[2]
    return np.array([info['cx'] + info['fx'] * camera[0] / depth,
                     info['cy'] - info['fy'] * camera[1] / depth])


def test_render_shows_the_red_goal_where_the_intrinsics_project_it(reach_world):
    width, height = 320, 240
    image = reach_world.render(width, height)
    assert image.shape == (height, width, 3) and image.dtype == np.uint8
    red = (image[..., 0] > 180) & (image[..., 1] < 60) & (image[..., 2] < 60)
    assert red.sum() > 10, 'the goal marker must be visibly red'
    rows, cols = np.nonzero(red)
    centroid = np.array([cols.mean(), rows.mean()])
    expected = _project(reach_world, reach_world.scene.goal, width, height)
    assert np.linalg.norm(centroid - expected) < 4.0
    info = reach_world.camera_info(width, height)
    assert info['fx'] == info['fy'] and info['cx'] == width / 2 and info['cy'] == height / 2


def test_render_rejects_bad_sizes(reach_world):
    with pytest.raises(ValueError, match='positive integers'):
        reach_world.render(0, 10)


def test_close_twice_is_harmless():
    world = PandaWorld('reach')
    world.close()
    world.close()


def test_inverse_kinematics_is_accurate_from_any_start(reach_world):
    rng = np.random.default_rng(0)
    checker = PandaWorld('reach', seed=0)
    try:
        for _ in range(10):
            target = rng.uniform([0.3, -0.3, 0.02], [0.7, 0.3, 0.45])
            yaw = rng.uniform(-1.5, 1.5)
            joints = reach_world.inverse_kinematics(target, yaw)
            checker.set_joint_positions(np.append(joints, 0.04))
            assert np.linalg.norm(checker.ee_position() - target) < 5e-4
            assert abs(checker.ee_yaw() - yaw) < 0.01
            reach_world.set_joint_positions(np.append(joints, 0.04))
    finally:
        checker.close()
