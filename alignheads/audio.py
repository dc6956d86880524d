"""Audio input: files of any common format and raw PCM streams, as float32 mono at 16 kHz."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from math import gcd
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from .errors import AlignheadsError

SAMPLE_RATE = 16000  # every model and stream in alignheads runs at this rate


def resample(audio: np.ndarray, rate: int, target: int = SAMPLE_RATE) -> np.ndarray:
    """Resample mono `audio` from `rate` to `target` Hz (polyphase, anti-aliased)."""
    if rate <= 0:
        raise AlignheadsError(f"sample rate must be positive, got {rate}")
    if rate == target or audio.size == 0:
        return np.ascontiguousarray(audio, dtype=np.float32)
    g = gcd(rate, target)
    out = resample_poly(audio.astype(np.float64), target // g, rate // g)
    return np.ascontiguousarray(out, dtype=np.float32)


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Read a wav/flac/mp3/ogg file (any rate, any channel count) as float32 mono 16 kHz samples."""
    path = Path(path)
    if not path.is_file():
        raise AlignheadsError(f"{path}: audio file not found")
    if path.stat().st_size == 0:
        raise AlignheadsError(f"{path}: audio file is empty (0 bytes)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        kinds = ", ".join(sorted(sf.available_formats()))
        raise AlignheadsError(f"{path}: cannot decode audio ({e}); readable formats: {kinds}") from None
    if data.shape[0] == 0:
        raise AlignheadsError(f"{path}: audio has zero length (no samples)")
    if not np.isfinite(data).all():
        raise AlignheadsError(f"{path}: audio contains NaN or infinite samples")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, rate)


def pcm16_to_float(raw: bytes) -> np.ndarray:
    """Convert little-endian signed 16-bit PCM bytes to float32 samples in [-1, 1)."""
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def read_pcm_stream(fileobj: BinaryIO, chunk_samples: int) -> Iterator[np.ndarray]:
    """Yield float32 chunks of `chunk_samples` from raw 16 kHz mono s16le PCM (e.g. stdin); the last may be shorter.

    Short reads (pipes) are accumulated until a chunk is complete or the stream ends.
    """
    if chunk_samples <= 0:
        raise AlignheadsError(f"chunk_samples must be positive, got {chunk_samples}")
    stream = getattr(fileobj, "buffer", fileobj)  # sys.stdin is text; its .buffer is the byte stream
    want = 2 * chunk_samples
    name = getattr(fileobj, "name", "<pcm stream>")
    pending = b""
    while True:
        block = stream.read(want - len(pending))
        if block is None:  # non-blocking stream with nothing available yet
            time.sleep(0.005)
            continue
        if not isinstance(block, (bytes, bytearray, memoryview)):
            raise AlignheadsError(f"{name}: PCM stream must be opened in binary mode")
        if not block:
            break
        pending += bytes(block)
        if len(pending) == want:
            yield pcm16_to_float(pending)
            pending = b""
    if len(pending) % 2:
        raise AlignheadsError(f"{name}: PCM stream ended mid-sample (odd byte count); expected 16-bit s16le samples")
    if pending:
        yield pcm16_to_float(pending)


def iter_chunks(audio: np.ndarray, chunk_samples: int) -> Iterator[np.ndarray]:
    """Split `audio` into consecutive chunks of `chunk_samples` (file simulation of a live stream)."""
    if chunk_samples <= 0:
        raise AlignheadsError(f"chunk_samples must be positive, got {chunk_samples}")
    for start in range(0, len(audio), chunk_samples):
        yield audio[start : start + chunk_samples]
