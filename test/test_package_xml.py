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

"""package.xml is a well-formed format-3 ament_python manifest whose dependencies resolve."""

from pathlib import Path
import xml.etree.ElementTree as ElementTree

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.linter
@pytest.mark.xmllint
def test_manifest_fields() -> None:
    manifest = ElementTree.parse(ROOT / 'package.xml').getroot()
    assert manifest.tag == 'package' and manifest.get('format') == '3'
    for field in ('name', 'version', 'description', 'maintainer', 'license'):
        assert (manifest.findtext(field) or '').strip(), f'package.xml lacks <{field}>'
    assert manifest.findtext('name') == 'dp_tt_ros'
    assert manifest.findtext('export/build_type') == 'ament_python'
    exec_depends = {element.text for element in manifest.findall('exec_depend')}
    for ros_dependency in ('rclpy', 'sensor_msgs', 'trajectory_msgs', 'std_srvs',
                           'diagnostic_msgs', 'rosgraph_msgs', 'geometry_msgs'):
        assert ros_dependency in exec_depends


@pytest.mark.linter
@pytest.mark.xmllint
def test_ament_xmllint() -> None:
    ament_xmllint = pytest.importorskip('ament_xmllint.main',
                                        reason='ament_xmllint comes with a ROS distro')
    assert ament_xmllint.main(argv=[str(ROOT / 'package.xml')]) == 0
