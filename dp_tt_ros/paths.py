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

"""Where the package's data folders (config/, models/, launch/) live in each kind of install."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = 'dp_tt_ros'


def share_dir() -> Path:
    """Return the source tree in a checkout or editable install, else the ament share folder."""
    source_root = Path(__file__).resolve().parent.parent
    if (source_root / 'package.xml').is_file() and (source_root / 'config').is_dir():
        return source_root
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(PACKAGE))
    except (ImportError, LookupError):
        return Path(sys.prefix) / 'share' / PACKAGE


def config_dir() -> Path:
    return share_dir() / 'config'


def models_dir() -> Path:
    return share_dir() / 'models'


def launch_dir() -> Path:
    return share_dir() / 'launch'
