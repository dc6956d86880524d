"""Streaming voice activity detection with the Silero model faster-whisper ships."""

from __future__ import annotations

import json

import numpy as np
import pytest

from alignheads.base.errors import AlignheadsError
from alignheads.speech.audio import SAMPLE_RATE, iter_chunks, load_audio
from alignheads.speech.vad import WINDOW, StreamingVAD, VADConfig
from tests.conftest import ROOT

TALKS = ROOT / "data" / "talks"


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    """White noise with RMS `dbfs` relative to full scale."""
    return (np.random.default_rng(seed).standard_normal(round(seconds * SAMPLE_RATE)) * 10 ** (dbfs / 20)).astype(
        np.float32)


def fed(audio: np.ndarray, chunk: int) -> StreamingVAD:
    vad = StreamingVAD()
    for c in iter_chunks(audio, chunk):
        vad.feed(c)
    return vad


def test_streaming_probabilities_equal_one_call_on_the_whole_audio():
    from faster_whisper.vad import get_vad_model

    audio = load_audio(TALKS / "talk04.wav")[: 6 * SAMPLE_RATE]
    whole = np.asarray(get_vad_model()(audio[: len(audio) // WINDOW * WINDOW])).reshape(-1)
    for chunk in (13600, 777, 24000):  # 850 ms, odd sizes that split windows, 1500 ms
        vad = fed(audio, chunk)
        assert vad.windows == len(whole)
        np.testing.assert_allclose(vad.probs, whole, atol=1e-6)


def test_speech_of_a_talk_is_found_and_its_lead_in_is_not():
    talk = json.loads((TALKS / "talks.json").read_text())["talks"]["talk05"]
    audio = load_audio(TALKS / "talk05.wav")
    vad = fed(audio, 13600)
    for s in talk["sentences"]:
        assert vad.speech_in(s["start"] + 0.1, s["end"] - 0.1), s["text"]
    first = talk["sentences"][0]["start"]
    assert not vad.speech_in(0.0, first - 0.1)
    assert vad.next_speech_start(0.0) == pytest.approx(first, abs=0.15)


@pytest.mark.parametrize("audio", [np.zeros(20 * SAMPLE_RATE, np.float32), noise(20, -50)],
                         ids=["silence", "white-noise-50dBFS"])
def test_silence_and_quiet_noise_are_not_speech(audio):
    vad = fed(audio, 13600)
    assert vad.windows == 20 * SAMPLE_RATE // WINDOW
    assert not vad.speech_in(0.0) and vad.next_speech_start(0.0) is None and max(vad.probs) < 0.5


def test_reset_and_bad_config():
    vad = fed(load_audio(TALKS / "talk05.wav")[: 3 * SAMPLE_RATE], 8000)
    assert vad.speech_in(0.0)
    vad.reset()
    assert vad.windows == 0 and not vad.speech_in(0.0) and vad.probs == []
    with pytest.raises(AlignheadsError, match="neg_threshold"):
        VADConfig(threshold=0.3, neg_threshold=0.5)
    with pytest.raises(AlignheadsError, match="pad_ms"):
        VADConfig(pad_ms=-1)
