"""Fixtures the device's in-process tests share."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.test_device import Parts


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[Parts]:
    """A real SQLite store and filestore in the test's folder, and the device's settings."""
    made = Parts(tmp_path)
    yield made
    made.close()
