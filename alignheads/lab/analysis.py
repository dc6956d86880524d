"""Glue between scored heads and plots for interactive analysis: leaderboards, one pair's attention, comparisons.

The notebooks and the figure pipeline call these; the plotting itself is in `alignheads.lab.viz`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..base.errors import AlignheadsError
from ..corpus.pairs import Corpus, SentencePair
from ..heads.combine import RENORMALISED, SET_MEAN, combine_heads
from ..heads.headset import Head, HeadLike, HeadSet, HeadSetError
from ..heads.scoring import HeadScores
from ..heads.selection import topk_by_ts
from ..model.loader import ModelFacts
from . import viz


def leaderboard(scores: HeadScores, k: int = 8, column: str = "ts", query: str = "own") -> pd.DataFrame:
    """The k best heads by `column` at one query position, followed by the baseline rows, for side-by-side reading."""
    low = column in viz.LOWER_IS_BETTER
    heads = scores.heads[scores.heads["query"] == query].sort_values(column, ascending=low).head(k)
    base = scores.baselines[scores.baselines["query"] == query]
    cols = ["kind", "query", "layer", "head", "ts", "source_acc", "gold_mass", "aer", "precision", "recall"]
    return pd.concat([heads, base])[cols].reset_index(drop=True)


def pair_attention(scores: HeadScores, pair_index: int, heads: Sequence[HeadLike]) -> np.ndarray:
    """Word-level attention [tgt words x src words] of one scored pair: one head's weights as the model applied
    them, or for several the "head set mean (rows renormalised)" — the explorer's set map, by `combine_heads`."""
    stack = scores.pair_heads(pair_index, heads)
    return stack[0] if len(stack) == 1 else combine_heads(stack, how=RENORMALISED)[0]


def scored_pair(scores: HeadScores, corpus: Corpus, pair_index: int) -> SentencePair:
    """The corpus pair behind `scores`' pair number `pair_index`."""
    if not 0 <= pair_index < len(scores.pair_ids):
        raise AlignheadsError(f"pair index {pair_index} out of range: {len(scores.pair_ids)} pairs were scored")
    by_id = {p.id: p for p in corpus}
    pid = scores.pair_ids[pair_index]
    if pid not in by_id:
        raise AlignheadsError(f"pair {pid!r} was scored but is not in corpus {corpus.name!r}")
    return by_id[pid]


def attention_figure(scores: HeadScores, corpus: Corpus, pair_index: int, heads: Sequence[HeadLike], *,
                     title: str | None = None, save: str | Path | None = None) -> Figure:
    """`viz.attention_map` of one scored pair for one head or the mean of a head set, gold links overlaid."""
    pair = scored_pair(scores, corpus, pair_index)
    hs = [Head.parse(h) for h in heads]
    label = str(hs[0]) if len(hs) == 1 else f"{SET_MEAN} of {len(hs)} heads ({' '.join(map(str, hs))})"
    return viz.attention_map(pair_attention(scores, pair_index, hs), pair.src_words, pair.tgt_words,
                             sure=pair.sure, possible=pair.possible - pair.sure,
                             title=title or f"{pair.id}: {label}", save=save)


def example_pair_index(scores: HeadScores, corpus: Corpus, pair_id: str | None = None,
                       words: tuple[int, int] = (9, 16)) -> int:
    """Index (in `scores`) of `pair_id`, or of the first scored pair whose source has a readable length."""
    by_id = {p.id: p for p in corpus}
    if pair_id is not None:
        if pair_id not in scores.pair_ids:
            raise AlignheadsError(f"pair {pair_id!r} was not scored; scored: {scores.pair_ids[:8]}...")
        return scores.pair_ids.index(pair_id)
    for i, pid in enumerate(scores.pair_ids):
        if words[0] <= len(by_id[pid].src_words) <= words[1]:
            return i
    return 0


def pick_heads(scores: HeadScores, heads: Sequence[HeadLike] | None = None, k: int = 3,
               query: str = "own") -> list[Head]:
    """`heads` as `Head`s ((layer, head) pairs read at `query`), or the k best by TS at `query` when empty."""
    if heads:
        return [Head.parse(tuple(h) + (query,) if isinstance(h, (tuple, list)) and len(h) == 2 else h)
                for h in heads]
    return topk_by_ts(scores, k, query, threshold=-np.inf)


def published_comparison(ours: HeadSet, published: HeadSet, facts: ModelFacts) -> tuple[pd.DataFrame, str]:
    """The published heads next to our calibration: our TS (own) and rank of each, and whether we chose it;
    plus a verdict on whether the published set fits this model at all."""
    try:
        published.validate(facts, strict_model=False)
        same_model = published.model_id.lower() == facts.model_id.lower()
        verdict = (f"the published {published.model_id} heads fit {facts.model_id}"
                   + ("" if same_model else " in shape only (another model: head indices mean nothing here)"))
    except HeadSetError as e:
        return pd.DataFrame([{"layer": h.layer, "head": h.head, "paper_ts": h.ts} for h in published.heads]), (
            f"not comparable: {e}")
    ts = np.asarray(ours.scores.get("ts", {}).get("own", []), dtype=float)
    order = {} if ts.size == 0 else {
        (int(i // ts.shape[1]), int(i % ts.shape[1])): r for r, i in enumerate(np.argsort(-np.nan_to_num(ts, nan=-1),
                                                                                      axis=None), start=1)}
    chosen = {(h.layer, h.head) for h in ours.heads}
    rows = [{"layer": h.layer, "head": h.head, "paper_ts": h.ts,
             "our_ts": float(ts[h.layer, h.head]) if ts.size else None,
             "our_rank": order.get((h.layer, h.head)), "in_our_set": (h.layer, h.head) in chosen}
            for h in published.heads]
    return pd.DataFrame(rows), verdict


def split_tables(scores: HeadScores, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Score tables of two seeded random halves of the scored pairs (the stability gate's first split)."""
    n = len(scores.pair_ids)
    if n < 2:
        raise AlignheadsError(f"a half-split needs at least 2 scored pairs, have {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return scores.subset(perm[: n // 2]), scores.subset(perm[n // 2:])
