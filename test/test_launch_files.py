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
The launch files are thin adapters over the graph description.

``launch`` and ``launch_ros`` cannot be installed here, so each launch file is imported with a
minimal stand-in for the few launch classes it uses, written to a temporary folder for this test
only; the launch files themselves import the real packages unchanged.
"""

import ast
import importlib.util
from pathlib import Path
import sys
import textwrap

import pytest

from dp_tt_ros.paths import launch_dir
from dp_tt_ros.ros import launch_adapter
from dp_tt_ros.ros.graph import describe_graph, launch_arguments, options_from_strings

STAND_IN = {
    'launch/__init__.py': '''
        class LaunchContext:
            def __init__(self, launch_configurations):
                self.launch_configurations = launch_configurations


        class LaunchDescription:
            def __init__(self, entities):
                self.entities = list(entities)
    ''',
    'launch/actions.py': '''
        class DeclareLaunchArgument:
            def __init__(self, name, default_value=None, description=''):
                self.name, self.default_value, self.description = name, default_value, description


        class OpaqueFunction:
            def __init__(self, function):
                self.function = function
    ''',
    'launch/substitutions.py': '''
        class LaunchConfiguration:
            def __init__(self, name):
                self.name = name

            def perform(self, context):
                return context.launch_configurations[self.name]
    ''',
    'launch_ros/__init__.py': '',
    'launch_ros/actions.py': '''
        class Node:
            def __init__(self, **kwargs):
                self.kwargs = kwargs
    ''',
}


@pytest.fixture
def launch_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    for relative, source in STAND_IN.items():
        path = tmp_path / relative
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in [name for name in sys.modules if name.split('.')[0] in ('launch', 'launch_ros')]:
        del sys.modules[name]


def load(mode: str):
    path = launch_dir() / f'{mode}.launch.py'
    spec = importlib.util.spec_from_file_location(f'{mode}_launch', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize('mode', ['sim', 'robot'])
def test_launch_file_builds_the_described_graph(mode: str, launch_stand_in) -> None:
    import launch
    description = load(mode).generate_launch_description()
    declared = description.entities[:-1]
    assert [(a.name, a.default_value) for a in declared] == [
        (a.name, a.default) for a in launch_arguments(mode)]
    assert {'policy_type', 'checkpoint', 'task', 'controller_mode'} <= {a.name for a in declared}
    assert ('gui' in {a.name for a in declared}) == (mode == 'sim')
    values = {a.name: a.default_value for a in declared}
    values.update(task='push', policy_type='transformer', controller_mode='joint_trajectory')
    nodes = description.entities[-1].function(launch.LaunchContext(values))
    expected = describe_graph(mode, options_from_strings(mode, values))
    assert len(nodes) == len(expected)
    for node, described in zip(nodes, expected):
        assert node.kwargs == {
            'package': 'dp_tt_ros', 'executable': described.executable, 'name': described.name,
            'output': 'screen', 'emulate_tty': True,
            'parameters': [*(str(path) for path in described.parameter_files),
                           described.parameters],
            'remappings': list(described.remappings)}


@pytest.mark.parametrize('mode', ['sim', 'robot'])
def test_launch_file_holds_no_graph_of_its_own(mode: str) -> None:
    tree = ast.parse((launch_dir() / f'{mode}.launch.py').read_text())
    calls = [node for node in ast.walk(tree)
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)]
    assert [(call.func.id, [arg.value for arg in call.args]) for call in calls] == [
        ('launch_description', [mode])]
    adapter = ast.parse(Path(launch_adapter.__file__).read_text())
    called = {node.func.id for node in ast.walk(adapter)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}
    assert {'describe_graph', 'launch_arguments', 'options_from_strings'} <= called
    literals = {node.value for node in ast.walk(adapter) if isinstance(node, ast.Constant)}
    assert not literals & {'pybullet_bridge', 'perception', 'policy', 'executor'}


def test_setup_installs_the_launch_files() -> None:
    assert sorted(path.name for path in launch_dir().glob('*.launch.py')) == [
        'robot.launch.py', 'sim.launch.py']
    setup = (launch_dir().parent / 'setup.py').read_text()
    assert "glob('launch/*.launch.py')" in setup
