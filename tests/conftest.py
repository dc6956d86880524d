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


@pytest.fixture(scope="session")
def tiny3():
    """Tiny random Gemma-3 (shared across the session; tests must not modify it)."""
    from alignheads.models import load_model

    return load_model("tiny-gemma3")


@pytest.fixture(scope="session")
def tiny4():
    """Tiny random Gemma-4 with KV-shared layers (shared across the session)."""
    from alignheads.models import load_model

    return load_model("tiny-gemma4")


@pytest.fixture(scope="session")
def embedded():
    """The embedded Gemma 3 270M, prepared into the user cache on first use."""
    from alignheads.models import load_model

    if os.environ.get("ALIGNHEADS_SKIP_EMBEDDED") == "1":
        pytest.skip("ALIGNHEADS_SKIP_EMBEDDED=1")
    return load_model("embedded")


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny-model tests single-threaded: two torch threads thrash on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
