"""Shared fixtures."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
