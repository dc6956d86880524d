"""The speech cascade: real whisper ASR + stabiliser + translator (tiny random LLM), times and logs."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from alignheads.base.errors import AlignheadsError
from alignheads.base.languages import target_units
from alignheads.heads.headset import Head
from alignheads.simul.evaluation import read_instances
from alignheads.simul.translator import TranslatorConfig
from alignheads.speech.audio import SAMPLE_RATE, iter_chunks, load_audio
from alignheads.speech.cascade import run_stream
from alignheads.speech.pipeline import CascadeConfig, build_cascade
from alignheads.speech.stabilizer import StabilizerConfig
from alignheads.speech.talks import talk_references
from tests.conftest import AVX512, ROOT, SHORT_WINDOW_MISHEARS
from tests.speech.test_asr import norm_tokens, wer

TALK = ROOT / "data" / "talks" / "talk05.wav"


@pytest.fixture(scope="module")
def stream_run(whisper, tiny4):
    config = CascadeConfig(heads=[Head(2, 1), Head(3, 0, "emit")], stabilizer=StabilizerConfig(chunk_ms=1500))
    seen = []
    cascade = build_cascade(config, lm=tiny4, asr=whisper, on_emit=seen.append)
    audio = load_audio(TALK)[: 11 * SAMPLE_RATE]
    run_stream(cascade, iter_chunks(audio, config.stabilizer.chunk_samples))
    return cascade, seen


def test_emissions_are_append_only_with_consistent_times(stream_run):
    cascade, seen = stream_run
    em = cascade.emissions
    assert em and [e for batch in seen for e in batch] == em  # everything printed as it was emitted
    cu = [e.time_cu for e in em]
    ca = [e.time_ca for e in em]
    assert cu == sorted(cu) and ca == sorted(ca)
    assert all(c >= u for c, u in zip(ca, cu, strict=True))  # computation only ever adds delay
    assert cu[0] >= cascade.config.min_start_s and cu[-1] <= cascade.now + 1e-9
    assert cascade.stats.sentences >= 2 and cascade.stats.rtf > 0
    assert [e.sentence for e in em] == sorted(e.sentence for e in em)
    # the unstable tail is in the prompt but not accessible: that is what AlignAtt's border looks at
    assert any(u.n_accessible < u.n_source for u in cascade.translator_updates)


def test_one_holdback_setting(whisper, tiny3):
    config = CascadeConfig(policy="wait-k", translator=TranslatorConfig(holdback=0.4))
    assert build_cascade(config, lm=tiny3, asr=whisper).translator.config.holdback == 0.4
    assert CascadeConfig().translator.holdback == 0.25  # the cascade shows the ASR tail but holds it back
    with pytest.raises(AlignheadsError, match="needs alignment heads"):
        build_cascade(CascadeConfig(), lm=tiny3, asr=whisper)


def test_instance_log_matches_the_emitted_units(stream_run, tmp_path):
    from alignheads.simul.evaluation import write_instances

    cascade, _ = stream_run
    inst = cascade.instance()
    assert len(inst.delays) == len(inst.elapsed) == len(target_units(inst.prediction, "de"))
    assert inst.source_length == pytest.approx(11000)
    write_instances(tmp_path / "instances.log", [inst])
    assert read_instances(tmp_path / "instances.log", "de")[0].prediction == inst.prediction


def test_talk_references_align_with_the_gold_test_set():
    refs, segments = talk_references(TALK, "zh")
    assert len(refs) == len(segments) == 6 and all(refs)
    assert all(d > 0 for _, d in segments) and [o for o, _ in segments] == sorted(o for o, _ in segments)


def test_silence_and_tiny_streams_do_not_crash(whisper, tiny3):
    config = CascadeConfig(policy="wait-k", stabilizer=StabilizerConfig(chunk_ms=1500))
    cascade = build_cascade(config, lm=tiny3, asr=whisper)
    run_stream(cascade, iter_chunks(np.zeros(3 * SAMPLE_RATE, dtype=np.float32), 24000))
    assert cascade.emissions == [] and cascade.text == ""
    cascade.reset()
    run_stream(cascade, [np.zeros(800, dtype=np.float32)])  # 50 ms, below the 2 s start
    assert cascade.emissions == []


def _noise(seconds: float, dbfs: float) -> np.ndarray:
    return (np.random.default_rng(0).standard_normal(round(seconds * SAMPLE_RATE)) * 10 ** (dbfs / 20)).astype(
        np.float32)


@pytest.mark.parametrize("audio", [np.zeros(20 * SAMPLE_RATE, np.float32), _noise(20, -50)],
                         ids=["silence", "white-noise-50dBFS"])
def test_silence_and_quiet_noise_emit_nothing_and_are_not_transcribed(whisper, tiny3, audio):
    cascade = build_cascade(CascadeConfig(policy="wait-k", stabilizer=StabilizerConfig(chunk_ms=850)), lm=tiny3,
                            asr=whisper)
    run_stream(cascade, iter_chunks(audio, cascade.config.chunk_samples))
    assert cascade.emissions == [] and cascade.sentences == [] and cascade.stats.asr_calls == 0
    assert len(cascade.buffer) <= (cascade.vad.pad_ms / 1000 + 0.85) * SAMPLE_RATE  # silence is not kept


def test_speech_after_a_five_second_pause_is_translated_without_transcribing_the_pause(whisper, tiny4):
    talk = load_audio(TALK)
    first, second = talk[: round(2.4 * SAMPLE_RATE)], talk[round(2.4 * SAMPLE_RATE): round(7.2 * SAMPLE_RATE)]
    audio = np.concatenate([first, np.zeros(5 * SAMPLE_RATE, np.float32), second])
    cfg = StabilizerConfig(chunk_ms=850)
    cascade = build_cascade(CascadeConfig(policy="wait-k", stabilizer=cfg), lm=tiny4, asr=whisper)
    calls = []
    for chunk in iter_chunks(audio, cfg.chunk_samples):
        before = cascade.stats.asr_calls
        cascade.process_chunk(chunk)
        calls.append((cascade.now, cascade.stats.asr_calls > before))
    cascade.finish()
    heard = " ".join(w.text for rec in cascade.sentences for w in rec.words)
    refs = ["Let me start with a question.", "Do large language models know which source words they are translating?"]
    assert [len(rec.words) > 0 for rec in cascade.sentences] == [True, True]
    pause = (2.4 + 0.3 + 0.85, 7.4)  # the pause, after the one transcription that settles the first sentence
    assert not any(called for t, called in calls if pause[0] + 0.85 <= t <= pause[1])
    assert any(called for t, called in calls if t > 7.4)
    assert any(e.sentence == 1 and e.time_cu > 7.4 for e in cascade.emissions)  # the second sentence is translated
    assert all(e.time_cu < 7.4 for e in cascade.emissions if e.sentence == 0)  # translated during the pause
    error = wer(norm_tokens(" ".join(refs)), norm_tokens(heard))
    if not AVX512 and error >= 0.2:
        pytest.xfail(SHORT_WINDOW_MISHEARS)
    assert error < 0.2, heard


def _cli(*args, **kw):
    return subprocess.run([sys.executable, "-m", "alignheads", *args], capture_output=True, text=True, **kw)


@pytest.mark.slow
def test_translate_cli_from_stdin_pcm_and_bad_audio(tmp_path):
    pcm = (load_audio(TALK)[: 5 * SAMPLE_RATE] * 32767).astype("<i2").tobytes()
    r = subprocess.run([sys.executable, "-m", "alignheads", "translate", "-", "--model", "tiny-gemma3",
                        "--policy", "wait-k", "--tgt", "de", "--chunk-ms", "1500", "--subtitles", "bilingual",
                        "--out", str(tmp_path / "o")], input=pcm, capture_output=True)
    assert r.returncode == 0, r.stderr.decode()[-2000:]
    out = tmp_path / "o"
    for name in ("instances.log", "emissions.json", "transcript.txt", "transcript.json", "translation.srt",
                 "translation.vtt", "coverage.json"):
        assert (out / name).is_file(), name
    assert "coverage: " in r.stdout.decode() and "sentences flagged" in r.stdout.decode()
    assert read_instances(out / "instances.log")[0].source == "stdin"
    heard = (out / "transcript.txt").read_text(encoding="utf-8")
    assert heard.lower().startswith("let me start with a question")
    assert heard.splitlines()[0] in (out / "translation.srt").read_text(encoding="utf-8")  # bilingual cue
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00not really a wav")
    r = _cli("translate", str(bad), "--model", "tiny-gemma3", "--policy", "wait-k", "--tgt", "de",
             "--out", str(tmp_path / "b"))
    assert r.returncode == 2 and "bad.wav" in r.stderr and "Traceback" not in r.stderr
    r = _cli("translate", str(TALK), "--model", "tiny-gemma3", "--tgt", "de", "--out", str(tmp_path / "c"))
    assert r.returncode == 2 and "--heads" in r.stderr


def test_the_cascade_vad_gate_keeps_silence_from_the_recogniser(tiny_asr, tiny3):
    """Voice activity gates the recogniser: through 5 s of silence the cascade never calls it (with the gate off it
    would transcribe every chunk after the first 2 s); when real speech follows, it does. (The random recogniser's
    words carry spaces and punctuation, which the cascade splits into source words as the server does.)"""
    from alignheads.speech.audio import SAMPLE_RATE, iter_chunks, load_audio
    from alignheads.speech.pipeline import CascadeConfig, build_cascade
    from alignheads.speech.stabilizer import StabilizerConfig
    from alignheads.speech.talks import TALKS_DIR

    cascade = build_cascade(CascadeConfig(policy="wait-k", stabilizer=StabilizerConfig(chunk_ms=850)), lm=tiny3,
                            asr=tiny_asr)
    speech = load_audio(TALKS_DIR / "talk04.wav")[: 3 * SAMPLE_RATE]
    audio = np.concatenate([np.zeros(5 * SAMPLE_RATE, np.float32), speech])
    calls = []
    for chunk in iter_chunks(audio, cascade.config.chunk_samples):
        cascade.process_chunk(chunk)
        calls.append((cascade.now, cascade.stats.asr_calls))
    cascade.close()
    assert [n for t, n in calls if t <= 5.0] == [0] * 5
    assert calls[-1][1] > 0


def test_overlapping_recognition_and_translation_changes_no_output(tiny_asr, tiny3):
    """The two-stage pipeline (update k translated while chunk k+1 is recognised) hands the translator the same
    updates in the same order: identical units, sentences and CU times; CA times follow the pipeline clock."""
    from alignheads.speech.talks import TALKS_DIR

    audio = load_audio(TALKS_DIR / "talk04.wav")[: 9 * SAMPLE_RATE]
    runs = {}
    for overlap in (False, True):
        cfg = CascadeConfig(policy="alignatt", heads=[Head(2, 1), Head(5, 0, "emit")],
                            stabilizer=StabilizerConfig(chunk_ms=850), overlap=overlap)
        cascade = build_cascade(cfg, lm=tiny3, asr=tiny_asr)
        run_stream(cascade, iter_chunks(audio, cfg.stabilizer.chunk_samples))
        runs[overlap] = cascade
        cascade.close()
    seq, ovl = runs[False], runs[True]
    assert [(e.text, e.time_cu, e.sentence) for e in ovl.emissions] == [(e.text, e.time_cu, e.sentence)
                                                                          for e in seq.emissions]
    assert ovl.emissions and [len(s.words) for s in ovl.sentences] == [len(s.words) for s in seq.sentences]
    assert all(e.time_ca >= e.time_cu for e in ovl.emissions)
    assert ovl.stats.overlap and ovl.stats.rtf == max(ovl.stats.asr_s, ovl.stats.mt_s) / ovl.stats.audio_s
    assert seq.stats.rtf == seq.stats.rtf_sum


def test_ten_seconds_without_speech_are_reported_once(tiny_asr, tiny3):
    """Raw PCM of the wrong rate or format cannot be detected in general; ten seconds in which voice activity finds
    no speech are said once (a warning), and the stream goes on."""
    import warnings

    cascade = build_cascade(CascadeConfig(policy="wait-k", stabilizer=StabilizerConfig(chunk_ms=850)), lm=tiny3,
                            asr=tiny_asr)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_stream(cascade, iter_chunks(np.zeros(21 * SAMPLE_RATE, np.float32), cascade.config.chunk_samples))
    cascade.close()
    said = [w for w in caught if "no speech in the first 10 s" in str(w.message)]
    assert len(said) == 1 and cascade.stats.chunks > 20
