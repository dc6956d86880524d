"""The command line end to end on a tiny model: score -> heads-eval -> simulate / policy-eval; clear errors."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # every test here runs the CLI in a subprocess

DEV, TEST = ROOT / "data" / "gold" / "en-de.dev.tsv", ROOT / "data" / "gold" / "en-de.test.tsv"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "alignheads", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    out = tmp_path_factory.mktemp("score")
    r = _cli("score", "--model", "tiny-gemma4", "--data", DEV, "--src", "en", "--tgt", "de", "--limit", "4",
             "--threshold", "0", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    return out, r.stdout


def test_score_writes_csv_headset_and_heatmap(scored):
    out, stdout = scored
    csv = (out / "scores.csv").read_text().splitlines()
    assert {"layer", "head", "ts", "source_acc", "gold_mass", "aer", "n_tokens"} <= set(csv[0].split(","))
    heads = json.loads((out / "translation_heads_tiny-gemma4_en-de.json").read_text())
    assert heads["token_alignment_heads"] and heads["calibration"]["n_pairs_scored"] == 4
    assert (out / "ts_heatmap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Baselines" in stdout and "diagonal" in stdout


def test_heads_eval_prints_one_json_object(scored):
    out, _ = scored
    r = _cli("heads-eval", "--heads", out / "translation_heads_tiny-gemma4_en-de.json", "--model", "tiny-gemma4",
             "--data", TEST, "--src", "en", "--tgt", "de", "--limit", "3", "--top-k", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads(r.stdout)
    assert {"ts_mean", "source_acc_mean", "aer", "precision", "recall", "diagonal"} <= set(result)
    assert len(result["heads"]) <= 2 and result["n_pairs"] == 3


def test_simulate_and_policy_eval(scored, tmp_path):
    out, _ = scored
    heads = out / "translation_heads_tiny-gemma4_en-de.json"
    r = _cli("simulate", "--model", "tiny-gemma4", "--heads", heads, "--data", TEST, "--limit", "2",
             "--max-draft", "4", "--final-max-tokens", "8", "--out", tmp_path / "sim")
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "sim" / "instances.log").is_file() and (tmp_path / "sim" / "scores.json").is_file()
    r = _cli("policy-eval", "--model", "tiny-gemma4", "--heads", heads, "--data", TEST, "--limit", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    assert json.loads(r.stdout)


def test_bad_input_is_a_one_line_error(tmp_path):
    r = _cli("score", "--model", "tiny-gemma3", "--data", DEV, "--src", "en", "--tgt", "it", "--out", tmp_path)
    assert r.returncode == 2 and "the file says 'de'" in r.stderr and "Traceback" not in r.stderr
    bad = tmp_path / "bad.tsv"
    bad.write_text("a b\tc d\t0-0 1-7\n")
    r = _cli("data", "validate", bad, "--src", "en", "--tgt", "de")
    assert r.returncode == 2 and "bad.tsv, line 1" in r.stderr and "out of range" in r.stderr
    r = _cli("data", "validate", DEV, "--strict")
    assert r.returncode == 0 and "36 pairs" in r.stdout


def test_align_writes_silver_data_that_score_accepts(tmp_path):
    pytest.importorskip("simalign")
    from alignheads.corpus.encoder import EncoderUnavailable, prepare_encoder

    try:
        prepare_encoder()
    except EncoderUnavailable as e:
        pytest.skip(f"embedded encoder unavailable: {e}")
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("We show the results .\tWir zeigen die Ergebnisse .\nThank you .\tDanke .\n")
    out = tmp_path / "silver.tsv"
    r = _cli("align", "--data", pairs, "--src", "en", "--tgt", "de", "--out", out)
    assert r.returncode == 0, r.stderr[-3000:]
    r = _cli("score", "--model", "tiny-gemma3", "--data", out, "--src", "en", "--tgt", "de", "--threshold", "0",
             "--out", tmp_path / "s")
    assert r.returncode == 0, r.stderr[-3000:]
    heads = json.loads((tmp_path / "s" / "translation_heads_tiny-gemma3_en-de.json").read_text())
    assert heads["calibration"]["alignments"] == "silver" and heads["calibration"]["silver"]["aligner"] == "simalign"



def test_every_corpus_command_runs_on_the_shared_zh_en_file_as_en_zh(shared_gold, tmp_path, scored):
    """score, heads-eval, simulate, policy-eval, align and data validate read the zh-en gold reversed."""
    data = ["--data", shared_gold / "zh-en.tsinghua-dev.src-tgt", "--gold", shared_gold / "zh-en.tsinghua-dev.gold",
            "--src", "en", "--tgt", "zh", "--swap", "--limit", "2"]
    model = ["--model", "tiny-gemma4", "--threads", "1"]
    r = _cli("data", "validate", *data)
    assert r.returncode == 0 and "2 pairs" in r.stdout, r.stderr[-2000:]
    r = _cli("score", *model, *data, "--threshold", "0", "--out", tmp_path / "s")
    assert r.returncode == 0, r.stderr[-2000:]
    heads = tmp_path / "s" / "translation_heads_tiny-gemma4_en-zh.json"
    assert json.loads(heads.read_text())["src_lang"] == "en"
    r = _cli("heads-eval", "--heads", heads, *model, *data, "--simalign-encoder", "none")
    assert r.returncode == 0 and json.loads(r.stdout)["n_pairs"] == 2, r.stderr[-2000:]
    r = _cli("simulate", "--heads", heads, *model, *data, "--max-draft", "3", "--final-max-tokens", "6",
             "--out", tmp_path / "sim")
    assert r.returncode == 0 and json.loads(r.stdout)["tgt_lang"] == "zh", r.stderr[-2000:]
    r = _cli("policy-eval", "--heads", heads, *model, *data, "--max-draft", "3")
    assert r.returncode == 0 and json.loads(r.stdout)["src_lang"] == "en", r.stderr[-2000:]
    r = _cli("align", *data, "--out", tmp_path / "silver.tsv")
    if "encoder" in r.stderr and "unavailable" in r.stderr:
        pytest.skip(f"embedded encoder unavailable: {r.stderr[-300:]}")
    assert r.returncode == 0, r.stderr[-2000:]
    from alignheads.corpus.formats import read_corpus

    silver = read_corpus(tmp_path / "silver.tsv")
    assert (silver.src_lang, silver.tgt_lang, len(silver)) == ("en", "zh", 2)


# ---------------------------------------------------------------- what happens when things go wrong

TALK = ROOT / "data" / "talks" / "talk04.wav"
TINY = ["--model", "tiny-gemma3", "--threads", "1"]


def _main(*args) -> int:
    from alignheads.cli.commands import main

    return main([str(a) for a in args])


def _score_args(out, *extra):
    return ["score", *TINY, "--data", DEV, "--src", "en", "--tgt", "de", "--threshold", "0", "--out", out, *extra]


DATA = ["--data", DEV, "--src", "en", "--tgt", "de"]


@pytest.mark.parametrize(("argv", "flag"), [
    (["heads-eval", "--heads", "h.json", *DATA, "--top-k", "0"], "--top-k"),  # reported: crashed after scoring
    (["heads-eval", "--heads", "h.json", *DATA, "--top-k", "-1"], "--top-k"),  # reported: dropped the last head
    (["score", *DATA, "--out", "o", "--limit", "0"], "--limit"),  # reported: scored everything
    (["score", *DATA, "--out", "o", "--limit", "-2"], "--limit"),
    (["score", *DATA, "--out", "o", "--k", "0"], "--k"),
    (["score", *DATA, "--out", "o", "--threshold", "nan"], "--threshold"),
    (["score", *DATA, "--out", "o", "--dtype", "float99"], "--dtype"),
    (["score", *DATA, "--out", "o", "--threads", "0"], "--threads"),
    (["simulate", *DATA, "--out", "o", "--pace", "-1"], "--pace"),
    (["simulate", *DATA, "--out", "o", "--max-draft", "0"], "--max-draft"),
    (["simulate", *DATA, "--out", "o", "--holdback", "-0.5"], "--holdback"),
    (["translate", "a.wav", "--tgt", "de", "--out", "o", "--chunk-ms", "0"], "--chunk-ms"),
])
def test_flags_out_of_range_are_usage_errors_before_anything_runs(argv, flag, capsys):
    with pytest.raises(SystemExit) as e:
        _main(*argv)
    assert e.value.code == 2 and f"error: argument {flag}" in capsys.readouterr().err


@pytest.fixture
def no_model_load(monkeypatch):
    """Fail the test if a model is loaded: the error must come before."""
    def boom(*a, **k):
        raise AssertionError("a model was loaded before the bad input was found")

    monkeypatch.setattr("alignheads.model.loader.load_model", boom)
    monkeypatch.setattr("alignheads.speech.pipeline.load_model", boom)


def test_everything_a_run_needs_is_checked_before_the_model_loads(tmp_path, scored, capsys, no_model_load):
    """Reported: --out that is a file, an unwritable --out, a missing --ref were found after the whole run."""
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    (tmp_path / "a-folder").mkdir()
    heads = scored[0] / "translation_heads_tiny-gemma4_en-de.json"
    cases = [
        (_score_args(a_file), "a-file: the --out folder is a file, not a folder"),
        (_score_args("/proc/alignheads-out"), "/proc/alignheads-out: cannot write into the --out folder"),
        (["translate", TALK, *TINY, "--heads", heads, "--tgt", "de", "--ref", tmp_path / "nope.txt",
          "--out", tmp_path / "t"], "nope.txt: reference file not found"),
        (["translate", TALK, *TINY, "--policy", "wait-k", "--tgt", "de", "--ref", tmp_path / "a-folder",
          "--out", tmp_path / "t2"], "reference file is a folder"),
        (["translate", tmp_path / "none.wav", *TINY, "--policy", "wait-k", "--tgt", "de", "--out", tmp_path / "t3"],
         "none.wav: audio file not found"),
        (["simulate", "--heads", tmp_path / "nope.json", *TINY, "--data", TEST, "--out", tmp_path / "s"],
         "nope.json: no such head-set file"),
        (["policy-eval", "--heads", heads, *TINY, "--data", TEST, "--out", tmp_path], "is a folder; give a file name"),
        ([*_score_args(tmp_path / "o"), "--query", "own,emitt"], "queries must be among own, emit"),
        ([*_score_args(tmp_path / "o"), "--device", "gpu"], "--device 'gpu' is not a device"),
    ]
    for argv, message in cases:
        assert _main(*argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and err.startswith("alignheads: error: ") and err.count("\n") == 1, err


def test_error_types_map_to_one_line_and_exit_codes(capsys):
    """Reported: only AlignheadsError was a message; every other OSError, ValueError or Ctrl-C a traceback."""
    import argparse

    from alignheads.cli.commands import Terminated, _run

    for exc, code, text in [(OSError(28, "No space left on device", "out/x"), 2, "No space left on device: 'out/x'"),
                            (ValueError("bad value"), 2, "bad value"), (KeyboardInterrupt(), 130, "interrupted"),
                            (Terminated(), 143, "terminated"), (MemoryError(), 2, "out of memory")]:
        def fail(args, exc=exc):
            raise exc

        assert _run(argparse.Namespace(func=fail)) == code
        err = capsys.readouterr().err
        assert text in err and len(err.strip().splitlines()) == 1, err
    def bug(args):
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):  # a bug keeps its traceback
        _run(argparse.Namespace(func=bug))


def test_debug_anywhere_on_the_line_shows_the_traceback(tmp_path):
    from alignheads.base.errors import AlignheadsError

    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    with pytest.raises(AlignheadsError, match="is a file"):
        _main(*_score_args(a_file), "--debug")


def _start(argv):
    # A shell starts background jobs with SIGINT ignored, and children inherit that: give the CLI the default
    # handler a terminal user's process has, so that SIGINT means Ctrl-C here wherever pytest runs.
    return subprocess.Popen([sys.executable, "-m", "alignheads", *map(str, argv)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _wait_for(stream, marker: str) -> str:
    """Read `stream` until the regular expression `marker` matches what was read."""
    seen = ""
    while not re.search(marker, seen):
        ch = stream.read(1)
        assert ch, f"exited before {marker!r}: {seen[-2000:]}"
        seen += ch
    return seen


@pytest.mark.parametrize(("sig", "code", "word"), [(signal.SIGINT, 130, "interrupted"),
                                                   (signal.SIGTERM, 143, "terminated")])
def test_ctrl_c_or_sigterm_during_score_exits_with_one_line_and_leaves_no_file(tmp_path, sig, code, word):
    """Reported: Ctrl-C was a traceback. `score` writes its files only at the end, atomically."""
    out = tmp_path / "out"
    p = _start(_score_args(out))
    seen = _wait_for(p.stderr, "scoring heads")  # the command is at work (tqdm writes to stderr)
    p.send_signal(sig)
    rest = p.communicate(timeout=120)[1]
    assert p.returncode == code, (seen + rest)[-2000:]
    assert f"alignheads: {word}" in rest and "Traceback" not in rest
    assert list(out.iterdir()) == []  # created (and checked) up front, still empty


def test_ctrl_c_during_translate_keeps_what_was_emitted(tmp_path):
    """Reported: Ctrl-C during translate lost everything, with a traceback."""
    out = tmp_path / "t"
    p = _start(["translate", TALK, *TINY, "--policy", "wait-k", "--wait-k", "1", "--tgt", "de", "--chunk-ms", "1000",
                "--ref", "auto", "--out", out])
    _wait_for(p.stdout, " ")  # the first emitted unit has been printed
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130 and "alignheads: interrupted" in err and "Traceback" not in err, err[-2000:]
    scores = json.loads((out / "scores.json").read_text())
    assert scores["partial"] is True and scores["stopped"] == "interrupted" and "bleu" not in scores
    emitted = json.loads((out / "emissions.json").read_text())
    assert len(emitted) == scores["units"] >= 1
    from alignheads.simul.evaluation import read_instances

    assert len(read_instances(out / "instances.log", "de")[0].delays) == len(emitted)


def test_ctrl_c_during_simulate_keeps_the_finished_sentences(tmp_path):
    """Ctrl-C during simulate keeps every finished sentence and marks the scores partial."""
    out = tmp_path / "s"
    p = _start(["simulate", *TINY, "--policy", "wait-k", "--data", TEST, "--max-draft", "3",
                "--final-max-tokens", "6", "--no-omnisteval", "--out", out])
    _wait_for(p.stderr, r"\| ([2-9]|\d\d)/")  # tqdm: two sentences done (it may skip a count)
    p.send_signal(signal.SIGINT)
    err = p.communicate(timeout=120)[1]
    assert p.returncode == 130 and "alignheads: interrupted" in err, err[-2000:]
    scores = json.loads((out / "scores.json").read_text())
    assert scores["partial"] is True and scores["n_pairs"] >= 2 and scores["n_pairs_planned"] == 36
    assert len((out / "instances.log").read_text().splitlines()) == scores["n_pairs"]


@pytest.mark.slow  # a CLI subprocess
def test_closed_stdin_is_a_clear_error(tmp_path):
    """Reported: a closed stdin gave an AttributeError traceback."""
    r = subprocess.run([sys.executable, "-m", "alignheads", "translate", "-", *TINY, "--policy", "wait-k",
                        "--tgt", "de", "--out", tmp_path / "o"], capture_output=True, text=True,
                       preexec_fn=lambda: os.close(0))
    assert r.returncode == 2 and "stdin) is closed" in r.stderr and "Traceback" not in r.stderr, r.stderr[-2000:]


class _Stdin:
    """sys.stdin stand-in: PCM bytes, then an odd byte or a read error (a dropped connection)."""

    name = "<stdin>"

    def __init__(self, pcm: bytes, error: OSError | None = None):
        self.buffer = io.BytesIO(pcm)
        if error is not None:
            read = self.buffer.read

            def failing(n=-1):
                block = read(n)
                if not block:
                    raise error
                return block

            self.buffer.read = failing


def _pcm(seconds: float) -> bytes:
    from alignheads.speech.audio import SAMPLE_RATE, load_audio

    return (load_audio(TALK)[: int(seconds * SAMPLE_RATE)] * 32767).astype("<i2").tobytes()


def test_pcm_on_stdin_ending_mid_sample_warns_and_keeps_the_run(tmp_path, monkeypatch, capsys):
    """Reported: found only after the whole run, with nothing written."""
    monkeypatch.setattr(sys, "stdin", _Stdin(_pcm(3) + b"\x01"))
    assert _main("translate", "-", *TINY, "--policy", "wait-k", "--tgt", "de", "--out", tmp_path / "o") == 0
    err = capsys.readouterr().err
    assert "alignheads: warning: <stdin>: PCM stream ended mid-sample" in err
    assert json.loads((tmp_path / "o" / "scores.json").read_text())["partial"] is False


def test_a_stream_error_during_translate_keeps_the_partial_output(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", _Stdin(_pcm(6), ConnectionResetError(104, "Connection reset by peer")))
    assert _main("translate", "-", *TINY, "--policy", "wait-k", "--wait-k", "1", "--tgt", "de",
                 "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert "alignheads: error: [Errno 104] Connection reset by peer" in err and "kept the partial" in err
    scores = json.loads((tmp_path / "o" / "scores.json").read_text())
    assert scores["partial"] is True and scores["stopped"].startswith("ConnectionResetError")
    assert scores["audio_s"] == 5.95  # 7 whole 850 ms chunks arrived; the last 50 ms waited for an 8th


def test_small_misuses_get_one_clear_line(tmp_path, capsys):
    """A folder as AUDIO, a port past 65535 (a usage error before any model loads), a float WAV far from full
    scale (a warning, the run goes on)."""
    import numpy as np
    import soundfile as sf

    from alignheads.speech.audio import load_audio

    assert _main(*["translate", str(tmp_path), "--tgt", "de", "--policy", "wait-k", "--out", str(tmp_path / "o")]) == 2
    assert "is a folder, not an audio file" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _main("serve", "--heads", "h.json", "--port", "70000")
    assert "a port is 0 to 65535" in capsys.readouterr().err
    loud = tmp_path / "loud.wav"
    sf.write(loud, (np.sin(np.arange(16000) / 5) * 1e6).astype(np.float32), 16000, subtype="FLOAT")
    with pytest.warns(UserWarning, match="far outside"):
        load_audio(loud)

