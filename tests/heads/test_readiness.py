"""Readiness in the prefix condition: cells, margins, the histogram AUC, the learned border and its policy."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from alignheads.base.errors import AlignheadsError
from alignheads.corpus.pairs import SentencePair
from alignheads.heads.border import BorderModel, border_auc, fit_border
from alignheads.heads.headset import Head, HeadEntry, HeadSet, load_headset
from alignheads.heads.readiness import (
    MAX_MARGIN,
    border_rates,
    histogram_auc,
    needed_sources,
    prefix_cells,
    prefix_steps,
)

# source word i aligns target word i, except that target words 2 and 3 swap (German verb-final, say)
PAIR = SentencePair("p", tuple("abcdefgh"), tuple("ABDCEFGH"), {(0, 0), (1, 1), (3, 2), (2, 3), (4, 4), (5, 5),
                                                                 (6, 6), (7, 7)}, set())


def constructed_rows(kind: str):
    """Attention [Q=1, L=1, H=1, target words, shown] of a head that reads the true source word (or, when it is not
    shown yet, the newest shown one), or of a recency head that always reads the newest shown word."""
    gold = {t: s for s, t in PAIR.sure}

    def rows(shown: int) -> np.ndarray:
        att = np.full((1, 1, 1, len(PAIR.tgt_words), shown), 0.01)
        for j in range(len(PAIR.tgt_words)):
            att[..., j, min(gold[j], shown - 1) if kind == "aligned" else shown - 1] = 1.0
        return att

    return rows


def auc_of(pp) -> float:
    m = pp.margins[:, 0, 0, 0].astype(int)
    hist = np.zeros((2, 2 * MAX_MARGIN + 1), np.int64)
    np.add.at(hist, (pp.cells["y"].to_numpy(), m + MAX_MARGIN), 1)
    return float(histogram_auc(hist))


def test_a_head_on_the_true_source_word_scores_high_and_a_recency_head_does_not():
    """On prefixes with one pending word (the cascade's hold-back), a head reading the gold source word separates
    ready from not-ready words; a head reading the newest word gives nearly the same margin to every cell (AUC about
    0.5). (Not perfectly: at a step that shows no pending word, a word needing the unseen next word and one needing
    the newest word both point at the newest — a head cannot see what is not shown.)"""
    aligned = prefix_cells(PAIR, constructed_rows("aligned"), pending=1)
    recency = prefix_cells(PAIR, constructed_rows("recency"), pending=1)
    assert auc_of(aligned) > 0.9 and auc_of(recency) < 0.55
    shown_pending = aligned.cells["s"] > aligned.cells["a"]
    sub = type(aligned)(aligned.pair_id, aligned.cells[shown_pending], aligned.margins[shown_pending.to_numpy()],
                        aligned.peaks[shown_pending.to_numpy()])
    assert auc_of(sub) == pytest.approx(1.0)  # with the needed word shown (pending), the head knows
    cells = aligned.cells
    assert set(cells["y"]) == {0, 1} and (cells["a"] <= cells["need"] + 2).all()
    # the justified prefix: word 3 (needs c) is scored only once word 2 (needs d) is ready
    assert (cells.query("j == 3")["a"] >= 4).all()


def test_histogram_auc_is_the_roc_auc_with_ties_half():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    m = rng.integers(-5, 6, 400) + 2 * y
    hist = np.zeros((2, 2 * MAX_MARGIN + 1), np.int64)
    np.add.at(hist, (y, m + MAX_MARGIN), 1)
    assert float(histogram_auc(hist)) == pytest.approx(roc_auc_score(y, m))
    premature, wait = border_rates(hist, border=-2)  # emits when m > 2
    assert premature == pytest.approx(np.mean(m[y == 0] > 2)) and wait == pytest.approx(np.mean(m[y == 1] <= 2))


def test_needs_and_steps():
    assert needed_sources(PAIR)[2] == 4 and needed_sources(PAIR)[3] == 3
    assert prefix_steps(3, pending=1) == [(1, 0), (1, 1), (2, 1), (2, 2), (3, 2)]


def test_the_learned_border_separates_and_round_trips_through_the_head_set_file(tmp_path):
    """Fitted on the cells of calibration pairs, the border ranks held-out cells like the aligned head; it is stored
    in the head-set file and read back equal."""
    pairs = [prefix_cells(PAIR, constructed_rows("aligned"), pending=p) for p in (0, 1)]
    head = Head(0, 0)
    border = fit_border(pairs, [head], ("own",), rho=1.0, pending=1)
    assert border_auc(border, pairs, ("own",), n_boot=50)["auc"] > 0.9
    hs = HeadSet([HeadEntry(0, 0)], "tiny", "en", "de", 1, 1, border=border.to_dict())
    back = load_headset(hs.save(tmp_path / "h.json"))
    again = BorderModel.from_dict(back.border)
    x = again.design(np.array([[1], [-1]]), np.array([[1.0], [1.0]]), np.array([3, 3]), np.array([4, 4]),
                     np.array([2, 2]))
    np.testing.assert_allclose(again.p_ready(x), border.p_ready(x))
    bad = json.loads((tmp_path / "h.json").read_text())
    bad["border"]["coef"] = bad["border"]["coef"][:1]
    with pytest.raises(AlignheadsError, match="one number per feature"):
        BorderModel.from_dict(bad["border"])


def test_the_position_only_border_needs_no_heads_and_a_one_class_set_is_refused():
    pairs = [prefix_cells(PAIR, constructed_rows("recency"), pending=1)]
    position = fit_border(pairs, [], ("own",), rho=1.0, pending=1, variant="position")
    assert position.features[-1] == "causal_margin" and not position.heads
    ready_only = prefix_cells(PAIR, constructed_rows("aligned"), pending=0)
    ready_only.cells = ready_only.cells.assign(y=1)
    with pytest.raises(AlignheadsError, match="all ready"):
        fit_border([ready_only], [Head(0, 0)], ("own",), rho=1.0, pending=0)


def test_score_readiness_on_the_tiny_model_counts_every_cell(tiny4):
    """The real path (one forward per shown prefix, capture, replay, pooling) on the tiny Gemma-4: every head sees
    the same cells, histograms add up to them, and the baselines are scored on the same cells."""
    from alignheads.corpus.formats import read_corpus
    from alignheads.heads.readiness import score_readiness
    from tests.conftest import ROOT

    corpus = read_corpus(ROOT / "data" / "gold" / "en-de.dev.tsv").head(2)
    r = score_readiness(tiny4, corpus, progress=False)
    n_cells = sum(len(p.cells) for p in r.pairs)
    assert n_cells > 0 and (r.hist.sum((-1, -2)) == n_cells).all()
    assert all(v.sum() == n_cells for v in r.baselines.values())
    assert r.auc.shape == (2, tiny4.facts.num_layers, tiny4.facts.num_heads)
    assert ((0 <= r.auc) & (r.auc <= 1)).all()
    both = r + r
    assert (both.hist == 2 * r.hist).all()


def test_the_learned_border_policy_holds_the_first_word_it_doubts():
    """learned-border on a DraftView: words go out while P(ready) >= threshold; the first doubted word and everything
    after it wait (a border that reads only the causal margin a − round(j·ρ̂), so the doubt is easy to place)."""
    from alignheads.simul.policy import LEARNED_BORDER, POLICIES, DraftView
    from alignheads.simul.translator import TranslatorConfig

    border = BorderModel([], ["a", "s", "j", "j_per_a", "causal_margin"], [0.0] * 5, [1.0] * 5,
                         [0.0, 0.0, 0.0, 0.0, 4.0], -2.0, rho=1.0, pending=1, variant="position")
    text = " Das ist ein kurzer Test"
    view = DraftView(text, [0, 4, 8, 12, 19, 24], complete=False, spaced=True, n_accessible=3, n_emitted=0,
                     attention=np.zeros((1, 5, 4)), n_shown=4, border=border, border_index=[0])
    # P(ready) = σ(4·(3 − j) − 2): σ(10), σ(6), σ(2) = 0.88 for j = 0, 1, 2; σ(−2) < 0.5 for j = 3
    cut = POLICIES["learned-border"].decide(view, TranslatorConfig(border_threshold=0.5), {})
    assert (cut.keep_tokens, cut.stop_index, cut.reason) == (3, 3, LEARNED_BORDER)
    assert text[: cut.chars] == " Das ist ein"
    assert POLICIES["learned-border"].decide(view, TranslatorConfig(border_threshold=0.99), {}).keep_tokens == 2


@pytest.mark.slow  # CLI subprocesses
def test_score_prefix_then_simulate_with_the_learned_border(tmp_path):
    """`score --condition prefix` writes the readiness table and map and a head set with a learned border; simulate
    and translate's translator use it; --runtime a4l refuses it."""
    import subprocess
    import sys

    from tests.conftest import ROOT

    data = ROOT / "data" / "gold" / "en-de.dev.tsv"
    run = [sys.executable, "-m", "alignheads"]
    r = subprocess.run([*run, "score", "--model", "tiny-gemma3", "--data", str(data), "--src", "en", "--tgt", "de",
                        "--limit", "3", "--threshold", "0", "--condition", "prefix", "--out", str(tmp_path / "s")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "s" / "readiness.csv").is_file() and (tmp_path / "s" / "readiness_heatmap.png").is_file()
    heads = next((tmp_path / "s").glob("translation_heads_*.json"))
    hs = load_headset(heads)
    assert hs.border and BorderModel.from_dict(hs.border).heads and "readiness_auc" in hs.scores
    r = subprocess.run([*run, "simulate", "--model", "tiny-gemma3", "--heads", str(heads), "--data", str(data),
                        "--limit", "2", "--policy", "learned-border", "--out", str(tmp_path / "sim")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "sim" / "scores.json").read_text())["policy"] == "learned-border"
    r = subprocess.run([*run, "heads", "convert", str(heads), "--runtime", "a4l", "--out", str(tmp_path / "a4l")],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "learned border" in r.stderr
