"""Shared test fixtures (offline hub, the ../shared data, skipped when absent) and the test tiers.

Tiers (pytest markers, assigned here so new tests land in the right one without remembering to):
- unit: pure functions and small data, no model;
- model: a tiny random model (tiny3 / tiny4 fixtures) or another quick model;
- slow: real weights (the embedded LLM, whisper, the SimAlign encoder), CLI subprocesses, long runs —
  by fixture, by a parameter naming the embedded model, or marked `@pytest.mark.slow` explicitly;
- notebook: executes a notebook; browser: drives a real browser.
`make test` runs every tier; `make test-fast` runs `-m "not slow and not notebook and not browser"`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

ROOT = Path(__file__).resolve().parents[1]
# CTranslate2 picks its int8 kernels by instruction set: without AVX-512 the embedded whisper-base, with its 5 s
# window pad, mishears a 2 s clip the full window hears right (measured on an AMD EPYC with AVX2 only).
AVX512 = "avx512f" in (Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else "avx512f")
SHORT_WINDOW_MISHEARS = "without AVX-512, whisper-base int8 with the 5 s window pad mishears a 2 s clip " \
                        "(docs/troubleshooting.md)"
SLOW_FIXTURES = {"embedded", "whisper", "aligner", "e5_dir"}  # fixtures that use them count too
MODEL_FIXTURES = {"tiny3", "tiny4", "tiny_asr"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        params = getattr(getattr(item, "callspec", None), "params", {})
        marks = {m.name for m in item.iter_markers()}
        if item.path.name == "test_notebooks.py":
            marks.add("notebook")
        values = set(map(str, params.values()))
        if fixtures & SLOW_FIXTURES or "embedded" in values:
            marks.add("slow")
        if fixtures & MODEL_FIXTURES or values & {"tiny3", "tiny4"}:
            marks.add("model")
        if not marks & {"model", "slow", "notebook", "browser"}:
            marks.add("unit")
        for name in marks & {"unit", "model", "slow", "notebook"}:
            item.add_marker(name)
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
    from alignheads.model.loader import load_model

    return load_model("tiny-gemma3")


@pytest.fixture(scope="session")
def tiny4():
    """Tiny random Gemma-4 with KV-shared layers (shared across the session)."""
    from alignheads.model.loader import load_model

    return load_model("tiny-gemma4")


@pytest.fixture(scope="session")
def embedded():
    """The embedded Gemma 3 270M, prepared into the user cache on first use."""
    from alignheads.model.loader import load_model

    if os.environ.get("ALIGNHEADS_SKIP_EMBEDDED") == "1":
        pytest.skip("ALIGNHEADS_SKIP_EMBEDDED=1")
    return load_model("embedded")


@pytest.fixture(scope="session")
def whisper():
    """The embedded whisper-base (faster-whisper), prepared into the user cache on first use."""
    from alignheads.speech.asr import load_asr

    return load_asr("whisper", model="embedded")


@pytest.fixture(scope="session")
def tiny_asr(tmp_path_factory):
    """A real Qwen3-ASR backend on tiny random models (fast, noise transcripts); skipped without the [qwen] extra."""
    import importlib.util

    if importlib.util.find_spec("qwen_asr") is None:
        pytest.skip("optional extra [qwen]: pip install --no-deps qwen-asr==0.0.6")
    from alignheads.speech.qwen_asr import QwenBackend
    from alignheads.speech.tiny_asr import save_tiny_qwen_models

    asr_dir, aligner_dir = save_tiny_qwen_models(tmp_path_factory.mktemp("tiny_asr"))
    return QwenBackend(str(asr_dir), str(aligner_dir), max_new_tokens=16)


@pytest.fixture(scope="module")
def one_thread():
    """Run a module's tiny-model tests single-threaded: two torch threads thrash on a busy 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
