"""Head scoring: agreement with the eager reference, metric definitions, baselines, sharding."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from alignheads.base.metrics import alignment_counts, diagonal_words
from alignheads.corpus.formats import read_corpus
from alignheads.corpus.pairs import Corpus, SentencePair
from alignheads.heads.scoring import ScoreConfig, reference_token_scores, score_heads
from alignheads.model.prompts import PromptLayout
from tests.conftest import ROOT

DEV = ROOT / "data" / "gold"
QUIET = ScoreConfig(progress=False)


def _pair(pid, src, tgt, sure, possible=()):
    return SentencePair(pid, tuple(src.split()), tuple(tgt.split()), frozenset(sure), frozenset(possible))


@pytest.fixture(scope="module")
def de_dev():
    return read_corpus(DEV / "en-de.dev.tsv")


@pytest.mark.parametrize("model", ["tiny3", "tiny4"])
def test_scores_equal_eager_output_attentions_reference(model, de_dev, request):
    """capture + replay (SDPA run) gives the same ts / source_acc / gold_mass as eager attentions."""
    lm = request.getfixturevalue(model)
    corpus = de_dev.head(3)
    layout = PromptLayout("en", "de")
    scores = score_heads(lm, corpus, layout, QUIET)
    ref_all = np.mean([reference_token_scores(lm, layout, p) for p in corpus], axis=0)  # [Q, L, H, 3]
    for qi, q in enumerate(("own", "emit")):
        ref = ref_all[qi]
        for ci, col in enumerate(("ts", "source_acc", "gold_mass")):
            np.testing.assert_allclose(scores.matrix(col, q), ref[..., ci], atol=1e-5, err_msg=f"{q} {col}")


def test_table_shape_and_ranges(tiny4, de_dev):
    scores = score_heads(tiny4, de_dev.head(2), config=QUIET)
    L, H = tiny4.facts.num_layers, tiny4.facts.num_heads
    assert len(scores.heads) == 2 * L * H and len(scores.baselines) == 4
    for col in ("ts", "source_acc", "gold_mass", "aer", "precision", "recall"):
        assert scores.table[col].between(0, 1).all(), col
    assert scores.heads["kv_shared"].sum() == 2 * 2 * H  # layers 4 and 5, both query kinds
    assert set(scores.heads.columns) >= {"layer", "head", "query", "ts", "source_acc", "gold_mass", "aer",
                                         "n_tokens", "n_pairs"}
    assert scores.matrix("ts", "emit").shape == (L, H)
    pd.testing.assert_frame_equal(scores.subset(range(2)), scores.table.drop(columns="kv_shared"))


def test_aer_definition_on_a_hand_example():
    pair = _pair("p", "a b c", "x y z", sure={(0, 0), (1, 1)}, possible={(2, 2)})
    # A = {(0,0), (2,1), (2,2)}: |A∩S| = 1, |A∩P| = 2, |A| = 3, |S| = 2 -> AER = 1 - 3/5
    counts = alignment_counts([(0, 0), (2, 1), (2, 2)], pair)
    assert counts.tolist() == [1, 2, 3, 2]
    assert diagonal_words(3, 3).tolist() == [0, 1, 2] and diagonal_words(4, 2).tolist() == [0, 3]


def test_diagonal_baseline_is_perfect_on_monotone_data(tiny3):
    pairs = [_pair(f"m{i}", "we show good results .", "wir zeigen gute Ergebnisse .",
                   sure={(j, j) for j in range(5)}) for i in range(2)]
    scores = score_heads(tiny3, Corpus(pairs, "en", "de"), config=QUIET)
    diag = scores.baselines.query("kind == 'diagonal'").iloc[0]
    assert diag.aer == 0.0 and diag.precision == 1.0 and diag.recall == 1.0


def test_sure_only_and_limit_and_seed(tiny3, de_dev):
    a = score_heads(tiny3, de_dev, config=ScoreConfig(limit=2, progress=False, queries=("own",)))
    b = score_heads(tiny3, de_dev, config=ScoreConfig(limit=2, seed=7, use_possible=False, progress=False,
                                                      queries=("own",)))
    assert a.pair_ids == [p.id for p in de_dev.pairs[:2]] and a.pair_ids != b.pair_ids
    assert set(a.table["query"]) == {"own"}
    assert b.heads["n_tokens"].iloc[0] > 0
    # the same pairs with possible links counted: target words linked only by possible links are scored too
    c = score_heads(tiny3, de_dev, config=ScoreConfig(limit=2, seed=7, progress=False, queries=("own",)))
    assert c.pair_ids == b.pair_ids
    assert c.heads["n_tokens"].iloc[0] > b.heads["n_tokens"].iloc[0]
    assert not np.allclose(c.heads["ts"], b.heads["ts"])


def test_embedded_heads_beat_the_diagonal(embedded, de_dev):
    scores = score_heads(embedded, de_dev.head(12), config=QUIET)
    diag = scores.baselines.query("kind == 'diagonal' and query == 'own'").iloc[0]
    assert scores.heads["source_acc"].max() > diag.source_acc + 0.1
    assert scores.heads["aer"].min() < diag.aer - 0.1


@pytest.mark.slow
def test_torchrun_sharded_scores_equal_single_process(tmp_path):
    """Two gloo CPU processes score disjoint shards; the result equals a single-process run exactly."""
    args = ["score", "--model", "tiny-gemma3", "--data", str(DEV / "en-de.dev.tsv"), "--src", "en", "--tgt", "de",
            "--limit", "5", "--threshold", "0"]  # a random tiny model: no head passes the default 0.1
    single = subprocess.run([sys.executable, "-m", "alignheads", *args, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]
    multi = subprocess.run([*torchrun, "-m", "alignheads", *args, "--out", str(tmp_path / "two")],
                           capture_output=True, text=True)
    assert multi.returncode == 0, multi.stderr[-2000:]
    assert (tmp_path / "one" / "scores.csv").read_bytes() == (tmp_path / "two" / "scores.csv").read_bytes()
    name = "translation_heads_tiny-gemma3_en-de.json"
    one, two = (json.loads((tmp_path / d / name).read_text())["calibration"]["shards"] for d in ("one", "two"))
    assert len(one) == 1 and len(one[0]) == 5
    assert [len(s) for s in two] == [3, 2] and not set(two[0]) & set(two[1])  # each rank scored only its share
    assert sorted(two[0] + two[1]) == sorted(one[0])


# ---------------------------------------------------------------- never a meaningless score

@pytest.mark.model  # a private tiny model (its weights are broken)
def test_nan_attention_is_an_error_naming_the_cause(de_dev):
    """Reported: a corrupt model file scored with exit 0, gold_mass NaN and every ts 0."""
    import dataclasses

    import torch

    from alignheads.heads.scoring import ScoringError
    from alignheads.model.loader import load_model

    lm = load_model("tiny-gemma3")  # a private copy: its weights are broken below
    with torch.no_grad():
        lm.model.model.layers[2].self_attn.q_proj.weight[0, 0] = float("nan")
    with pytest.raises(ScoringError, match=r"NaN or infinite in layer\(s\) \[2, 3, 4, 5\].*check the checkpoint"):
        score_heads(lm, de_dev.head(1), config=QUIET)
    with pytest.raises(ScoringError, match="alignheads prepare --force"):
        score_heads(dataclasses.replace(lm, spec="embedded"), de_dev.head(1), config=QUIET)


def test_an_empty_corpus_or_limit_below_one_is_an_error(tiny3, tmp_path):
    """Reported: a corpus with a header and no pairs scored with exit 0; --limit 0 scored everything."""
    from alignheads.heads.scoring import ScoringError

    header_only = tmp_path / "empty.tsv"
    header_only.write_text((DEV / "en-de.dev.tsv").read_text().splitlines()[0] + "\n")
    with pytest.raises(ScoringError, match=r"no sentence pairs to score: .*has 0 pair"):
        score_heads(tiny3, read_corpus(header_only), config=QUIET)
    for bad in (0, -3):
        with pytest.raises(ScoringError, match="limit must be at least 1"):
            ScoreConfig(limit=bad)
    with pytest.raises(ScoringError, match="queries must be among own, emit"):
        ScoreConfig(queries=("own", "emitt"))


def _long_pair(n_words: int) -> SentencePair:
    return _pair("huge", " ".join(f"house{i}" for i in range(n_words)), " ".join(f"Haus{i}" for i in range(n_words)),
                 {(i, i) for i in range(n_words)})


def test_a_pair_past_the_models_positions_fails_before_scoring_or_is_skipped(tiny3, de_dev):
    """Reported: a 700-word pair went past the position limit silently (8.2 GB peak)."""
    from alignheads.heads.scoring import ScoringError

    corpus = Corpus([de_dev[0], _long_pair(700), de_dev[1]], "en", "de", name="mixed")
    with pytest.raises(ScoringError, match=r"pair huge of mixed: \d+ tokens, more than the 2048 positions.*skip-long"):
        score_heads(tiny3, corpus, config=QUIET)
    with pytest.warns(UserWarning, match="skipping 1 pair"):
        scores = score_heads(tiny3, corpus, config=ScoreConfig(progress=False, skip_long=True))
    assert scores.pair_ids == [de_dev[0].id, de_dev[1].id]
    with pytest.warns(UserWarning), pytest.raises(ScoringError, match="none short enough"):
        score_heads(tiny3, Corpus([_long_pair(700)], "en", "de"), config=ScoreConfig(progress=False, skip_long=True))


def test_a_pair_too_big_for_memory_fails_before_the_forward(tiny3, de_dev, monkeypatch):
    """Reported: a 5,000-word pair ended in an out-of-memory traceback after 2 minutes."""
    from alignheads.heads import scoring

    monkeypatch.setattr(scoring, "_free_bytes", lambda device: 64 << 20)  # as if only 64 MiB were free
    corpus = Corpus([de_dev[0], _long_pair(120)], "en", "de", name="mixed")
    with pytest.raises(scoring.ScoringError, match=r"pair huge of mixed: \d+ tokens need about [\d.]+ GiB .* free"):
        score_heads(tiny3, corpus, config=ScoreConfig(progress=False, max_tokens=10**6))
