"""The synchronous speech-to-text cascade: audio chunks -> streaming ASR -> stabiliser -> AlignAtt MT.

Every chunk (850 ms low latency, 1500 ms high) re-transcribes the audio since the last committed
sentence; the stabiliser commits up to the last sentence end inside the agreement of the last two
hypotheses. Committed and partial words (their end times on the stream clock) go to the
translator, which shows them all in the prompt but counts as accessible only words that ended at
least `TranslatorConfig.holdback` seconds ago (default 0.25 s: the ASR tail is wrong 17% of the time, 8% 250 ms
behind it). With no hold-back every heard word is accessible and the paper's border b = 1 can
never fire; the default border is −2 (`alignheads.simul.policy`). A committed sentence is translated to its end
and the translator moves on.

Voice activity (Silero, `alignheads.speech.vad`) gates the recogniser: audio without speech is never
transcribed (Whisper invents words on silence and noise), leading silence is dropped from the
buffer, and once a speaker pauses the buffer is transcribed once more and that hypothesis is reused
(and so committed) until new speech arrives. `vad=None` transcribes every chunk, as before. Output is
append-only; each emitted unit gets two times, like the IWSLT simultaneous track:

- computation-unaware (CU): the stream time when the chunk that produced it ended;
- computation-aware (CA): when it would appear if the stream were played in real time on this machine. With
  `overlap` (the default) recognition and translation are a two-stage pipeline on two threads: the recogniser
  takes chunk k when it has arrived and chunk k−1 is recognised; the translator takes chunk k's update when it is
  recognised and update k−1 is translated; each stage takes its wall time measured while both run. Without
  overlap a chunk is recognised and translated before the next one starts. The translator sees the same updates
  in the same order either way, so the output and its CU times are identical.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..base.languages import get_language
from ..base.sentences import is_sentence_final, split_sentences
from ..simul.evaluation import Instance
from ..simul.translator import SimultaneousTranslator, SourceWord
from .asr import ASRBackend, Word
from .audio import SAMPLE_RATE
from .stabilizer import Stabilizer, StabilizerConfig
from .vad import StreamingVAD, VADConfig

NO_SPEECH_WARNING_S = 10.0  # say so when voice activity found nothing in this much audio


@dataclass
class Emission:
    """One emitted target unit (word, or character for zh/ja) and when it was emitted."""

    text: str
    time_cu: float  # seconds, stream clock
    time_ca: float  # seconds, computation-aware
    sentence: int


@dataclass
class CascadeStats:
    """Where the time went (each stage's busy seconds, measured while the stages run)."""

    chunks: int = 0
    audio_s: float = 0.0
    asr_s: float = 0.0
    mt_s: float = 0.0
    sentences: int = 0
    asr_calls: int = 0  # chunks the recogniser ran on (the others held no new speech)
    overlap: bool = False  # recogniser and translator ran at the same time (a two-stage pipeline)

    @property
    def rtf(self) -> float:
        """Computation-aware real-time factor: busy time / audio time — the busier stage's when the stages overlap,
        the sum when they take turns."""
        if not self.audio_s:
            return 0.0
        return (max(self.asr_s, self.mt_s) if self.overlap else self.asr_s + self.mt_s) / self.audio_s

    @property
    def rtf_sum(self) -> float:
        """(ASR + MT busy time) / audio time: the RTF if the stages took turns."""
        return (self.asr_s + self.mt_s) / self.audio_s if self.audio_s else 0.0


@dataclass
class SentenceStep:
    """One translator update that added text to a sentence's translation (what coverage reads)."""

    time: float  # stream clock
    n_source: int
    n_accessible: int
    final: bool
    new_text: str


@dataclass
class SentenceRecord:
    """One source sentence: its latest words (final once translated to its end) and the updates that added text."""

    index: int
    words: list[Word] = field(default_factory=list)
    steps: list[SentenceStep] = field(default_factory=list)


@dataclass
class SpeechCascade:
    """Streaming ASR + stabiliser + simultaneous translator, fed chunk by chunk."""

    asr: ASRBackend
    translator: SimultaneousTranslator
    src_lang: str = "en"
    config: StabilizerConfig = field(default_factory=StabilizerConfig)
    on_emit: Callable[[list[Emission]], None] | None = None
    vad: VADConfig | None = field(default_factory=VADConfig)  # None: transcribe every chunk
    overlap: bool = True  # translate update k while chunk k+1 is recognised (see the module docstring)

    def __post_init__(self):
        self.spaced = get_language(self.translator.tgt_lang).spaced
        self._worker: ThreadPoolExecutor | None = None
        self._pending: deque[Future] = deque()
        self.reset()

    def reset(self) -> None:
        """Start a new stream."""
        self.close()
        if self.overlap:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="alignheads-cascade-mt")
        self.stabilizer = Stabilizer(self.config)
        self.translator.reset()
        self.buffer = np.zeros(0, dtype=np.float32)
        self.buffer_start = 0.0  # stream time of buffer[0]
        self.samples = 0
        self.emissions: list[Emission] = []
        self.sentence_words: list[Word] = []  # committed words of the sentence being translated
        self.stats = CascadeStats(overlap=self.overlap)
        self.sentences: list[SentenceRecord] = []
        self._asr_clock = self._mt_clock = 0.0  # when each stage is done with the latest chunk (CA time)
        self._words: list[Word] = []  # the uncommitted words of the latest hypothesis
        self._vad = StreamingVAD(self.vad) if self.vad is not None else None
        self._asr_until = float("-inf")  # stream time the latest transcription reached
        # The latest translator Updates (decision traces included), bounded so nothing grows per chunk.
        self.translator_updates: deque = deque(maxlen=256)

    @property
    def now(self) -> float:
        return self.samples / SAMPLE_RATE

    @property
    def text(self) -> str:
        """The translation emitted so far."""
        sep = " " if self.spaced else ""
        return sep.join(e.text for e in self.emissions)

    def process_chunk(self, chunk: np.ndarray) -> list[Emission]:
        """Feed the next chunk of 16 kHz mono float32 audio; return the units it made the system emit."""
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self.buffer = np.concatenate([self.buffer, chunk])
        self.samples += len(chunk)
        self.stats.chunks += 1
        self.stats.audio_s = self.now
        t0 = time.perf_counter()
        if self._vad is not None:
            self._vad.feed(chunk)
            if self.stats.asr_calls == 0 and self.now >= NO_SPEECH_WARNING_S > self.now - len(chunk) / SAMPLE_RATE:
                warnings.warn(f"no speech in the first {NO_SPEECH_WARNING_S:g} s of audio: silence, or raw PCM in "
                              "another rate or format (stdin expects 16 kHz 16-bit mono)", stacklevel=2)
        if self.now < self.config.min_start_s:
            self._recognised(time.perf_counter() - t0)
            return self._collect()
        self._transcribe()
        update = self.stabilizer.update(self._words, self.now)
        self._words = list(update.partial)
        if self._vad is not None and not self._words:  # nothing pending: drop the silence before the next speech
            start = self._vad.next_speech_start(self.buffer_start)
            self.stabilizer.skip_to((self.now if start is None else start) - self.vad.pad_s)
        # Drop audio before the stabiliser's cut (the start of the first uncommitted word).
        drop = int(round((self.stabilizer.cut - self.buffer_start) * SAMPLE_RATE))
        if drop > 0:
            self.buffer = self.buffer[drop:]
            self.buffer_start += drop / SAMPLE_RATE
        return self._submit(update, self._recognised(time.perf_counter() - t0), final=False)

    def finish(self) -> list[Emission]:
        """End of stream: commit and translate everything that is left."""
        t0 = time.perf_counter()
        if len(self.buffer):
            self._transcribe()
        update = self.stabilizer.finish(self._words, self.now)
        return self._submit(update, self._recognised(time.perf_counter() - t0), final=True)

    def close(self) -> None:
        """Stop the translation thread (waiting for its job); a stream can be started again with `reset`."""
        if getattr(self, "_worker", None) is not None:
            self._worker.shutdown(wait=True, cancel_futures=True)
            self._worker = None
        self._pending.clear()

    def _recognised(self, asr_s: float) -> float:
        """Account one chunk's recognition; the CA time it is done (with overlap the recogniser waits only for
        itself, else also for the translation of the chunk before)."""
        self.stats.asr_s += asr_s
        start = max(self.now, self._asr_clock if self.overlap else self._mt_clock)
        self._asr_clock = start + asr_s
        return self._asr_clock

    def _submit(self, update, recognised: float, final: bool) -> list[Emission]:
        """Translate the stabiliser's `update` (on the translation thread with overlap) and return what is done."""
        if self._worker is None:
            self._pending.append(_done(self._translate(update, self.now, recognised, final)))
        else:
            self._pending.append(self._worker.submit(self._translate, update, self.now, recognised, final))
        return self._collect(wait=final)

    def _collect(self, wait: bool = False) -> list[Emission]:
        """The emissions of the finished translation jobs, in order (all of them with `wait`)."""
        out: list[Emission] = []
        while self._pending and (wait or self._pending[0].done()):
            out += self._pending.popleft().result()
        self.emissions += out
        if out and self.on_emit:
            self.on_emit(out)
        return out

    def _transcribe(self) -> None:
        """Re-transcribe the buffer unless no speech arrived since the latest transcription settled."""
        if self._vad is not None:
            since = max(self.buffer_start, self._asr_until - self.vad.pad_s)
            if not self._vad.speech_in(since, self.now + 1.0):
                return  # the buffer holds no new speech: the latest hypothesis stands
        self._words = self.asr.transcribe(self.buffer, self.src_lang, offset=self.buffer_start)
        self._asr_until = self.now
        self.stats.asr_calls += 1

    def _translate(self, update, now: float, recognised: float, final: bool) -> list[Emission]:
        """Translate one stabiliser update heard by stream time `now` (recognised at CA time `recognised`)."""
        t0 = time.perf_counter()
        new: list[tuple[str, int]] = []
        sentences = _split_committed(self.sentence_words + list(update.committed), self.stabilizer.config)
        complete, rest = sentences[:-1], sentences[-1]
        for sent in complete:  # each committed sentence is translated to its end, then the next one starts
            new += self._update(sent, now, final=True)
            self.translator.reset()
            self.stats.sentences += 1
        self.sentence_words = rest
        if final:
            if self.sentence_words or update.partial:
                new += self._update(self.sentence_words + list(update.partial), now, final=True)
                self.stats.sentences += 1
            self.sentence_words = []
        else:
            # The prompt shows every word heard so far; the translator counts as accessible only those that
            # ended before now - holdback (its config), so AlignAtt can see attention on the unstable tail.
            words = self.sentence_words + list(update.partial)
            if words:
                new += self._update(words, now, final=False)
        mt_s = time.perf_counter() - t0
        self.stats.mt_s += mt_s
        self._mt_clock = max(self._mt_clock, recognised) + mt_s
        return [Emission(u, now, self._mt_clock, s) for u, s in new]

    def _update(self, words: list[Word], now: float, final: bool) -> list[tuple[str, int]]:
        # A recognised word may carry detached punctuation ("world —" from Qwen3-ASR): one SourceWord per piece.
        src = [SourceWord(piece, w.end) for w in words for piece in w.text.split()]
        if not src and not final:
            return []
        upd = self.translator.update(src, now, final=final)
        self.translator_updates.append(upd)
        index = self.stats.sentences
        if not self.sentences or self.sentences[-1].index != index:
            self.sentences.append(SentenceRecord(index))
        record = self.sentences[-1]
        record.words = list(words)
        if upd.new_text.strip():
            record.steps.append(SentenceStep(now, upd.n_source, upd.n_accessible, final, upd.new_text))
        return [(u, index) for u in upd.emitted_units]

    def instance(self, reference: str | None = None, source: str | None = None) -> Instance:
        """The whole stream as one long-form SimulEval instance (delays/elapsed in ms), for OmniSTEval."""
        return Instance(
            index=0,
            prediction=self.text,
            delays=[round(e.time_cu * 1000, 1) for e in self.emissions],
            elapsed=[round(e.time_ca * 1000, 1) for e in self.emissions],
            source_length=round(self.now * 1000, 1),
            reference=reference,
            source=source,
        )


def _split_committed(words: list[Word], cfg: StabilizerConfig) -> list[list[Word]]:
    """Committed words as complete sentences plus the (possibly empty) unfinished rest, always last."""
    parts = split_sentences(words, cfg.sentence_final)
    return parts if parts and not is_sentence_final(parts[-1][-1].text, cfg.sentence_final) else parts + [[]]


def run_stream(cascade: SpeechCascade, chunks: Iterable[np.ndarray],
               on_chunk: Callable[[], None] | None = None) -> list[Emission]:
    """Feed every chunk (calling `on_chunk` after each, and after finishing), then finish; return all emissions."""
    for chunk in chunks:
        cascade.process_chunk(chunk)
        if on_chunk:
            on_chunk()
    cascade.finish()
    if on_chunk:
        on_chunk()
    return cascade.emissions


def _done(result) -> Future:
    """A finished Future holding `result` (the translation of a cascade without overlap)."""
    future: Future = Future()
    future.set_result(result)
    return future
