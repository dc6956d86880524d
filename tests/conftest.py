"""Shared test fixtures: offline hub, the ../shared data (skipped when absent)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
SHARED_GOLD = ROOT.parent / "shared" / "data" / "gold"


@pytest.fixture
def shared_gold() -> Path:
    """Directory of the shared gold alignments; skips the test when the checkout has none."""
    if not SHARED_GOLD.is_dir():
        pytest.skip(f"shared gold data not found at {SHARED_GOLD} (only present beside the project checkout)")
    return SHARED_GOLD
