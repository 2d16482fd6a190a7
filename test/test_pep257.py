"""Docstrings: the package passes ament_pep257."""

from pathlib import Path

from ament_pep257.main import main
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257() -> None:
    rc = main(argv=[str(ROOT / 'dp_tt_ros'), str(ROOT / 'test'), str(ROOT / 'launch')])
    assert rc == 0, 'Found code style errors / warnings'
