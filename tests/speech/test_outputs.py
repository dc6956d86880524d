"""What a translate run leaves for a person: transcript, subtitles (checked with the `srt` parser), coverage, logs,
and the live terminal view; on a real whisper run of a shipped talk with a tiny random translator."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from datetime import timedelta

import pytest
import srt

from alignheads.base.errors import AlignheadsError
from alignheads.base.languages import target_units
from alignheads.heads.headset import Head
from alignheads.simul.coverage import is_word
from alignheads.simul.evaluation import read_instances
from alignheads.speech.audio import SAMPLE_RATE, iter_chunks, load_audio
from alignheads.speech.cascade import run_stream
from alignheads.speech.outputs import (
    LINGER_S,
    MIN_CUE_S,
    Cue,
    LiveView,
    format_srt,
    format_vtt,
    subtitle_cues,
    write_outputs,
)
from alignheads.speech.pipeline import CascadeConfig, build_cascade
from alignheads.speech.stabilizer import StabilizerConfig
from tests.conftest import ROOT

TALK = ROOT / "data" / "talks" / "talk05.wav"


@pytest.fixture(scope="module")
def finished(whisper, tiny4):
    """talk05's first three sentences through whisper + a tiny AlignAtt translator, 1500 ms chunks."""
    config = CascadeConfig(heads=[Head(2, 1), Head(3, 0, "emit")], stabilizer=StabilizerConfig(chunk_ms=1500))
    cascade = build_cascade(config, lm=tiny4, asr=whisper)
    run_stream(cascade, iter_chunks(load_audio(TALK)[: round(14.4 * SAMPLE_RATE)], config.stabilizer.chunk_samples))
    return cascade


@pytest.fixture(scope="module")
def written(finished, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    summary = write_outputs(out, finished, audio_name="talk05.wav", subtitles="bilingual")
    return out, summary


def test_transcript_has_one_committed_sentence_a_line_with_timed_words(finished, written):
    out, _ = written
    lines = (out / "transcript.txt").read_text(encoding="utf-8").splitlines()
    doc = json.loads((out / "transcript.json").read_text(encoding="utf-8"))
    assert len(lines) == len(doc) == 3 and [d["text"] for d in doc] == lines
    assert lines[0].lower().startswith("let me start with a question")
    assert all(re.search(r"[.?!]$", line) for line in lines)  # each line is a whole committed sentence
    times = [(w["start"], w["end"]) for d in doc for w in d["words"]]
    assert all(a <= b for a, b in times) and times == sorted(times) and times[-1][1] <= 14.4
    assert [w["text"] for w in doc[1]["words"]] == lines[1].split()


def test_srt_parses_with_cues_in_order_and_not_overlapping(finished, written):
    out, _ = written
    cues = list(srt.parse((out / "translation.srt").read_text(encoding="utf-8")))
    translated = [rec for rec in finished.sentences if rec.steps]
    assert len(cues) == len(translated) >= 2
    assert all(c.start < c.end for c in cues)
    assert all(a.end <= b.start for a, b in zip(cues, cues[1:], strict=False))
    for cue, rec in zip(cues, translated, strict=True):  # bilingual: source line, then the translation
        source, target = cue.content.split("\n")
        assert source == " ".join(w.text for w in rec.words)
        assert target.split() == [e.text for e in finished.emissions if e.sentence == rec.index]
        first = min(e.time_ca for e in finished.emissions if e.sentence == rec.index)
        assert cue.start >= timedelta(seconds=round(first, 3))
        linger = max(rec.words[-1].end + LINGER_S, cue.start.total_seconds() + MIN_CUE_S)
        assert cue.end.total_seconds() <= linger + 1e-3
    vtt = (out / "translation.vtt").read_text(encoding="utf-8")
    assert vtt.startswith("WEBVTT\n\n") and vtt.count(" --> ") == len(cues)
    srt_times = re.findall(r"(\d\d:\d\d:\d\d),(\d{3})", (out / "translation.srt").read_text())
    assert re.findall(r"(\d\d:\d\d:\d\d)\.(\d{3})", vtt) == srt_times


def test_instances_log_names_its_source_and_coverage_is_written(finished, written):
    out, summary = written
    inst = read_instances(out / "instances.log", "de")[0]
    assert inst.source == "talk05.wav" and inst.prediction == finished.text
    cov = json.loads((out / "coverage.json").read_text(encoding="utf-8"))
    assert cov["n_sentences"] == len([r for r in finished.sentences if r.words])
    assert summary["flagged_sentences"] == cov["n_flagged"] and "coverage:" in summary["coverage"]
    for row, rec in zip(cov["sentences"], finished.sentences, strict=True):
        assert row["source_words"] == sum(is_word(w.text) for w in rec.words) and row["last_word"] <= len(rec.words)
        assert row["target_units"] == len(target_units(row["target"], "de"))
        assert row["offline"] is not None and row["chrf_offline"] is not None


def test_cue_timing_rule_and_formats():
    from types import SimpleNamespace as NS

    from alignheads.speech.asr import Word
    from alignheads.speech.cascade import Emission, SentenceRecord

    def rec(i, end):
        return SentenceRecord(i, [Word("a", end - 1, end - 0.5), Word("b.", end - 0.5, end)])

    # sentence 0 ends at 3 s, first shown at 2.5 s; sentence 1's first unit comes at 2.8 s (the same chunk)
    ems = [Emission("x", 2.5, 2.5, 0), Emission("y", 2.8, 2.8, 1), Emission("z", 9.0, 9.0, 2)]
    fake = NS(emissions=ems, sentences=[rec(0, 3.0), rec(1, 4.0), rec(2, 5.0)], spaced=True)
    cues = subtitle_cues(fake)
    assert [(c.start, c.end) for c in cues] == [(2.5, 3.5), (3.5, 6.0), (9.0, 10.0)]  # min 1 s; +2 s; min 1 s
    text = format_srt([Cue(3661.5, 3662.25, "src", "tgt")], bilingual=True)
    assert text == "1\n01:01:01,500 --> 01:01:02,250\nsrc\ntgt\n\n"
    assert list(srt.parse(text))[0].content == "src\ntgt"
    vtt = format_vtt([Cue(0.0, 1.0, "a --> b", "c")], bilingual=True)
    assert vtt == "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\na -> b\nc\n\n"
    with pytest.raises(AlignheadsError, match="clock"):
        subtitle_cues(fake, clock="wall")
    with pytest.raises(AlignheadsError, match="subtitles"):
        write_outputs("/nonexistent", fake, subtitles="both")


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_live_view_shows_committed_text_and_a_dimmed_draft_only_on_a_terminal(finished):
    from types import SimpleNamespace as NS

    from alignheads.speech.cascade import Emission

    pipe = io.StringIO()
    LiveView(finished, pipe).close()
    shown = pipe.getvalue()  # the tiny random model emits control characters too: they are not shown
    units = "".join(e.text + " " for e in finished.emissions)
    assert shown == "".join(c for c in units if unicodedata.category(c) != "Cc") + "\n"
    trace = NS(draft_text="Hallo Welt und mehr", emitted_chars=5)
    fake = NS(emissions=[Emission("Hallo", 2.0, 2.1, 0)], spaced=True, translator_updates=[NS(decision_trace=trace)])
    term = Terminal()
    view = LiveView(fake, term)
    view.update()
    assert term.getvalue() == "Hallo " + LiveView.SAVE + LiveView.DIM + "Welt und mehr" + LiveView.RESET
    fake.emissions.append(Emission("Welt", 3.0, 3.1, 0))
    trace.emitted_chars = 10
    view.update()  # the new unit replaces the old draft, the rest of the draft follows dimmed
    assert term.getvalue().endswith(LiveView.RESTORE + LiveView.CLEAR + "Welt " + LiveView.SAVE + LiveView.DIM
                                    + "und mehr" + LiveView.RESET)
    view.close()
    assert term.getvalue().endswith(LiveView.RESTORE + LiveView.CLEAR + "\n")
    pipe = io.StringIO()
    LiveView(fake, pipe).close()
    assert pipe.getvalue() == "Hallo Welt \n"
