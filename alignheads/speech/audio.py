"""Audio input: files of any common format and raw PCM streams, as float32 mono at 16 kHz."""

from __future__ import annotations

import os
import struct
import time
import warnings
from collections.abc import Iterator
from math import gcd
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from ..base.errors import AlignheadsError

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
    if path.is_dir():
        raise AlignheadsError(f"{path}: is a folder, not an audio file")
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
    cut = wav_truncation(path)
    if cut is not None:
        warnings.warn(f"{path}: truncated WAV: its header declares {cut[0]:.2f} s of audio but the file holds "
                      f"{cut[1]:.2f} s (an interrupted copy or download?); using the {cut[1]:.2f} s present",
                      stacklevel=2)
    peak = float(np.abs(data).max())
    if peak > 2.0:  # integer formats decode into [-1, 1]; only float WAVs can hold more
        warnings.warn(f"{path}: samples reach {peak:.3g}, far outside [-1, 1] (a float WAV not scaled to full "
                      "scale?); the recogniser will hear clipped noise", stacklevel=2)
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, rate)


def wav_truncation(path: str | os.PathLike) -> tuple[float, float] | None:
    """(declared, present) seconds when `path` is a RIFF/WAVE file whose data chunk is cut short, else None.

    libsndfile silently decodes what is there; a data size of 0 or 0xFFFFFFFF (streamed WAV) declares nothing.
    """
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if f.read(12)[8:] != b"WAVE" or size < 12:
            return None
        byte_rate = 0
        for _ in range(64):  # chunks before "data" are few (fmt, fact, LIST, ...)
            head = f.read(8)
            if len(head) < 8:
                return None
            kind, length = head[:4], struct.unpack("<I", head[4:])[0]
            if kind == b"fmt ":
                fmt = f.read(length + length % 2)
                byte_rate = struct.unpack("<I", fmt[8:12])[0] if len(fmt) >= 12 else 0
            elif kind == b"data":
                present = size - f.tell()
                if length in (0, 0xFFFFFFFF) or length <= present or byte_rate <= 0:
                    return None
                return length / byte_rate, present / byte_rate
            else:
                f.seek(length + length % 2, os.SEEK_CUR)
    return None


def pcm16_to_float(raw: bytes) -> np.ndarray:
    """Convert little-endian signed 16-bit PCM bytes to float32 samples in [-1, 1)."""
    return np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768.0


def read_pcm_stream(fileobj: BinaryIO | None, chunk_samples: int) -> Iterator[np.ndarray]:
    """Yield float32 chunks of `chunk_samples` from raw 16 kHz mono s16le PCM (e.g. stdin); the last may be shorter.

    Short reads (pipes) are accumulated until a chunk is complete or the stream ends. A stream that ends
    mid-sample loses its last byte, with a warning. A closed stream or a terminal fails here, not at the first read.
    """
    if chunk_samples <= 0:
        raise AlignheadsError(f"chunk_samples must be positive, got {chunk_samples}")
    hint = "pipe raw 16 kHz mono s16le PCM into it, e.g. `ffmpeg -i talk.mp3 -f s16le -ac 1 -ar 16000 - | ...`"
    if fileobj is None or getattr(fileobj, "closed", False):  # sys.stdin is None when the shell closed it
        raise AlignheadsError(f"the PCM input stream (stdin) is closed; {hint}")
    stream = getattr(fileobj, "buffer", fileobj)  # sys.stdin is text; its .buffer is the byte stream
    want = 2 * chunk_samples
    name = getattr(fileobj, "name", "<pcm stream>")
    if getattr(stream, "isatty", lambda: False)():
        raise AlignheadsError(f"{name} is a terminal, not audio; {hint}")
    return _pcm_chunks(stream, want, name)


def _pcm_chunks(stream, want: int, name: str) -> Iterator[np.ndarray]:
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
        warnings.warn(f"{name}: PCM stream ended mid-sample (odd byte count), its last byte is dropped; "
                      "is it really 16-bit s16le?", stacklevel=2)
        pending = pending[:-1]
    if pending:
        yield pcm16_to_float(pending)


def iter_chunks(audio: np.ndarray, chunk_samples: int) -> Iterator[np.ndarray]:
    """Split `audio` into consecutive chunks of `chunk_samples` (file simulation of a live stream)."""
    if chunk_samples <= 0:
        raise AlignheadsError(f"chunk_samples must be positive, got {chunk_samples}")
    for start in range(0, len(audio), chunk_samples):
        yield audio[start : start + chunk_samples]
