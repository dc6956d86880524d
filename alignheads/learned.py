"""Learned head weights: a sparse non-negative combination of heads x query positions, fitted on calibration pairs.

Every (target word, source word) cell of a calibration pair whose target word has a gold link is one
sample; its features are every head's word attention at both query positions (`own`, `emit`), each row
renormalised over the source words as `selection.ensemble_links` does. An L1-regularised logistic
regression (scikit-learn) predicts whether the cell is a gold link; features whose weight comes out
negative are removed and the model refitted until every weight is >= 0. The weighted sum's argmax over
source words is the word aligner (the intercept cannot move an argmax), and the same weights replace the
plain mean over heads in the translator's AlignAtt decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .data import Corpus, SentencePair
from .errors import AlignheadsError
from .headset import Head
from .metrics import aer_metrics, alignment_counts
from .scoring import HeadScores


@dataclass(frozen=True)
class WeightConfig:
    """How weights are fitted: the L1 strength (chosen on an inner split of the calibration pairs when None)."""

    C: float | None = None  # inverse L1 strength; None = the grid value with the lowest AER on an inner split
    grid: tuple[float, ...] = (0.003, 0.01, 0.03, 0.1, 0.3)
    min_weight: float = 0.01  # weights below this share of the total are dropped
    max_iter: int = 5000
    seed: int = 0


@dataclass
class LearnedWeights:
    """Fitted weights (sum 1, heaviest first) and how they were fitted."""

    weights: dict[Head, float]
    C: float
    n_pairs: int
    n_samples: int
    search: list[dict] = field(default_factory=list)  # inner-split AER per C (when C was searched)

    @property
    def heads(self) -> list[Head]:
        return list(self.weights)

    def describe(self) -> str:
        return " ".join(f"{h}:{w:.2f}" for h, w in self.weights.items())


def feature_heads(scores: HeadScores) -> list[Head]:
    """The head x query position of every feature column, in `pair_features` order."""
    return [Head(layer, head, q) for q in scores.queries for layer in range(scores.n_layers)
            for head in range(scores.n_heads)]


def pair_features(scores: HeadScores, i: int) -> np.ndarray:
    """[n_tgt, n_src, features]: pair i's word attention of every head and query, rows renormalised over sources."""
    w = scores.word_attention[i].words  # [Q, L, H, n_tgt, n_src]
    w = w / np.clip(w.sum(-1, keepdims=True), 1e-9, None)
    return np.moveaxis(w.reshape(-1, *w.shape[-2:]), 0, -1)


def gold_pairs(scores: HeadScores, corpus: Corpus) -> list[SentencePair]:
    """The corpus pair of every scored pair (matched by id)."""
    by_id = {p.id: p for p in corpus}
    missing = [pid for pid in scores.pair_ids if pid not in by_id]
    if missing:
        raise AlignheadsError(f"scored pair {missing[0]!r} is not in corpus {corpus.name!r}")
    return [by_id[pid] for pid in scores.pair_ids]


def _samples(parts: Sequence[tuple[HeadScores, list[SentencePair]]], pairs: Sequence[tuple[int, int]]):
    """Rows (cells of gold-linked target words) and labels of the chosen (part, pair index) pairs."""
    xs, ys = [], []
    for part, i in pairs:
        scores, golds = parts[part]
        gold = golds[i]
        feats = pair_features(scores, i)
        for j in sorted(gold.linked_targets):
            xs.append(feats[j])
            ys.append(np.array([(s, j) in gold.possible for s in range(feats.shape[1])]))
    return np.concatenate(xs), np.concatenate(ys)


def _fit(x: np.ndarray, y: np.ndarray, C: float, cfg: WeightConfig) -> np.ndarray:
    """Non-negative L1 logistic regression: refit without the negative features until none is left."""
    from sklearn.linear_model import LogisticRegression

    active = np.ones(x.shape[1], dtype=bool)
    while True:
        model = LogisticRegression(l1_ratio=1.0, C=C, solver="liblinear", max_iter=cfg.max_iter,
                                   random_state=cfg.seed)
        model.fit(x[:, active], y)
        coef = model.coef_[0]
        if (coef >= 0).all():
            w = np.zeros(x.shape[1])
            w[active] = coef
            return w
        active[np.flatnonzero(active)[coef < 0]] = False
        if not active.any():
            return np.zeros(x.shape[1])


def weighted_links(scores: HeadScores, i: int, weights: np.ndarray) -> list[tuple[int, int]]:
    """Word alignment of pair i: each target word -> argmax source word of the weighted features."""
    best = (pair_features(scores, i) @ weights).argmax(-1)
    return [(int(s), t) for t, s in enumerate(best)]


def weighted_aer(scores: HeadScores, corpus: Corpus, weights: np.ndarray | dict[Head, float],
                 pairs: Sequence[int] | None = None) -> dict[str, float]:
    """AER / precision / recall of a weighted head combination on scored pairs (corpus-level counts)."""
    if isinstance(weights, dict):
        index = {h: k for k, h in enumerate(feature_heads(scores))}
        vec = np.zeros(len(index))
        for h, w in weights.items():
            vec[index[h]] = w
        weights = vec
    golds = gold_pairs(scores, corpus)
    idx = range(len(scores.pair_ids)) if pairs is None else pairs
    return aer_metrics(sum((alignment_counts(weighted_links(scores, i, weights), golds[i]) for i in idx),
                           np.zeros(4)))


def fit_weights(parts: Sequence[tuple[HeadScores, Corpus]], cfg: WeightConfig = WeightConfig()) -> LearnedWeights:
    """Fit head weights on the scored calibration corpora `parts` (all scored with the same model and queries)."""
    if not parts:
        raise AlignheadsError("fit_weights needs at least one scored calibration corpus")
    names = feature_heads(parts[0][0])
    if any(feature_heads(s) != names for s, _ in parts):
        raise AlignheadsError("calibration corpora were scored with different models or query positions")
    parts = [(s, gold_pairs(s, c)) for s, c in parts]
    everything = [(k, i) for k, (s, _) in enumerate(parts) for i in range(len(s.pair_ids))]
    if len(everything) < 2:
        raise AlignheadsError(f"fitting head weights needs at least 2 calibration pairs, got {len(everything)}")
    search = []
    C = cfg.C
    if C is None:  # choose the L1 strength by AER on a seeded half of the calibration pairs
        order = np.random.default_rng(cfg.seed).permutation(len(everything))
        fit_on = [everything[k] for k in sorted(order[: len(order) // 2])]
        held = [everything[k] for k in sorted(order[len(order) // 2:])]
        x, y = _samples(parts, fit_on)
        for c in cfg.grid:
            w = _fit(x, y, c, cfg)
            counts = sum((alignment_counts(weighted_links(parts[k][0], i, w), parts[k][1][i]) for k, i in held),
                         np.zeros(4))
            search.append({"C": c, **aer_metrics(counts), "nonzero": int((w > 0).sum())})
        C = min(search, key=lambda r: (r["nonzero"] == 0, r["aer"], r["nonzero"]))["C"]
    x, y = _samples(parts, everything)
    w = _fit(x, y, C, cfg)
    for larger in sorted(c for c in cfg.grid if c > C):  # too strong an L1 zeroes every head: weaken it
        if w.sum() > 0:
            break
        C, w = larger, _fit(x, y, larger, cfg)
    if w.sum() <= 0:
        raise AlignheadsError(f"no head got a positive weight (C up to {C}); pass a larger C")
    w = w / w.sum()
    w[w < cfg.min_weight] = 0.0
    w = w / w.sum()
    order = np.argsort(-w)
    weights = {names[k]: round(float(w[k]), 6) for k in order if w[k] > 0}
    return LearnedWeights(weights, C, len(everything), len(y), search)
