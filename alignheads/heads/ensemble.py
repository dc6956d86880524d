"""A head set as a word aligner on scored pairs: its attention map, its links and their AER against gold."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..base.metrics import aer_metrics, alignment_counts
from ..corpus.pairs import Corpus, SentencePair
from .combine import RENORMALISED, combine_heads
from .headset import Head
from .scoring import HeadScores


def ensemble_attention(scores: HeadScores, heads: Sequence[Head], pair_index: int,
                       weights: Sequence[float] | None = None) -> np.ndarray:
    """A head set's word-level attention on one scored pair [tgt words, src words]: the "head set mean (rows
    renormalised)" of `combine_heads`, weighted when `weights` are given."""
    return combine_heads(scores.pair_heads(pair_index, heads), weights, RENORMALISED)[0]


def ensemble_links(scores: HeadScores, heads: Sequence[Head], pair_index: int,
                   weights: Sequence[float] | None = None) -> list[tuple[int, int]]:
    """Word alignment of one calibration pair by a head ensemble: argmax of `ensemble_attention`."""
    best = ensemble_attention(scores, heads, pair_index, weights).argmax(-1)
    return [(int(s), t) for t, s in enumerate(best)]


def ensemble_metrics(scores: HeadScores, corpus: Corpus | Sequence[SentencePair], heads: Sequence[Head],
                     pairs: Sequence[int] | None = None, weights: Sequence[float] | None = None) -> dict[str, float]:
    """AER / precision / recall of a (weighted) head ensemble over the scored pairs (corpus-level counts); `corpus`
    holds the gold pairs (matched by id)."""
    by_id = {p.id: p for p in corpus}
    idx = range(len(scores.pair_ids)) if pairs is None else pairs
    c = sum((alignment_counts(ensemble_links(scores, heads, i, weights), by_id[scores.pair_ids[i]]) for i in idx),
            np.zeros(4))
    return aer_metrics(c)
