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

"""Every source file carries the Apache-2.0 copyright header that ament_copyright expects."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SOURCE_DIRS = ('dp_tt_ros', 'test', 'launch')
REQUIRED_LINES = ('# Copyright 2026 dp_tt_ros developers',
                  '# Licensed under the Apache License, Version 2.0 (the "License");')


def python_sources() -> list[Path]:
    files = [ROOT / 'setup.py']
    for folder in SOURCE_DIRS:
        files.extend(sorted((ROOT / folder).rglob('*.py')))
    return files


@pytest.mark.copyright
@pytest.mark.linter
def test_every_source_has_the_license_header() -> None:
    missing = [str(path.relative_to(ROOT)) for path in python_sources()
               if not all(line in path.read_text().splitlines()[:16] for line in REQUIRED_LINES)]
    assert not missing, f'files without the Apache-2.0 header: {missing}'


@pytest.mark.copyright
@pytest.mark.linter
def test_ament_copyright() -> None:
    ament_copyright = pytest.importorskip('ament_copyright.main',
                                          reason='ament_copyright comes with a ROS distro')
    rc = ament_copyright.main(argv=[str(ROOT / folder) for folder in SOURCE_DIRS])
    assert rc == 0, 'Found errors'
