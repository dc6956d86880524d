"""Head scoring: agreement with the eager reference, metric definitions, baselines, sharding."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from alignheads.data import Corpus, SentencePair, read_corpus
from alignheads.metrics import alignment_counts, diagonal_words
from alignheads.prompts import PromptLayout
from alignheads.scoring import ScoreConfig, reference_token_scores, score_heads
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
            "--limit", "5"]
    single = subprocess.run([sys.executable, "-m", "alignheads.cli", *args, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517"]
    multi = subprocess.run([*torchrun, "-m", "alignheads.cli", *args, "--out", str(tmp_path / "two")],
                           capture_output=True, text=True)
    assert multi.returncode == 0, multi.stderr[-2000:]
    assert (tmp_path / "one" / "scores.csv").read_bytes() == (tmp_path / "two" / "scores.csv").read_bytes()
    name = "translation_heads_tiny-gemma3_en-de.json"
    one, two = (json.loads((tmp_path / d / name).read_text())["calibration"]["shards"] for d in ("one", "two"))
    assert len(one) == 1 and len(one[0]) == 5
    assert [len(s) for s in two] == [3, 2] and not set(two[0]) & set(two[1])  # each rank scored only its share
    assert sorted(two[0] + two[1]) == sorted(one[0])
