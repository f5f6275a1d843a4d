"""Fixtures of the disk store tests."""

from __future__ import annotations

import pytest
from storage_helpers import Factory


@pytest.fixture
def make() -> Factory:
    return Factory()
