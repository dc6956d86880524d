"""Voice activity on a live stream: the Silero VAD model that faster-whisper ships (`silero_vad_v6.onnx`).

faster-whisper's `get_speech_timestamps` scores a whole file at once; a stream arrives chunk by
chunk, so `StreamingVAD` feeds the same ONNX session one 32 ms window at a time, carrying the
model's recurrent state and 64-sample context across chunks (the probabilities are exactly those
of one call on the whole stream), and applies Silero's hysteresis: speech starts at a window with
probability >= `threshold` and ends after `min_silence_ms` below `neg_threshold`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..base.errors import AlignheadsError
from .audio import SAMPLE_RATE

WINDOW = 512  # samples per Silero window at 16 kHz (32 ms)
_CONTEXT = 64  # samples of the previous window the model sees with each window


@dataclass
class VADConfig:
    """Silero thresholds and how much audio around speech the recogniser keeps."""

    threshold: float = 0.5  # a window at or above this probability is speech (Silero's default)
    neg_threshold: float = 0.35  # speech ends only below this (Silero: threshold - 0.15)
    min_silence_ms: int = 300  # a pause shorter than this does not end the speech segment
    pad_ms: int = 300  # audio kept before speech starts and needed after it ends before a hypothesis is settled

    def __post_init__(self):
        if not 0.0 < self.neg_threshold <= self.threshold < 1.0:
            raise AlignheadsError(f"VAD thresholds must satisfy 0 < neg_threshold <= threshold < 1, got "
                                  f"neg_threshold={self.neg_threshold}, threshold={self.threshold}")
        if self.min_silence_ms < 0 or self.pad_ms < 0:
            raise AlignheadsError("VAD min_silence_ms and pad_ms must be >= 0")

    @property
    def pad_s(self) -> float:
        return self.pad_ms / 1000


class StreamingVAD:
    """Speech/non-speech of a stream fed chunk by chunk; times are seconds on the stream clock."""

    def __init__(self, config: VADConfig | None = None):
        from faster_whisper.vad import get_vad_model

        self.config = config or VADConfig()
        self._session = get_vad_model().session  # shared, loaded once per process by faster-whisper
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self._h = np.zeros((1, 1, 128), dtype=np.float32)
        self._c = np.zeros((1, 1, 128), dtype=np.float32)
        self._context = np.zeros(_CONTEXT, dtype=np.float32)
        self._pending = np.zeros(0, dtype=np.float32)
        self.windows = 0  # windows scored so far
        self.speech_start: float | None = None  # start of the current (open) speech segment
        self.last_speech_end = float("-inf")  # end of the latest window inside speech
        self.segments: list[tuple[float, float]] = []  # closed speech segments, most recent last (bounded)
        self._silence_since: float | None = None
        self.probs: list[float] = []  # probability of each of the last windows (bounded, for inspection)

    def feed(self, chunk: np.ndarray) -> None:
        """Score the complete 32 ms windows that `chunk` (16 kHz float32) completes."""
        audio = np.concatenate([self._pending, np.asarray(chunk, dtype=np.float32).reshape(-1)])
        n = len(audio) // WINDOW
        self._pending = audio[n * WINDOW:]
        if n == 0:
            return
        block = audio[: n * WINDOW].reshape(n, WINDOW)
        contexts = np.concatenate([self._context[None], block[:-1, -_CONTEXT:]])
        probs, self._h, self._c = self._session.run(
            None, {"input": np.concatenate([contexts, block], axis=1), "h": self._h, "c": self._c})
        self._context = block[-1, -_CONTEXT:].copy()
        for p in np.asarray(probs, dtype=np.float32).reshape(-1):
            self._step(float(p))
        del self.probs[:-4096], self.segments[:-256]

    def _step(self, p: float) -> None:
        cfg = self.config
        start, end = self.windows * WINDOW / SAMPLE_RATE, (self.windows + 1) * WINDOW / SAMPLE_RATE
        self.windows += 1
        self.probs.append(p)
        if self.speech_start is None:
            if p >= cfg.threshold:
                self.speech_start, self.last_speech_end, self._silence_since = start, end, None
            return
        if p >= cfg.neg_threshold:
            if p >= cfg.threshold or self._silence_since is None:
                self.last_speech_end, self._silence_since = end, None
            return
        if self._silence_since is None:
            self._silence_since = start
        if end - self._silence_since >= cfg.min_silence_ms / 1000:
            self.segments.append((self.speech_start, self.last_speech_end))
            self.speech_start = self._silence_since = None

    def speech_in(self, start: float, end: float = float("inf")) -> bool:
        """Whether any speech that was heard overlaps [start, end)."""
        if self.speech_start is not None and self.speech_start < end and self.last_speech_end > start:
            return True
        return any(a < end and b > start for a, b in reversed(self.segments))

    def next_speech_start(self, after: float) -> float | None:
        """Start of the first speech heard that ends after `after` (None when there is none)."""
        found = [a for a, b in self.segments if b > after]
        if self.speech_start is not None and self.last_speech_end > after:
            found.append(self.speech_start)
        return min(found) if found else None
