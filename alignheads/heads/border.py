"""A learned border: a small classifier that says whether a drafted target word may go out yet.

AlignAtt's border rule reads one number per token (where the heads point, against the accessible words). The
learned border reads, per word-initial draft token, the prefix features of chosen heads — each head's margin
(accessible words minus the word its raw row points at, as `readiness` scores it) and the height of that row's
peak — and the position features a (accessible words), s (shown words), j (target word index), j / a and the causal
positional margin a − round(j·ρ̂), and predicts P(ready). It is a logistic regression (scikit-learn) fitted on the
calibration pairs' readiness cells only; its threshold θ is the swept latency parameter: a word goes out while
P(ready) ≥ θ. The feature path is the same at fit and at use: the head's raw row at the word's first token (`own`)
or at the position that emitted it (`emit`), pooled to the shown source words, argmax over them.

`FEATURE_SETS` names the ablation's three variants: heads only, position only, heads and position.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np

from ..base.errors import AlignheadsError
from .headset import Head
from .readiness import MAX_MARGIN, PrefixPair

POSITION = ("a", "s", "j", "j_per_a", "causal_margin")
FEATURE_SETS = ("heads", "position", "heads+position")
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def position_features(a: np.ndarray, s: np.ndarray, j: np.ndarray, rho: float) -> np.ndarray:
    """[cells, 5]: accessible and shown words, target word index, j / a, and a − round(j·ρ̂)."""
    a, s, j = (np.asarray(x, dtype=np.float64) for x in (a, s, j))
    return np.stack([a, s, j, j / np.maximum(a, 1.0), a - np.rint(j * rho)], axis=-1)


def head_features(margins: np.ndarray, peaks: np.ndarray) -> np.ndarray:
    """[cells, 2k]: each head's clipped margin, then each head's peak attention."""
    return np.concatenate([np.clip(margins, -MAX_MARGIN, MAX_MARGIN).astype(np.float64),
                           peaks.astype(np.float64)], axis=-1)


@dataclass
class BorderModel:
    """A fitted learned border: which heads and features, the standardised logistic regression, its thresholds."""

    heads: list[Head]
    features: list[str]
    mean: list[float]
    scale: list[float]
    coef: list[float]
    intercept: float
    rho: float
    pending: int
    variant: Literal["heads", "position", "heads+position"] = "heads+position"
    thresholds: list[float] = field(default_factory=lambda: list(THRESHOLDS))
    provenance: dict = field(default_factory=dict)  # calibration corpus, cells, dtype, held-out AUC

    def design(self, margins: np.ndarray, peaks: np.ndarray, a, s, j) -> np.ndarray:
        """The feature matrix of `variant` from per-head margins/peaks [cells, k] and positions [cells]."""
        parts = []
        if self.variant != "position":
            parts.append(head_features(margins, peaks))
        if self.variant != "heads":
            parts.append(position_features(a, s, j, self.rho))
        return np.concatenate(parts, axis=-1)

    def p_ready(self, x: np.ndarray) -> np.ndarray:
        """P(ready) for feature rows `x` [cells, features]."""
        z = (np.asarray(x, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)
        return 1.0 / (1.0 + np.exp(-(z @ np.asarray(self.coef) + self.intercept)))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["heads"] = [str(h) for h in self.heads]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any], where: str = "border") -> BorderModel:
        try:
            model = cls(**{**d, "heads": [Head.parse(h) for h in d["heads"]]})
        except (TypeError, KeyError, ValueError) as e:
            raise AlignheadsError(f"{where}: not a learned border ({e})") from None
        n = len(model.features)
        if model.variant not in FEATURE_SETS or not all(len(v) == n for v in (model.mean, model.scale, model.coef)):
            raise AlignheadsError(f"{where}: variant must be one of {FEATURE_SETS} and mean, scale and coef must "
                                  f"have one number per feature ({n})")
        if any(not 0.0 < t < 1.0 for t in model.thresholds):
            raise AlignheadsError(f"{where}: thresholds must lie between 0 and 1, got {model.thresholds}")
        return model


def cell_table(pairs: Sequence[PrefixPair], heads: Sequence[Head], queries: Sequence[str]
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(margins [cells, k], peaks [cells, k], positions [cells, 4]: a, s, j and the index of the cell's pair (for
    bootstraps over pairs), labels y [cells]) of `heads` over `pairs`."""
    if not pairs:
        raise AlignheadsError("no readiness cells to fit on (no pair had a gold-aligned target word)")
    margins, peaks, pos, y = [], [], [], []
    for i, pp in enumerate(pairs):
        if not len(pp.cells):
            continue
        q = [queries.index(h.query) for h in heads]
        margins.append(pp.margins[:, q, [h.layer for h in heads], [h.head for h in heads]])
        peaks.append(pp.peaks[:, q, [h.layer for h in heads], [h.head for h in heads]])
        c = pp.cells
        pos.append(np.stack([c["a"], c["s"], c["j"], np.full(len(c), i)], axis=-1))
        y.append(c["y"].to_numpy())
    return np.concatenate(margins), np.concatenate(peaks), np.concatenate(pos), np.concatenate(y)


def fit_border(pairs: Sequence[PrefixPair], heads: Sequence[Head], queries: Sequence[str], rho: float, pending: int,
               variant: str = "heads+position", c: float = 1.0) -> BorderModel:
    """Fit the learned border on the readiness cells of calibration pairs (logistic regression, standardised)."""
    from sklearn.linear_model import LogisticRegression

    if variant not in FEATURE_SETS:
        raise AlignheadsError(f"variant must be one of {FEATURE_SETS}, got {variant!r}")
    if variant != "position" and not heads:
        raise AlignheadsError("the learned border needs heads for its head features")
    margins, peaks, pos, y = cell_table(pairs, heads, queries)
    if len(set(y.tolist())) < 2:
        raise AlignheadsError(f"the calibration cells are all {'ready' if y[0] else 'not ready'}: nothing to learn")
    names = ([f"margin {h}" for h in heads] + [f"peak {h}" for h in heads] if variant != "position" else []) + (
        list(POSITION) if variant != "heads" else [])
    model = BorderModel(list(heads), names, [], [], [], 0.0, rho, pending, variant)
    x = model.design(margins, peaks, pos[:, 0], pos[:, 1], pos[:, 2])
    mean, scale = x.mean(0), x.std(0)
    scale[scale == 0] = 1.0
    lr = LogisticRegression(C=c, max_iter=2000).fit((x - mean) / scale, y)
    model.mean, model.scale = mean.tolist(), scale.tolist()
    model.coef, model.intercept = lr.coef_[0].tolist(), float(lr.intercept_[0])
    model.provenance = {"cells": int(len(y)), "ready_share": float(y.mean()), "pairs": len(pairs)}
    return model


def border_auc(model: BorderModel, pairs: Sequence[PrefixPair], queries: Sequence[str], n_boot: int = 1000,
               seed: int = 0) -> dict[str, float]:
    """Readiness AUC of the border's P(ready) on `pairs`' cells, with a 95 % bootstrap interval over pairs."""
    from sklearn.metrics import roc_auc_score

    margins, peaks, pos, y = cell_table(pairs, model.heads, queries)
    p = model.p_ready(model.design(margins, peaks, pos[:, 0], pos[:, 1], pos[:, 2]))
    owner = pos[:, 3].astype(int)
    boots = [roc_auc_score(y[idx], p[idx]) for idx in pair_resamples(owner, y, n_boot, seed)]
    lo, hi = np.percentile(boots, [2.5, 97.5]) if boots else (np.nan, np.nan)
    return {"auc": float(roc_auc_score(y, p)), "ci95": [float(lo), float(hi)], "cells": int(len(y)),
            "pairs": len(np.unique(owner))}


def pair_resamples(owner: np.ndarray, y: np.ndarray, n_boot: int, seed: int = 0):
    """Cell indices of `n_boot` bootstrap resamples over pairs (`owner`: each cell's pair); resamples with one class
    only are skipped (no AUC)."""
    groups = [np.flatnonzero(owner == i) for i in np.unique(owner)]
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        idx = np.concatenate([groups[k] for k in rng.integers(0, len(groups), len(groups))])
        if len(set(y[idx].tolist())) == 2:
            yield idx
