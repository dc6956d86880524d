"""Readiness: do the heads know what has not been heard yet? Head scores in the prefix condition.

Scoring in the whole-source condition asks whether a head points at a target word's gold source word. The
translator runs on prefixes, where the question is different: may this target word go out now? Here each pair is
run as the translator sees it — the prompt shows the first s source words, of which a are accessible (`prefix_steps`,
with `pending` steps of hold-back), the reference is forced as the draft — one forward per shown prefix.

Cells: target word j (gold-aligned; unaligned words are excluded) at step (s, a), need(j) = 1 + its last aligned
source word, kept when the reference words before j form a justified prefix (their needs ≤ a) and a ≤ need(j) + 2;
label y = [need(j) ≤ a] (ready). A head's margin m = a − argmax of its raw row (pooled to the shown words) at j's
query position: the border rule with border b emits exactly when m > −b, so the readiness AUC
P(m⁺ > m⁻) + ½ P(m⁺ = m⁻) is the ROC of the border sweep. Margins are integers, so per-pair histograms add up
exactly (shards, half splits and `combine_scores` keep working). Premature (emitted though not ready) and wait
(held though ready) rates per border come from the same histograms.

Baselines on the same cells (`baseline_margins`): a causal positional predictor ŝ = round(j·ρ̂) (ρ̂ the mean
source/target length ratio of the calibration pairs) and the length-oracle diagonal ŝ = round(j·(N−1)/(n−1)), which
knows each sentence's final lengths (reported as such, never as the bar).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..base.errors import AlignheadsError
from ..corpus.pairs import Corpus, SentencePair
from ..model.attention import pool_source_words, word_query_positions
from ..model.loader import LoadedModel
from ..model.prompts import PromptLayout, render

MAX_MARGIN = 32  # margins are clipped to [-MAX_MARGIN, MAX_MARGIN] in the histograms


def needed_sources(pair: SentencePair) -> dict[int, int]:
    """Per gold-aligned target word: how many source words must be available (last aligned source word + 1)."""
    need: dict[int, int] = {}
    for s, t in pair.possible:
        need[t] = max(need.get(t, 0), s + 1)
    return need


def prefix_steps(n_src: int, show_future: bool = False, pending: int = 0) -> list[tuple[int, int]]:
    """(source words shown in the prompt, words accessible) at each step before the final update.

    The prompt shows the revealed prefix, or with `show_future` the whole source. With `pending` p > 0 (the
    cascade's hold-back), each new word is first shown for p steps while not yet accessible."""
    if show_future:
        return [(n_src, n) for n in range(1, n_src)]
    out = []
    for n in range(1, n_src + 1):
        out += [(n, n - j) for j in range(min(pending, n), -1, -1) if (n, n - j) != (n_src, n_src)]
    return out


def histogram_auc(hist: np.ndarray) -> np.ndarray:
    """AUC P(m⁺ > m⁻) + ½ P(m⁺ = m⁻) from margin histograms [..., 2 (y = 0, 1), bins] (bins in margin order)."""
    neg, pos = hist[..., 0, :].astype(np.float64), hist[..., 1, :].astype(np.float64)
    below = np.cumsum(neg, axis=-1) - neg  # negatives with a smaller margin than each bin
    pairs = neg.sum(-1) * pos.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(pairs > 0, (pos * (below + 0.5 * neg)).sum(-1) / pairs, np.nan)


def border_rates(hist: np.ndarray, border: int) -> tuple[np.ndarray, np.ndarray]:
    """(premature rate, wait rate) of the border rule `emit when m > -border` from histograms [..., 2, bins]."""
    values = np.arange(-MAX_MARGIN, MAX_MARGIN + 1)
    emits = values > -border
    neg, pos = hist[..., 0, :], hist[..., 1, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return (neg[..., emits].sum(-1) / neg.sum(-1), pos[..., ~emits].sum(-1) / pos.sum(-1))


@dataclass
class PrefixPair:
    """One pair run on its prefixes: per step, every head's margin at every kept cell (for the learned border)."""

    pair_id: str
    cells: pd.DataFrame  # j, s, a, n_src, n_tgt, need, y (one row per cell)
    margins: np.ndarray  # int16 [cells, Q, L, H]
    peaks: np.ndarray  # float32 [cells, Q, L, H]: the row's largest attention on a shown source word


@dataclass
class Readiness:
    """Readiness of every head (and of the baselines) on the cells of a corpus; see the module docstring."""

    hist: np.ndarray  # int64 [Q, L, H, 2, bins]: margin histograms of not-ready (0) and ready (1) cells
    baselines: dict[str, np.ndarray]  # name -> int64 [2, bins]
    queries: tuple[str, ...]
    pending: int
    pairs: list[PrefixPair] = field(default_factory=list)  # kept for fitting (may be dropped to save memory)

    @property
    def auc(self) -> np.ndarray:
        """Readiness AUC per head [Q, L, H]."""
        return histogram_auc(self.hist)

    def baseline_auc(self) -> dict[str, float]:
        return {k: float(histogram_auc(v)) for k, v in self.baselines.items()}

    def table(self, borders: Sequence[int] = (0, -1, -2, -3)) -> pd.DataFrame:
        """One row per (query, layer, head): readiness AUC, cells, and premature / wait rates per border."""
        q, n_layers, n_heads = self.hist.shape[:3]
        auc = self.auc
        rows = []
        rates = {b: border_rates(self.hist, b) for b in borders}
        for qi, query in enumerate(self.queries):
            for layer in range(n_layers):
                for head in range(n_heads):
                    row = {"query": query, "layer": layer, "head": head, "readiness_auc": auc[qi, layer, head],
                           "cells": int(self.hist[qi, layer, head].sum())}
                    for b, (prem, wait) in rates.items():
                        row[f"premature_b{b}"], row[f"wait_b{b}"] = prem[qi, layer, head], wait[qi, layer, head]
                    rows.append(row)
        return pd.DataFrame(rows)

    def __add__(self, other: Readiness) -> Readiness:
        if (self.queries, self.pending, self.hist.shape) != (other.queries, other.pending, other.hist.shape):
            raise AlignheadsError("readiness of different models, query kinds or hold-backs cannot be added")
        return Readiness(self.hist + other.hist, {k: v + other.baselines[k] for k, v in self.baselines.items()},
                         self.queries, self.pending, self.pairs + other.pairs)


def _bin(m: np.ndarray) -> np.ndarray:
    return np.clip(m, -MAX_MARGIN, MAX_MARGIN) + MAX_MARGIN


def prefix_cells(pair: SentencePair, rows: Callable[[int], np.ndarray], pending: int,
                 show_future: bool = False) -> PrefixPair:
    """Every head's margin and peak at every kept cell of `pair`; `rows(shown)` gives the heads' attention
    [Q, L, H, target words, shown source words] with the first `shown` source words in the prompt."""
    need = needed_sources(pair)
    n_src, n_tgt = len(pair.src_words), len(pair.tgt_words)
    cache: dict[int, np.ndarray] = {}
    records, margins, peaks = [], [], []
    for shown, acc in prefix_steps(n_src, show_future, pending):
        # a justified prefix (every earlier aligned word is ready) and at most two words past j's need
        cells = [j for j in sorted(need) if max((need[i] for i in need if i < j), default=0) <= acc <= need[j] + 2]
        if not cells:
            continue
        if shown not in cache:
            cache[shown] = rows(shown)
        att = cache[shown]
        for j in cells:
            records.append({"j": j, "s": shown, "a": acc, "n_src": n_src, "n_tgt": n_tgt, "need": need[j],
                            "y": int(need[j] <= acc)})
            margins.append(acc - att[..., j, :].argmax(-1))
            peaks.append(att[..., j, :].max(-1))
    if not records:
        return PrefixPair(pair.id, pd.DataFrame(records), np.zeros((0, 0, 0, 0), np.int16),
                          np.zeros((0, 0, 0, 0), np.float32))
    return PrefixPair(pair.id, pd.DataFrame(records), np.stack(margins).astype(np.int16),
                      np.stack(peaks).astype(np.float32))


def prefix_pair(lm: LoadedModel, layout: PromptLayout, pair: SentencePair, queries: Sequence[str],
                pending: int, show_future: bool = False) -> PrefixPair:
    """Run `pair` on its prefixes (one forward per shown prefix) and read every head's margin at every cell."""
    from .scoring import pair_rows

    def rows(shown: int) -> np.ndarray:
        r = render(layout, lm.tokenizer, pair.src_words[:shown], target_words=pair.tgt_words)
        if len(r.tgt_tokens) != len(pair.tgt_words):
            raise AlignheadsError(f"pair {pair.id!r}: {len(r.tgt_tokens)} target words rendered, "
                                  f"{len(pair.tgt_words)} expected")
        per_query = [word_query_positions(r.tgt_tokens, emitting=q == "emit") for q in queries]
        positions = sorted({p for qp in per_query for p in qp})
        index = {p: i for i, p in enumerate(positions)}
        words = pool_source_words(pair_rows(lm, r, positions), r.src_tokens).numpy()  # [L, H, n_pos, shown]
        return np.stack([words[:, :, [index[p] for p in qp]] for qp in per_query])

    return prefix_cells(pair, rows, pending, show_future)


def baseline_margins(cells: pd.DataFrame, rho: float) -> dict[str, np.ndarray]:
    """Margins of the positional predictors on `cells`: causal (round(j·ρ̂)) and the length-oracle diagonal."""
    causal = np.rint(cells["j"].to_numpy() * rho)
    n_src, n_tgt = cells["n_src"].to_numpy(), cells["n_tgt"].to_numpy()
    oracle = np.rint(cells["j"].to_numpy() * (n_src - 1) / np.maximum(n_tgt - 1, 1))
    a = cells["a"].to_numpy()
    return {"causal_position": (a - causal).astype(int), "length_oracle_diagonal": (a - oracle).astype(int)}


def length_ratio(corpus: Corpus) -> float:
    """ρ̂: the mean source/target length ratio of the calibration pairs (the causal positional predictor's slope)."""
    return float(np.mean([len(p.src_words) / len(p.tgt_words) for p in corpus]))


def score_readiness(lm: LoadedModel, corpus: Corpus, layout: PromptLayout | None = None, *,
                    queries: Sequence[str] = ("own", "emit"), pending: int = 1, rho: float | None = None,
                    keep_pairs: bool = True, progress: bool = True) -> Readiness:
    """Readiness histograms of every head (and of the positional baselines) on `corpus` in the prefix condition."""
    from tqdm.auto import tqdm

    if pending < 0:
        raise AlignheadsError(f"pending must be >= 0 steps, got {pending}")
    layout = layout or PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
    rho = length_ratio(corpus) if rho is None else rho
    f = lm.facts
    hist = np.zeros((len(queries), f.num_layers, f.num_heads, 2, 2 * MAX_MARGIN + 1), np.int64)
    base = {k: np.zeros((2, 2 * MAX_MARGIN + 1), np.int64) for k in ("causal_position", "length_oracle_diagonal")}
    kept = []
    for pair in tqdm(list(corpus), desc="readiness", unit="pair", disable=not progress):
        pp = prefix_pair(lm, layout, pair, queries, pending)
        if not len(pp.cells):
            continue
        y = pp.cells["y"].to_numpy()
        one_hot = np.eye(hist.shape[-1], dtype=np.int64)[_bin(pp.margins.astype(np.int64))]  # [cells, Q, L, H, bins]
        for label in (0, 1):
            hist[..., label, :] += one_hot[y == label].sum(0)
        for name, m in baseline_margins(pp.cells, rho).items():
            np.add.at(base[name], (y, _bin(m)), 1)
        if keep_pairs:
            kept.append(pp)
    return Readiness(hist, base, tuple(queries), pending, kept)
