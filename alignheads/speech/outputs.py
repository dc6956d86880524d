"""What a speech translation run leaves for a person: transcript, subtitles, coverage and logs.

`write_outputs(out_dir, cascade)` writes, from a finished `SpeechCascade`:

- `transcript.txt` (the committed source, one sentence a line) and `transcript.json` (its words with
  start/end on the stream clock);
- `translation.srt` / `translation.vtt`: one cue per source sentence with its translation (or source and
  translation, `subtitles="bilingual"`), shown from its first emission (computation-aware time, when a live
  viewer would have seen it) until the next cue starts or its source sentence ended `LINGER_S` ago, whichever
  is earlier; a cue stays at least `MIN_CUE_S` and a following cue waits for it, so cues never overlap;
- `coverage.json` (`alignheads.simul.coverage`; chrF against the model's offline translation of each sentence),
  `instances.log` (SimulEval, `source` = the audio's name), `emissions.json`, and `scores.json` given references.
"""

from __future__ import annotations

import shutil
import sys
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ..base.errors import AlignheadsError
from ..base.runfolder import RunFolder
from ..simul.coverage import SentenceCoverage, coverage_summary, format_flagged, sentence_coverage
from ..simul.evaluation import clean_scores, instance_records, score_longform

LINGER_S = 2.0  # a cue stays up to this long after its source sentence ends
MIN_CUE_S = 1.0  # shortest time a cue is shown
SUBTITLE_MODES = ("target", "bilingual")


@dataclass
class Cue:
    """One subtitle: a source sentence and its translation, shown from `start` to `end` (seconds)."""

    start: float
    end: float
    source: str
    target: str

    def text(self, bilingual: bool = False) -> str:
        return f"{self.source}\n{self.target}" if bilingual else self.target


def _sep(cascade) -> str:
    return " " if cascade.spaced else ""


def sentence_translations(cascade) -> list[tuple[Any, str, list]]:
    """(sentence record, its translation, its emissions) for every translated source sentence, in order."""
    by_sentence: dict[int, list] = {}
    for e in cascade.emissions:
        by_sentence.setdefault(e.sentence, []).append(e)
    out = []
    for rec in cascade.sentences:
        ems = by_sentence.get(rec.index, [])
        out.append((rec, _sep(cascade).join(e.text for e in ems), ems))
    return out


def subtitle_cues(cascade, clock: str = "ca") -> list[Cue]:
    """One cue per translated sentence (see the module docstring for the timing rule); `clock` "ca" or "cu"."""
    if clock not in ("ca", "cu"):
        raise AlignheadsError(f"clock must be 'ca' or 'cu', got {clock!r}")
    rows = [(rec, text, ems) for rec, text, ems in sentence_translations(cascade) if ems]
    firsts = [getattr(ems[0], f"time_{clock}") for _, _, ems in rows]
    cues: list[Cue] = []
    for i, (rec, text, _) in enumerate(rows):
        start = max(firsts[i], cues[-1].end if cues else 0.0)
        source_end = rec.words[-1].end if rec.words else start
        end = max(source_end + LINGER_S, start + MIN_CUE_S)
        if i + 1 < len(rows):
            end = min(end, max(firsts[i + 1], start + MIN_CUE_S))
        cues.append(Cue(start, end, " ".join(w.text for w in rec.words), text))
    return cues


def _timestamp(t: float, sep: str) -> str:
    ms = max(0, round(t * 1000))
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}{sep}{ms % 1000:03d}"


def format_srt(cues: Sequence[Cue], bilingual: bool = False) -> str:
    """SubRip text: numbered cues, `HH:MM:SS,mmm --> HH:MM:SS,mmm`."""
    return "".join(f"{i}\n{_timestamp(c.start, ',')} --> {_timestamp(c.end, ',')}\n{c.text(bilingual)}\n\n"
                   for i, c in enumerate(cues, start=1))


def format_vtt(cues: Sequence[Cue], bilingual: bool = False) -> str:
    """WebVTT text: a `WEBVTT` header, then cues `HH:MM:SS.mmm --> HH:MM:SS.mmm`."""
    # "-->" may not appear in a WebVTT cue's text
    return "WEBVTT\n\n" + "".join(
        f"{_timestamp(c.start, '.')} --> {_timestamp(c.end, '.')}\n{c.text(bilingual).replace('-->', '->')}\n\n"
        for c in cues)


def transcript(cascade) -> list[dict[str, Any]]:
    """The committed source: per sentence its text, start, end and words (text, start, end on the stream clock)."""
    return [{"sentence": rec.index, "text": " ".join(w.text for w in rec.words),
             "start": round(rec.words[0].start, 3), "end": round(rec.words[-1].end, 3),
             "words": [{"text": w.text, "start": round(w.start, 3), "end": round(w.end, 3)} for w in rec.words]}
            for rec in cascade.sentences if rec.words]


def coverage(cascade, offline: bool = True) -> list[SentenceCoverage]:
    """Per-sentence coverage of the run (with chrF against the model's offline translations when `offline`)."""
    rows = sentence_translations(cascade)
    sources = [[w.text for w in rec.words] for rec, _, _ in rows]
    refs = [cascade.translator.offline(src) if offline else None for src in sources]
    return [sentence_coverage(rec.index, src, rec.steps, text, cascade.translator.tgt_lang,
                              source=" ".join(src), offline=ref)
            for (rec, text, _), src, ref in zip(rows, sources, refs, strict=True)]


def run_summary(cascade, references: Sequence[str] | None = None, segments=None, stopped: str | None = None,
                source: str | None = None) -> dict[str, Any]:
    """The run's summary (scores.json): timing, counts and, for a complete run with references, quality and
    latency; a run `stopped` early (Ctrl-C, a stream error) is marked `"partial": true` with the reason, unscored."""
    instance = cascade.instance(reference=" ".join(references) if references else None, source=source)
    summary = {"audio_s": round(cascade.now, 3), "chunk_ms": cascade.config.chunk_ms,
               "rtf_ca": round(cascade.stats.rtf, 3), "asr_s": round(cascade.stats.asr_s, 3),
               "mt_s": round(cascade.stats.mt_s, 3), "sentences": cascade.stats.sentences,
               "units": len(cascade.emissions), "partial": stopped is not None,
               "model_dtype": cascade.translator.lm.dtype}
    if stopped is not None:
        summary["stopped"] = stopped
    elif references:
        summary.update(score_longform(instance, list(references), cascade.translator.tgt_lang, segments))
    return summary


def write_outputs(out: RunFolder | str | Path, cascade, *, audio_name: str = "stream", subtitles: str = "target",
                  references: Sequence[str] | None = None, segments=None, offline: bool = True,
                  stopped: str | None = None) -> dict[str, Any]:
    """Write every file of a cascade run into the run folder `out` (a path opens one) as one set: transcript,
    subtitles, coverage, instances.log, emissions.json, scores.json; return the run's summary. `stopped`: why a
    run ended early (kept as partial). A failed write (a full disk) commits scores.json alone, marked partial."""
    if subtitles not in SUBTITLE_MODES:
        raise AlignheadsError(f"subtitles must be one of {', '.join(SUBTITLE_MODES)}, got {subtitles!r}")
    if not isinstance(out, RunFolder):
        with RunFolder(out) as folder:
            return write_outputs(folder, cascade, audio_name=audio_name, subtitles=subtitles, references=references,
                                 segments=segments, offline=offline, stopped=stopped)
    cov = coverage_summary(coverage(cascade, offline=offline))
    summary = run_summary(cascade, references, segments, stopped, source=audio_name)
    try:
        sentences = transcript(cascade)
        out.add("transcript.txt", "".join(s["text"] + "\n" for s in sentences))
        out.add_json("transcript.json", sentences)
        cues = subtitle_cues(cascade)
        bilingual = subtitles == "bilingual"
        out.add("translation.srt", format_srt(cues, bilingual))
        out.add("translation.vtt", format_vtt(cues, bilingual))
        out.add_json("coverage.json", cov)
        reference = " ".join(references) if references else None
        out.add_jsonl("instances.log", instance_records([cascade.instance(reference=reference, source=audio_name)]))
        out.add_json("emissions.json", [vars(e) for e in cascade.emissions])
        out.add_json("scores.json", clean_scores(summary))
    except OSError as e:
        out.commit_partial(clean_scores(summary), e)
    out.commit()
    return {**summary, "asr_calls": cascade.stats.asr_calls, "chunks": cascade.stats.chunks,
            "flagged_sentences": cov["n_flagged"], "coverage": format_flagged(cov)}


class LiveView:
    """The terminal view of a running translation: committed text as it grows and, on a terminal, the current
    draft dimmed after it on the same line (replaced at each chunk). On a pipe or file only committed text.
    Control characters in model output are not shown."""

    DIM, RESET, CLEAR, SAVE, RESTORE = "\x1b[2m", "\x1b[0m", "\x1b[K", "\x1b7", "\x1b8"

    def __init__(self, cascade, stream: TextIO | None = None):
        self.cascade = cascade
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._shown = 0  # emissions written so far
        self._col = 0  # cursor column after the committed text (tty only)
        self._draft = ""  # draft currently on screen (tty only)

    def draft(self) -> str:
        """The latest draft's text beyond what was emitted (what the translator would say next)."""
        if not self.cascade.translator_updates:
            return ""
        trace = self.cascade.translator_updates[-1].decision_trace
        return _printable(" ".join(trace.draft_text[trace.emitted_chars:].split()))

    def update(self) -> None:
        """Write what was emitted since the last call (and, on a terminal, replace the draft)."""
        sep = _sep(self.cascade)
        new = self.cascade.emissions[self._shown:]
        self._shown += len(new)
        text = _printable("".join(e.text + sep for e in new))
        if not self.tty:
            if text:
                self.stream.write(text)
                self.stream.flush()
            return
        draft = self.draft()
        if not text and draft == self._draft:
            return
        width = shutil.get_terminal_size().columns
        for ch in text:
            self._col += _columns(ch)
            if self._col > width:
                self._col = _columns(ch)
        # the draft is cut to the rest of the line, so restoring the saved cursor always returns to its start
        room, shown = width - self._col - 1, ""
        for ch in draft:
            if (room := room - _columns(ch)) < 0:
                break
            shown += ch
        self.stream.write((self.RESTORE + self.CLEAR if self._draft else "") + text + self.SAVE
                          + (f"{self.DIM}{shown}{self.RESET}" if shown else ""))
        self._draft = shown
        self.stream.flush()

    def close(self) -> None:
        """Write the rest, remove the draft and end the line."""
        self.update()
        if self.tty and self._draft:
            self.stream.write(self.RESTORE + self.CLEAR)
        self.stream.write("\n")
        self.stream.flush()


def _printable(text: str) -> str:
    """`text` without control characters (a model can generate an escape sequence; a terminal would obey it)."""
    return "".join(ch for ch in text if unicodedata.category(ch) != "Cc")


def _columns(ch: str) -> int:
    """Terminal columns a character takes (2 for wide East Asian characters)."""
    return 2 if unicodedata.east_asian_width(ch) in "WF" else 1
