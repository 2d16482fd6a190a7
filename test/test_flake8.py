"""Style: the package passes ament_flake8 with the repository's setup.cfg."""

from pathlib import Path

from ament_flake8.main import main_with_errors
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8() -> None:
    paths = [str(ROOT / name) for name in ('dp_tt_ros', 'test', 'launch', 'setup.py')]
    rc, errors = main_with_errors(argv=['--config', str(ROOT / 'setup.cfg'), *paths])
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
