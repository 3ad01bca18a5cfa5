"""pytest fixtures; the shared helpers are in helpers.py."""

from pathlib import Path

import pytest

from helpers import SHARED_DATA, load_benchmark


@pytest.fixture
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"shared corpora not found at {SHARED_DATA} (set DELIGHT_SHARED_DATA)"
        )
    return SHARED_DATA


@pytest.fixture(scope="module")
def trials():
    """benchmarks/trials.py, the 60-minute trials of issue 9."""
    return load_benchmark("trials")
