"""The figures pipeline (`alignheads figures`) and the analysis glue (alignheads.lab.analysis,
alignheads.speech.talks), on the
tiny model and the shipped data; `viz.headset_ablation`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from alignheads.base.errors import AlignheadsError
from alignheads.base.languages import parse_direction
from alignheads.cli.commands import main as cli_main
from alignheads.heads.ensemble import ensemble_metrics
from alignheads.heads.headset import Head, HeadEntry, HeadSet
from alignheads.heads.registry import published_headset
from alignheads.heads.scoring import ScoreConfig, score_heads
from alignheads.lab import analysis, figures, viz
from alignheads.model.loader import ModelFacts
from alignheads.speech import talks
from alignheads.speech.audio import SAMPLE_RATE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
READINESS = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "readiness.json"
TALKS = Path(__file__).resolve().parents[2] / "data" / "talks"


@pytest.fixture(scope="module")
def scored(tiny4):
    corpus = figures.load_direction("en-de", "dev", limit=4)
    return corpus, score_heads(tiny4, corpus, config=ScoreConfig(progress=False))


def policy_results(lm, tmp_path: Path) -> Path:
    """A bench_policies-style summary of three settings on two en-de test sentences, made with `lm`."""
    from alignheads.simul.comparison import dataset_summary, setting_label
    from alignheads.simul.policy import AlignAttConfig
    from alignheads.simul.sweep import run_setting
    from alignheads.simul.translator import TranslatorConfig

    corpus = figures.load_direction("en-de", "test", limit=2)
    heads = [Head(2, 1), Head(5, 0, "emit")]
    records = [run_setting(lm, corpus, heads, policy, value, 0.0,
                           tmp_path / "en-de" / f"{setting_label(policy, value, 0.0)}.json", dataset="en-de",
                           base=TranslatorConfig(alignatt=AlignAttConfig(max_draft=4), final_max_tokens=8))[0]
               for policy, value in (("alignatt", -1), ("wait-k", 1), ("wait-k", 3))]
    summary = {"latency_unit": "source words",
               "datasets": {"en-de": dataset_summary(records, "de", tmp_path / "en-de", tmp_path, n_samples=50)}}
    (tmp_path / "policies.json").write_text(json.dumps(summary), encoding="utf-8")
    return tmp_path / "policies.json"


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Glyph")  # the random model's translations contain control characters
def test_cli_writes_every_figure_and_a_manifest(tmp_path, tiny4):
    """Every figure is written, the held-out test's curve (`--heldout`, bench_heldout's summary) among them."""
    out = tmp_path / "figs"
    results = policy_results(tiny4, tmp_path / "bench")
    summary = json.loads(results.read_text(encoding="utf-8"))
    heldout = tmp_path / "heldout.json"
    heldout.write_text(json.dumps({**summary, "datasets": {"heldout-en-de": summary["datasets"]["en-de"]}}))
    threads = torch.get_num_threads()
    try:  # the random tiny model has no head with TS > 0.1, hence threshold 0
        rc = cli_main(["figures", "--model", "tiny-gemma4", "--fast", "--out", str(out), "--directions", "en-de,en-zh",
                       "--limit", "3", "--results", str(results), "--threshold", "0", "--threads", "1",
                       "--readiness", str(READINESS), "--heldout", str(heldout)])
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
    assert rc == 0
    expected = {f"{kind}_{d}.png" for kind in ("ts_heatmap", "stability", "attention") for d in ("en-de", "en-zh")}
    expected |= {"shared_kernel.png", "headset_ablation.png", "quality_latency_en-de.png", "policy_trace_en-de.png",
                 "alignatt_decisions_en-de.png", "paper_heads.png", "head_depth.png", "aligners.png",
                 "quality_latency_heldout-en-de.png"}
    expected |= {f"readiness_{d}.png" for d in json.loads(READINESS.read_text())["directions"]}
    assert {p.name for p in out.glob("*.png")} == expected
    assert all(p.read_bytes()[:8] == PNG_MAGIC for p in out.glob("*.png"))
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert set(manifest["figures"]) == expected
    assert manifest["model"]["model_id"] == "tiny-gemma4"
    assert manifest["command"].startswith("alignheads figures --model tiny-gemma4")
    assert manifest["data"]["en-de"]["calibration"]["pairs"] == 3
    assert manifest["data"]["en-zh"]["held_out"]["name"]
    assert {r["policy"] for r in manifest["quality_latency"]["en-de"]} == {"alignatt", "wait-k"}
    ks = sorted({r["k"] for r in manifest["ablation"] if r["direction"] == "en-de" and r["split"] == "held-out"})
    assert ks == [1, 2, 4, 8]
    assert manifest["headsets"]["en-de"]["heads"]
    assert {r["aligner"] for r in manifest["aligners"]} >= {"diagonal", "top-4 by TS", "greedy ensemble",
                                                            "learned weights"}


def test_cli_reports_missing_data_before_loading_the_model(tmp_path, capsys):
    # "embedded" would take seconds to load: the data are checked first
    assert cli_main(["figures", "--fast", "--out", str(tmp_path), "--directions", "en-de,en-xx"]) == 2
    assert "en-xx" in capsys.readouterr().err
    assert cli_main(["figures", "--fast", "--out", str(tmp_path), "--results", str(tmp_path / "none.json")]) == 2
    assert "bench_policies.py" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
    with pytest.raises(AlignheadsError, match="like 'en-de'"):
        parse_direction("ende")


def test_k_table_matches_ensemble_metrics_and_best_k_chooses_on_calibration(scored):
    corpus, scores = scored
    heads = analysis.pick_heads(scores, k=4)
    assert len(heads) == 4 and all(h.query == "own" for h in heads)
    table = figures.k_table(heads, {"calibration": (scores, corpus)}, direction="en-de")
    assert table["k"].tolist() == [1, 2, 3, 4]
    for row in table.itertuples():
        assert row.aer == pytest.approx(ensemble_metrics(scores, corpus, heads[: row.k])["aer"])
    best = table.sort_values(["aer", "k"]).iloc[0]["k"]
    assert figures.best_k(table, "calibration") == best
    with pytest.raises(AlignheadsError, match="no 'held-out' rows"):
        figures.best_k(table, "held-out")
    base = figures.baseline_table(scores, "en-de", "calibration")
    assert base["name"].tolist() == ["diagonal", "mean_heads"]


def test_pair_attention_is_one_head_or_the_explorers_set_mean(scored, tiny4):
    """One head: its weights as applied. Several: the same map under the same name as the explorer's set panel
    (`ensemble_attention`, rows renormalised) — notebook 02 and the explorer never disagree on "the set mean"."""
    from alignheads.heads.combine import SET_MEAN
    from alignheads.heads.ensemble import ensemble_attention
    from alignheads.lab.explorer import HeadExplorer

    corpus, scores = scored
    a, b = Head(2, 1), Head(5, 0, "emit")
    wa = scores.word_attention[1]
    one = analysis.pair_attention(scores, 1, [a])
    np.testing.assert_array_equal(one, wa.words[0, 2, 1])
    both = analysis.pair_attention(scores, 1, [a, b])
    rows = np.stack([wa.words[0, 2, 1], wa.words[1, 5, 0]]).astype(np.float64)
    np.testing.assert_allclose(both, (rows / rows.sum(-1, keepdims=True)).mean(0))
    np.testing.assert_array_equal(both, ensemble_attention(scores, [a, b], 1))
    pair = analysis.scored_pair(scores, corpus, 1)
    assert one.shape == (len(pair.tgt_words), len(pair.src_words))
    with pytest.raises(AlignheadsError, match="out of range"):
        analysis.pair_attention(scores, 99, [a])
    with pytest.raises(AlignheadsError, match="outside"):
        analysis.pair_attention(scores, 0, [(9, 0)])
    fig = analysis.attention_figure(scores, corpus, 1, [a, b])
    assert f"{SET_MEAN} of 2 heads" in fig.axes[0].get_title()
    ex = HeadExplorer(scores, corpus, tiny4, heads=[a, b], pair=1)
    (_, _), (set_map, title) = ex._panels()
    np.testing.assert_array_equal(set_map, both)
    assert title.startswith(SET_MEAN)


def test_pick_heads_takes_tuples_and_queries(scored):
    _, scores = scored
    assert analysis.pick_heads(scores, [(1, 2), (3, 0, "emit")]) == [Head(1, 2), Head(3, 0, "emit")]
    assert analysis.pick_heads(scores, [(1, 2)], query="emit") == [Head(1, 2, "emit")]
    best = analysis.pick_heads(scores, [], k=1)[0]
    own = scores.heads[scores.heads["query"] == "own"]
    assert own.set_index(["layer", "head"]).loc[(best.layer, best.head), "ts"] == own["ts"].max()


def test_talk_clip_keeps_whole_sentences():
    wav = TALKS / "talk04.wav"
    audio, refs, segments = talks.talk_clip(wav, "de", 11.0)
    assert len(refs) == len(segments) == 2  # sentences end at 4.9 s and 10.3 s; the third starts at 11.12 s
    assert len(audio) == int(11.0 * SAMPLE_RATE)
    audio, refs, segments = talks.talk_clip(wav, "de", 10.5)
    assert len(refs) == 2 and len(audio) == int(10.5 * SAMPLE_RATE)
    full, all_refs, _ = talks.talk_clip(wav, "de")
    assert len(all_refs) == 6 and len(full) > len(audio)
    with pytest.raises(AlignheadsError, match="no sentence ends"):
        talks.talk_clip(wav, "de", 2.0)


def _gemma4_facts() -> ModelFacts:
    return ModelFacts("google/gemma-4-E4B-it", None, "Gemma4ForConditionalGeneration", 42, 8, (2,) * 42, (256,) * 42,
                      ("sliding_attention",) * 42, 512)


def test_published_comparison_ranks_the_paper_heads_in_our_scores():
    ts = np.zeros((42, 8))
    ts[11, 3], ts[6, 5], ts[30, 1] = 0.9, 0.5, 0.7
    ours = HeadSet([HeadEntry(11, 3, ts=0.9), HeadEntry(30, 1, ts=0.7)], "google/gemma-4-E4B-it", "en", "de", 42, 8,
                   scores={"ts": {"own": ts.tolist()}})
    table, verdict = analysis.published_comparison(ours, published_headset("google/gemma-4-E4B-it", "en", "de"),
                                                  _gemma4_facts())
    assert "fit" in verdict and "not comparable" not in verdict
    row = table.set_index(["layer", "head"])
    assert row.loc[(11, 3), "our_rank"] == 1 and row.loc[(11, 3), "in_our_set"]
    assert row.loc[(6, 5), "our_rank"] == 3 and not row.loc[(6, 5), "in_our_set"]
    assert row.loc[(11, 3), "paper_ts"] == pytest.approx(0.833, abs=5e-4)  # the published file: 0.833106


def test_published_comparison_refuses_another_shape(tiny4):
    ours = HeadSet([HeadEntry(1, 1, ts=0.3)], "tiny-gemma4", "en", "de", 6, 4)
    table, verdict = analysis.published_comparison(ours, published_headset("google/gemma-4-E4B-it", "en", "de"),
                                                  tiny4.facts)
    assert verdict.startswith("not comparable") and "42 layers x 8 heads" in verdict
    assert list(table.columns) == ["layer", "head", "paper_ts"] and len(table) == 8


def test_headset_ablation_draws_a_line_per_direction_and_split(tmp_path):
    table = pd.DataFrame([{"direction": d, "split": s, "k": k, "aer": 0.5 - 0.01 * k + (0.05 if s == "c" else 0)}
                          for d in ("en-de", "en-zh") for s in ("h", "c") for k in (4, 1, 2)])
    base = pd.DataFrame([{"direction": "en-de", "name": "diagonal", "aer": 0.6}])
    fig = viz.headset_ablation(table, baselines=base, save=tmp_path / "a.png")
    ax = fig.axes[0]
    lines = {line.get_gid(): line for line in ax.lines if str(line.get_gid()).startswith("ablation:")}
    assert set(lines) == {f"ablation:{d}, {s}" for d in ("en-de", "en-zh") for s in ("h", "c")}
    assert list(lines["ablation:en-de, h"].get_xdata()) == [1, 2, 4]  # sorted by k
    assert [line.get_gid() for line in ax.lines if str(line.get_gid()).startswith("baseline:")] == [
        "baseline:en-de:diagonal"]
    assert (tmp_path / "a.png").read_bytes()[:8] == PNG_MAGIC
    with pytest.raises(AlignheadsError, match="missing column"):
        viz.headset_ablation(table.drop(columns="k"))
    with pytest.raises(AlignheadsError, match="integer >= 1"):
        viz.headset_ablation(table.assign(k=0))
