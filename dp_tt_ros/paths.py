"""Where the package's data folders (config/, models/, launch/) live in each kind of install."""

from __future__ import annotations

import sys
from pathlib import Path

PACKAGE = 'dp_tt_ros'


def share_dir() -> Path:
    """The source tree in a checkout or editable install; the ament share folder otherwise."""
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
