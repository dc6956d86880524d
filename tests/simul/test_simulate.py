"""Text-stream simulation, scoring, sweeps and the oracle policy evaluation (tiny models; shipped gold data)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from alignheads.base.errors import AlignheadsError, DataFormatError
from alignheads.cli.commands import build_parser
from alignheads.cli.commands import main as cli_main
from alignheads.corpus.formats import read_corpus
from alignheads.heads.headset import Head
from alignheads.simul.evaluation import read_instances, score_instances
from alignheads.simul.oracle import _emission_steps, _variant_stats, policy_eval
from alignheads.simul.policy import AlignAttConfig
from alignheads.simul.simulate import SimulationConfig, paced_times, read_word_times, simulate
from alignheads.simul.sweep import CURVE_COLUMNS, matched_latency, quality_latency
from alignheads.simul.translator import TranslatorConfig

ROOT = Path(__file__).resolve().parents[2]
HEADS = [Head(2, 1), Head(5, 0, "emit"), Head(0, 3)]
FAST = TranslatorConfig(alignatt=AlignAttConfig(border=-1, max_draft=5), final_max_tokens=10)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def de2():
    return read_corpus(ROOT / "data" / "gold" / "en-de.test.tsv").head(2)


def quiet(**kw) -> SimulationConfig:
    return SimulationConfig(progress=False, **kw)


def test_simulate_writes_scored_logs(tiny3, de2, tmp_path):
    res = simulate(tiny3, de2, HEADS, "alignatt", FAST, quiet(), out_dir=tmp_path)
    ins = read_instances(tmp_path / "instances.log", "de")  # checks one delay per target word
    assert len(ins) == 2
    for i, pair in zip(ins, de2, strict=True):
        assert i.source_length == len(pair.src_words)
        assert all(1 <= d <= i.source_length for d in i.delays)
        assert all(e >= d for d, e in zip(i.delays, i.elapsed, strict=True))  # compute time only adds
        assert i.reference and i.source
    scores = json.loads((tmp_path / "scores.json").read_text())
    for key in ("bleu", "chrf", "al_cu", "laal_cu", "yaal_cu", "al_ca", "laal_ca", "yaal_ca"):
        assert key in scores
    assert scores["policy"] == "alignatt" and scores["param"] == -1
    assert 0 < scores["stats"]["prefill_saved"] < 1
    decisions = [json.loads(x) for x in (tmp_path / "decisions.jsonl").read_text().splitlines()]
    assert sum(d["final"] for d in decisions) == 2
    assert {"stop_reason", "tokens", "n_accessible", "compute_s"} <= set(decisions[0])
    trace = res.runs[0].trace_frame()
    assert len(trace) == len(res.instances[0].prediction.split())


def test_an_error_part_way_keeps_the_finished_sentences_marked_partial(tiny3, de2, tmp_path):
    """A sentence past the context limit stops the run; the sentences before it are written, scored, partial."""
    from alignheads.corpus.pairs import Corpus, SentencePair

    long = SentencePair("long", tuple(f"house{i}" for i in range(80)), ("Haus",), frozenset(), frozenset())
    corpus = Corpus([de2[0], long, de2[1]], "en", "de", name="mixed")
    config = replace(FAST, context_limit=400)
    with pytest.raises(AlignheadsError, match="context limit"):
        simulate(tiny3, corpus, HEADS, "alignatt", config, quiet(use_omnisteval=False), out_dir=tmp_path)
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["partial"] is True and scores["n_pairs"] == 1 and scores["n_pairs_planned"] == 3
    assert "context limit" in scores["stopped"] and len(read_instances(tmp_path / "instances.log")) == 1
    with pytest.raises(AlignheadsError, match="context limit"):  # without out_dir nothing is kept: plain error
        simulate(tiny3, Corpus([long], "en", "de"), HEADS, "alignatt", config, quiet())


def test_stream_clock_spans_sentences(tiny3, de2):
    """The second sentence starts on the stream clock after the first: its first update still sees one word."""
    res = simulate(tiny3, de2, None, "wait-k", FAST, quiet(pace=0.5, gap=2.0))
    first, second = res.runs
    assert second.start == pytest.approx(first.end_times[-1] + 2.0)
    assert second.updates[0].n_accessible == 1
    assert second.updates[0].time == pytest.approx(second.start + 0.5)  # absolute, not 0.5
    assert second.instance.delays == sorted(second.instance.delays)


def test_own_latency_code_agrees_with_omnisteval(tiny3, de2):
    res = simulate(tiny3, de2, None, "cut-last", FAST, quiet(unit="ms"))
    ins = res.instances
    assert ins[0].source_length == pytest.approx(len(de2[0].src_words) * 400.0)
    omni = score_instances(ins, "de", use_omnisteval=True)
    own = score_instances(ins, "de", use_omnisteval=False)
    for key in ("al_cu", "laal_cu", "yaal_cu", "al_ca", "laal_ca", "yaal_ca"):
        a, b = omni[key], own[key]
        assert (a is None or math.isnan(a)) == (b is None or math.isnan(b)), key
        if a is not None and not math.isnan(a):
            assert a == pytest.approx(b, rel=1e-9, abs=1e-9), key


def test_word_times(tiny3, de2, tmp_path):
    path = tmp_path / "times.jsonl"
    lines = [{"id": p.id, "end_times": [0.3 * (i + 1) for i in range(len(p.src_words))]} for p in de2]
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    times = read_word_times(path)
    res = simulate(tiny3, de2, None, "wait-k", FAST, quiet(unit="ms"), word_times=times)
    assert res.instances[1].source_length == pytest.approx(0.3 * len(de2[1].src_words) * 1000)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "end_times": [1.0, 0.5]}\n')
    with pytest.raises(DataFormatError, match="line 1.*must not decrease"):
        read_word_times(bad)
    bad.write_text('{"id": "a", "end_times": [1.0]}\nnot json\n')
    with pytest.raises(DataFormatError, match="line 2"):
        read_word_times(bad)
    with pytest.raises(AlignheadsError, match="no word times"):
        simulate(tiny3, de2, None, "wait-k", FAST, quiet(), word_times={})


def test_paced_times_and_config_checks():
    assert paced_times(3, 10.0, 0.5) == [10.5, 11.0, 11.5]
    with pytest.raises(AlignheadsError, match="latency unit"):
        SimulationConfig(unit="frames")
    with pytest.raises(AlignheadsError, match="pace"):
        SimulationConfig(pace=0)


def test_quality_latency_sweep_writes_the_curve_table(tiny3, de2, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from alignheads.lab.viz import quality_latency as plot

    grid = {"alignatt": [0, -1], "wait-k": [2], "cut-last": [1], "local-agreement": [2]}
    table = quality_latency(tiny3, de2.head(1), HEADS, grid, FAST, quiet(), out_dir=tmp_path)
    assert list(table.columns) == CURVE_COLUMNS
    assert len(table) == 5
    assert (tmp_path / "wait-k_2" / "instances.log").is_file()  # each setting's run files
    back = table
    assert back[["policy", "param"]].values.tolist() == [["alignatt", 0], ["alignatt", -1], ["wait-k", 2],
                                                        ["cut-last", 1], ["local-agreement", 2]]
    plot(back.dropna(subset=["laal_cu", "bleu"]))
    with pytest.raises(AlignheadsError, match="unknown policy"):
        quality_latency(tiny3, de2, HEADS, {"greedy": [1]})


def test_matched_latency_interpolates_the_baseline():
    curves = pd.DataFrame([
        {"policy": "cut-last", "param": 0, "laal_cu": 2.0, "bleu": 10.0},
        {"policy": "cut-last", "param": 2, "laal_cu": 4.0, "bleu": 20.0},
        {"policy": "alignatt", "param": 1, "laal_cu": 3.0, "bleu": 18.0},
        {"policy": "alignatt", "param": 0, "laal_cu": 5.0, "bleu": 25.0},
    ])
    m = matched_latency(curves)
    assert m["cut-last_bleu"].iloc[0] == pytest.approx(15.0)
    assert m["delta"].iloc[0] == pytest.approx(3.0)
    assert math.isnan(m["delta"].iloc[1])  # outside the baseline's latency range


def test_oracle_emission_steps_by_hand():
    # one token per target word, target word j aligned to source word j; 4 source words, steps 1..3
    word_tokens = [[0], [1], [2], [3]]
    positions = [0, 1, 2, 3]
    b0 = AlignAttConfig(border=0)
    assert _emission_steps(positions, word_tokens, 4, 4, b0, True, [1, 2, 3]) == [1, 2, 3, 4]
    b1 = AlignAttConfig(border=1)  # tolerates one pending word: everything goes one word early
    assert _emission_steps(positions, word_tokens, 4, 4, b1, True, [1, 2, 3]) == [1, 1, 2, 3]
    # two tokens for word 1: the word waits until both are through
    assert _emission_steps([0, 1, 2, 2], [[0], [1, 2], [3]], 4, 4, b0, True, [1, 2, 3]) == [1, 3, 3]
    needs = [{0: 1, 1: 2, 2: 3, 3: 4}]
    stats = _variant_stats([[1, 1, 2, 3]], needs, [4])
    assert stats["premature_rate"] == pytest.approx(3 / 4)
    assert stats["overwait_mean"] == 0.0
    stats = _variant_stats([[1, 2, 3, 4]], needs, [4])
    assert stats["premature_rate"] == 0.0 and stats["n_words"] == 4


@pytest.mark.parametrize("show_future", [False, True])
def test_policy_eval_on_tiny(tiny3, de2, show_future):
    res = policy_eval(tiny3, de2, HEADS, AlignAttConfig(border=0 if show_future else -1), show_future=show_future,
                      progress=False)
    json.dumps(res)  # JSON-able
    assert res["n_pairs"] == 2 and res["heads"] == ["L2H1", "L5H0@emit", "L0H3"]
    for v in ("selected", "all_heads_mean", "diagonal"):
        s = res[v]
        assert 0.0 <= s["premature_rate"] <= 1.0
        assert s["n_words"] == sum(len({t for _, t in p.possible}) for p in de2)


def test_policy_eval_shares_forwards_across_configs(tiny3, de2):
    res = policy_eval(tiny3, de2, HEADS, [AlignAttConfig(border=0), AlignAttConfig(border=-2)], progress=False)
    assert [r["config"]["border"] for r in res["runs"]] == [0, -2]
    lax, strict = (r["diagonal"] for r in res["runs"])
    assert strict["premature_rate"] <= lax["premature_rate"]  # a stricter border waits longer


def test_cli_policy_flags_parse_into_the_translator_config():
    from alignheads.cli.options import alignatt_config, translator_config

    p = build_parser()
    args = p.parse_args(["simulate", "--data", "x.tsv", "--heads", "h.json", "--policy", "wait-k", "--wait-k", "4",
                         "--border", "-1", "--out", "o"])
    assert (args.policy, args.unit, args.pace) == ("wait-k", "word", 0.4)
    config = translator_config(args)
    assert (config.wait_k, config.alignatt.border, config.cut_last, config.holdback) == (4, -1, 2, 0.0)
    args = p.parse_args(["policy-eval", "--data", "x.tsv", "--heads", "h.json", "--show-future", "--limit", "3"])
    assert args.show_future and args.limit == 3 and alignatt_config(args).max_draft == 16
    args = p.parse_args(["translate", "a.wav", "--tgt", "de", "--preset", "paper", "--border", "0", "--out", "o"])
    config = translator_config(args)
    assert (config.alignatt.border, config.holdback) == (0, 0.25)  # the flag given overrides the preset


def test_cli_entry_points_run_on_a_tiny_model(tiny3, tmp_path, capsys):
    from alignheads.heads.headset import HeadEntry, HeadSet

    heads = HeadSet([HeadEntry(2, 1, ts=0.5), HeadEntry(0, 3, ts=0.4)], "tiny-gemma3", "en", "de", 6, 4)
    hfile = heads.save(tmp_path / "heads.json")
    data = str(ROOT / "data" / "gold" / "en-de.test.tsv")
    common = ["--model", "tiny-gemma3", "--data", data, "--limit", "1", "--max-draft", "4", "--device", "cpu"]
    assert cli_main(["simulate", *common, "--heads", str(hfile), "--border", "-1", "--final-max-tokens", "8",
                     "--out", str(tmp_path / "sim")]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["policy"] == "alignatt" and scores["heads"] == ["L2H1", "L0H3"]
    assert (tmp_path / "sim" / "instances.log").is_file() and (tmp_path / "sim" / "scores.json").is_file()
    assert cli_main(["simulate", *common, "--out", str(tmp_path / "x")]) == 2
    assert "needs alignment heads" in capsys.readouterr().err
    assert cli_main(["policy-eval", *common, "--heads", str(hfile), "--top-k", "1", "--border", "0",
                     "--out", str(tmp_path / "oracle.json")]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["heads"] == ["L2H1"]
    assert json.loads((tmp_path / "oracle.json").read_text())["selected"] == res["selected"]


@pytest.mark.slow  # a fresh interpreter with a file-size limit
def test_a_full_disk_during_simulate_leaves_scores_marked_partial(tmp_path):
    """Files limited to 8 KiB (RLIMIT_FSIZE, as a full disk): decisions.jsonl cannot be written, so the run commits
    scores.json alone with `"partial": true` and the reason — never `partial: false` beside missing files."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import resource
        from alignheads import load_model, read_corpus, simulate, SimulationConfig, TranslatorConfig, Head
        lm = load_model("tiny-gemma3")
        corpus = read_corpus({str(ROOT / "data" / "gold" / "en-de.test.tsv")!r}).head(2)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
        simulate(lm, corpus, [Head(2, 1)], "alignatt", TranslatorConfig(), SimulationConfig(progress=False),
                 out_dir={str(tmp_path)!r})
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode != 0 and "could not write the run's files" in r.stderr, r.stderr[-2000:]
    scores = json.loads((tmp_path / "scores.json").read_text())
    assert scores["partial"] is True and "could not write" in scores["stopped"]
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["scores.json"]
