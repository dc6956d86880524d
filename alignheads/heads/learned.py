"""Learned head weights: a sparse non-negative combination of heads x query positions, fitted on calibration pairs.

Features of a (target word, source word) cell are every head's word attention at both query positions
(`own`, `emit`), each row renormalised over the source words as `ensemble.ensemble_links` does; only
target words with a gold link are used. The aligner is the argmax over source words of the weighted sum,
and the same weights replace the plain mean over heads in the translator's AlignAtt decision.

Two fits, both L1-regularised with every weight >= 0 (hence sparse):

- `softmax` (default): a conditional logit per target word, softmax over its source words, maximising the
  probability of its gold words (scipy L-BFGS-B with bounds w >= 0, penalty `strength * sum(w)`). It models
  the argmax decision itself.
- `logistic`: scikit-learn's L1 logistic regression on each cell (gold link or not), C = 1 / strength;
  features whose weight comes out negative are removed and the model refitted until none is.

Several calibration corpora weigh the same in the loss (`balance`), so 900 sparse-anchor pairs do not
drown 36 exhaustively aligned ones; the strength is chosen by cross-validated AER on the calibration pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from ..base.errors import AlignheadsError
from ..corpus.pairs import Corpus, SentencePair
from .combine import RENORMALISED, combine_heads
from .ensemble import ensemble_metrics
from .headset import Head
from .scoring import HeadScores

GRIDS = {"softmax": (0.0, 0.001, 0.003, 0.01, 0.03), "logistic": (3.0, 10.0, 30.0, 100.0, 300.0)}


@dataclass(frozen=True)
class WeightConfig:
    """How weights are fitted (see the module docstring); `strength` None = chosen from the grid on an inner split."""

    objective: Literal["softmax", "logistic"] = "softmax"
    strength: float | None = None  # L1 strength (logistic: C = 1 / strength)
    grid: tuple[float, ...] | None = None  # default GRIDS[objective]
    balance: bool = True  # every calibration corpus weighs the same in the loss
    folds: int = 3  # cross-validation folds (over the calibration pairs) that choose the strength
    min_weight: float = 0.01  # weights below this share of the total are dropped
    max_iter: int = 1000
    seed: int = 0

    def __post_init__(self):
        if self.objective not in GRIDS:
            raise AlignheadsError(f"objective must be one of {', '.join(GRIDS)}, not {self.objective!r}")


@dataclass
class LearnedWeights:
    """Fitted weights (sum 1, heaviest first) and how they were fitted."""

    weights: dict[Head, float]
    strength: float
    objective: str
    n_pairs: int
    n_cells: int
    search: list[dict] = field(default_factory=list)  # inner-split AER per strength (when it was searched)

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
    """[n_tgt, n_src, features]: pair i's word attention of every head and query, rows renormalised over sources
    (the per-head stack of `combine_heads` with RENORMALISED, so a weighted sum is `ensemble_attention`'s map)."""
    w = scores.word_attention[i].words  # [Q, L, H, n_tgt, n_src]
    _, per_head = combine_heads(w.reshape(-1, *w.shape[-2:]), how=RENORMALISED)
    return np.moveaxis(per_head, 0, -1)


def gold_pairs(scores: HeadScores, corpus: Corpus) -> list[SentencePair]:
    """The corpus pair of every scored pair (matched by id)."""
    by_id = {p.id: p for p in corpus}
    missing = [pid for pid in scores.pair_ids if pid not in by_id]
    if missing:
        raise AlignheadsError(f"scored pair {missing[0]!r} is not in corpus {corpus.name!r}")
    return [by_id[pid] for pid in scores.pair_ids]


@dataclass
class _Cells:
    """Training cells: features x, gold labels y, the target word each belongs to, and that word's loss weight."""

    x: np.ndarray  # [cells, features]
    y: np.ndarray  # [cells] bool
    word: np.ndarray  # [cells] index of the target word (cells of one word are contiguous)
    word_weight: np.ndarray  # [words]


def _cells(parts, pairs: Sequence[tuple[int, int]], balance: bool) -> _Cells:
    xs, ys, words, owner = [], [], [], []
    per_part = {k: 0 for k, _ in pairs}
    for part, i in pairs:
        scores, golds = parts[part]
        feats = pair_features(scores, i)
        for j in sorted(golds[i].linked_targets):
            xs.append(feats[j])
            ys.append(np.array([(s, j) in golds[i].possible for s in range(feats.shape[1])]))
            words.append(np.full(feats.shape[1], len(owner)))
            owner.append(part)
            per_part[part] += 1
    if not xs:
        raise AlignheadsError("the calibration pairs have no gold-linked target word to fit on")
    w = np.array([1.0 / per_part[k] if balance else 1.0 for k in owner])
    return _Cells(np.concatenate(xs).astype(np.float64), np.concatenate(ys), np.concatenate(words), w / w.sum())


def _fit_softmax(c: _Cells, strength: float, cfg: WeightConfig) -> np.ndarray:
    from scipy.optimize import minimize

    starts = np.flatnonzero(np.r_[True, c.word[1:] != c.word[:-1]])
    alpha = c.word_weight[c.word]

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = c.x @ w
        z = z - np.maximum.reduceat(z, starts)[c.word]
        e = np.exp(z)
        total, gold = np.add.reduceat(e, starts), np.add.reduceat(e * c.y, starts)
        value = -(c.word_weight * (np.log(np.maximum(gold, 1e-300)) - np.log(total))).sum() + strength * w.sum()
        p_all, p_gold = e / total[c.word], e * c.y / np.maximum(gold, 1e-300)[c.word]
        return value, (alpha * (p_all - p_gold)) @ c.x + strength

    n = c.x.shape[1]
    result = minimize(loss, np.full(n, 0.1), jac=True, method="L-BFGS-B", bounds=[(0.0, None)] * n,
                      options={"maxiter": cfg.max_iter})
    return result.x


def _fit_logistic(c: _Cells, strength: float, cfg: WeightConfig) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    sample_weight = c.word_weight[c.word] * len(c.word)
    active = np.ones(c.x.shape[1], dtype=bool)
    while active.any():
        model = LogisticRegression(l1_ratio=1.0, C=1.0 / strength, solver="liblinear", max_iter=cfg.max_iter,
                                   random_state=cfg.seed)
        model.fit(c.x[:, active], c.y, sample_weight=sample_weight)
        coef = model.coef_[0]
        if (coef >= 0).all():
            break
        active[np.flatnonzero(active)[coef < 0]] = False
    w = np.zeros(c.x.shape[1])
    if active.any():
        w[active] = coef
    return w


def _fit(c: _Cells, strength: float, cfg: WeightConfig) -> np.ndarray:
    return (_fit_softmax if cfg.objective == "softmax" else _fit_logistic)(c, strength, cfg)


def _held_aer(parts, held: Sequence[tuple[int, int]], w: np.ndarray, names: Sequence[Head]) -> float:
    """AER of the weights `w` (over `names`) on the held pairs, averaged over corpora (each corpus counts once, as
    in the balanced loss); all-zero weights align nothing (AER 1)."""
    nonzero = np.flatnonzero(w > 0)
    if not len(nonzero):
        return 1.0
    heads, weights = [names[k] for k in nonzero], [float(w[k]) for k in nonzero]
    aers = [ensemble_metrics(scores, golds, heads, [i for kk, i in held if kk == k], weights)["aer"]
            for k, (scores, golds) in enumerate(parts) if any(kk == k for kk, _ in held)]
    return float(np.mean(aers))


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
    grid = sorted(cfg.grid or GRIDS[cfg.objective])
    search, strength = [], cfg.strength
    if strength is None:  # choose the L1 strength by AER on held-out folds of the calibration pairs
        fold_of = np.random.default_rng(cfg.seed).permutation(len(everything)) % max(2, min(cfg.folds,
                                                                                             len(everything)))
        splits = [([p for p, f in zip(everything, fold_of, strict=True) if f != k],
                   [p for p, f in zip(everything, fold_of, strict=True) if f == k]) for k in sorted(set(fold_of))]
        fitted = [(_cells(parts, fit_on, cfg.balance), held) for fit_on, held in splits]
        for s in grid:
            ws = [(_fit(cells, s, cfg), held) for cells, held in fitted]
            search.append({"strength": s, "aer": float(np.mean([_held_aer(parts, held, w, names)
                                                                 for w, held in ws])),
                           "nonzero": int(np.mean([(w > 0).sum() for w, _ in ws]))})
        strength = min(search, key=lambda r: (r["nonzero"] == 0, r["aer"], r["nonzero"]))["strength"]
    cells = _cells(parts, everything, cfg.balance)
    w = _fit(cells, strength, cfg)
    for weaker in [s for s in reversed(grid) if s < strength]:  # too strong an L1 zeroes every head: weaken it
        if w.sum() > 0:
            break
        strength, w = weaker, _fit(cells, weaker, cfg)
    if w.sum() <= 0:
        raise AlignheadsError(f"no head got a positive weight (L1 strength down to {strength}); pass a weaker one")
    w = w / w.sum()
    w[(w < cfg.min_weight) & (w < w.max())] = 0.0  # the heaviest head always stays
    w = w / w.sum()
    weights = {names[k]: round(float(w[k]), 6) for k in np.argsort(-w) if w[k] > 0}
    return LearnedWeights(weights, strength, cfg.objective, len(everything), len(cells.y), search)
