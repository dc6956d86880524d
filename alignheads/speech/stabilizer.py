"""Streaming transcript stabiliser: commits whole sentences once two successive ASR hypotheses agree.

Each chunk, the ASR re-transcribes the audio since the last committed sentence (the buffer
starting at `Stabilizer.cut`). Words are committed up to the last sentence-final punctuation
inside the longest common prefix of the last two hypotheses; the rest is the partial tail.
All times are on the stream clock (seconds since the stream started).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass, field

from ..base.errors import AlignheadsError
from ..base.sentences import MARKS, is_sentence_final, split_sentences
from .asr import Word
from .audio import SAMPLE_RATE

_TIME_TOLERANCE = 0.05  # seconds; backends clamp to their buffer, sample rounding of the cut is far below this


@dataclass
class StabilizerConfig:
    """How the stabiliser commits: chunk size, start delay, tail hold-back, sentence-final marks."""

    chunk_ms: int = 850  # re-transcription period (850 low latency, 1500 high)
    min_start_s: float = 2.0  # no output before this much audio
    sentence_final: str = MARKS
    max_buffer_s: float = 30.0  # commit the agreed prefix without a sentence end once the buffer is this long

    def __post_init__(self):
        if self.chunk_ms <= 0:
            raise AlignheadsError(f"chunk_ms must be positive, got {self.chunk_ms}")
        if self.min_start_s < 0:
            raise AlignheadsError(f"min_start_s must be >= 0, got {self.min_start_s}")
        if self.max_buffer_s <= 0:
            raise AlignheadsError(f"max_buffer_s must be positive, got {self.max_buffer_s}")
        if not self.sentence_final:
            raise AlignheadsError("sentence_final must name at least one punctuation mark")

    @property
    def chunk_samples(self) -> int:
        """Samples per chunk at 16 kHz."""
        return self.chunk_ms * SAMPLE_RATE // 1000


@dataclass(frozen=True)
class StabilizerUpdate:
    """What one hypothesis changed: newly committed words, the partial tail, and where the buffer now starts."""

    now: float  # stream time of this update
    committed: list[Word] = field(default_factory=list)  # newly committed (append-only across updates)
    partial: list[Word] = field(default_factory=list)  # uncommitted tail of the current hypothesis
    cut: float = 0.0  # stream time where the uncommitted audio starts (drop the buffer before it)
    final: bool = False  # produced by finish(): everything is committed
    sentence_final: str = MARKS

    @property
    def sentences(self) -> list[list[Word]]:
        """The newly committed words split after each sentence-final word (a forced tail forms its own piece)."""
        return split_sentences(self.committed, self.sentence_final)


def normalize_word(text: str) -> str:
    """Form used to compare words across hypotheses: NFKC, case-folded, trimmed (punctuation kept)."""
    return unicodedata.normalize("NFKC", text).casefold().strip()


def common_prefix_length(a: list[Word], b: list[Word]) -> int:
    """Number of leading words `a` and `b` share, compared on normalised text."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if normalize_word(x.text) != normalize_word(y.text):
            break
        n += 1
    return n


class Stabilizer:
    """Turns successive full hypotheses of the uncommitted audio into an append-only transcript.

    Loop: transcribe the audio from `cut` (with `offset=cut`), call `update(words, now)`, emit
    `committed`, drop the audio before the returned `cut`; at end of stream call `finish(words)`.
    """

    def __init__(self, config: StabilizerConfig | None = None):
        self.config = config or StabilizerConfig()
        self.committed: list[Word] = []  # everything committed so far
        self.cut = 0.0
        self.now = 0.0
        self.finished = False
        self._previous: list[Word] | None = None  # uncommitted part of the last hypothesis

    def _check(self, words: list[Word], now: float) -> None:
        if self.finished:
            raise AlignheadsError("stabiliser already finished; create a new one for a new stream")
        if now < self.now:
            raise AlignheadsError(f"stream time went backwards: {now:.3f} s after {self.now:.3f} s")
        lo, hi = self.cut - _TIME_TOLERANCE, now + _TIME_TOLERANCE
        prev_start = lo
        for w in words:
            if w.start < lo:
                raise AlignheadsError(
                    f"word {w.text!r} starts at {w.start:.3f} s, before the buffer start {self.cut:.3f} s: word times "
                    "must be on the stream clock (transcribe the buffer from `cut` with offset=cut)"
                )
            if w.end > hi:
                raise AlignheadsError(f"word {w.text!r} ends at {w.end:.3f} s, after the stream time {now:.3f} s")
            if w.end < w.start or w.start < prev_start - _TIME_TOLERANCE:
                raise AlignheadsError(f"word {w.text!r} ({w.start:.3f}-{w.end:.3f} s) is out of time order")
            prev_start = w.start

    def _update(self, now: float, committed: list[Word], partial: list[Word], final: bool = False) -> StabilizerUpdate:
        return StabilizerUpdate(now, committed, partial, self.cut, final, self.config.sentence_final)

    def _commit(self, words: list[Word], k: int) -> list[Word]:
        """Commit words[:k]; move the cut to the first uncommitted word (or the end of the last committed one)."""
        new = list(words[:k])
        self.committed.extend(new)
        if new:
            nxt = words[k].start if k < len(words) else new[-1].end
            self.cut = min(max(self.cut, nxt), max(self.now, self.cut))
        return new

    def update(self, words: list[Word], now: float) -> StabilizerUpdate:
        """Feed the hypothesis `words` of the audio from `cut` up to stream time `now`; return what changed."""
        self._check(words, now)
        self.now = now
        previous, self._previous = self._previous, list(words)
        if now < self.config.min_start_s:
            return self._update(now, [], [])
        k = 0
        if previous is not None:
            n = common_prefix_length(previous, words)
            marks = self.config.sentence_final
            k = next((i + 1 for i in range(n - 1, -1, -1)
                      if is_sentence_final(words[i].text, marks, words[i + 1].text if i + 1 < len(words) else None)), 0)
            if k == 0 and now - self.cut >= self.config.max_buffer_s:
                k = n
        new = self._commit(words, k)
        self._previous = list(words[k:])
        return self._update(now, new, list(words[k:]))

    def skip_to(self, t: float) -> None:
        """Move the cut forward to `t` (not past now): the audio before it holds no speech and no uncommitted words."""
        if self._previous:
            raise AlignheadsError("cannot skip audio while uncommitted words are pending")
        self.cut = max(self.cut, min(t, self.now))

    def finish(self, words: list[Word] | None = None, now: float | None = None) -> StabilizerUpdate:
        """End of stream: commit all of `words` (a last hypothesis of the audio from `cut` up to `now`),
        or of the last hypothesis when `words` is None. Ignores `min_start_s`."""
        now = self.now if now is None else now
        if words is None:
            self._check([], now)
            words = self._previous or []
        else:
            self._check(words, now)
        self.now = now
        new = self._commit(words, len(words))
        self._previous = []
        self.finished = True
        return self._update(now, new, [], final=True)
