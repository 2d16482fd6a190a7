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

"""ament_python package definition; also installable with plain pip into a virtualenv."""

from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = 'dp_tt_ros'
NODE_NAMES = ('pybullet_bridge', 'perception', 'policy', 'executor', 'recorder')


def tree_data_files(root: str) -> list[tuple[str, list[str]]]:
    """Install every file under ``root`` into share/<package>/<root>, keeping sub-folders."""
    entries = []
    for folder, _dirs, files in os.walk(root):
        if files:
            entries.append((os.path.join('share', PACKAGE, folder),
                            [os.path.join(folder, name) for name in sorted(files)]))
    return entries


setup(
    name=PACKAGE,
    version='0.1.0',
    packages=find_packages(exclude=['test']),
    data_files=[
        ('share/ament_index/resource_index/packages', ['resource/' + PACKAGE]),
        ('share/' + PACKAGE, ['package.xml']),
        ('share/' + PACKAGE + '/launch', glob('launch/*.launch.py')),
        ('share/' + PACKAGE + '/config', glob('config/*.yaml')),
        *tree_data_files('models'),
    ],
    include_package_data=True,
    install_requires=['setuptools'],
    zip_safe=False,
    maintainer='dp_tt_ros developers',
    maintainer_email='dev@dp-tt-ros.invalid',
    description='Diffusion Policy and Trajectory Transformer runtime for ROS 2 arms.',
    license='Apache-2.0',
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': [
            'dp-tt-ros = dp_tt_ros.cli:main',
            *[f'{name} = dp_tt_ros.ros.nodes:{name}_main' for name in NODE_NAMES],
        ],
    },
)
