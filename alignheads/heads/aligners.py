"""Aligners built from heads, compared on held-out pairs: the diagonal, the mean of all heads, top-k by TS, the
greedy ensemble and learned weights — each fitted on calibration pairs only (the figures' table and bench_a4l)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import numpy as np

from ..base.errors import AlignheadsError
from ..corpus.pairs import Corpus
from .ensemble import ensemble_metrics
from .learned import WeightConfig, fit_weights
from .scoring import HeadScores, combine_scores
from .selection import SelectionConfig, greedy_ensemble, topk_by_ts

METRICS = ("aer", "precision", "recall")


def compare_aligners(calib_parts: Sequence[tuple[HeadScores, Corpus]], held: tuple[HeadScores, Corpus], *,
                     ks: Sequence[int] = (4,), threshold: float = 0.1, mean_queries: Sequence[str] = ("own",),
                     learned: Mapping[str, WeightConfig] | None = None) -> list[dict]:
    """One row per aligner (aligner, heads, aer, precision, recall, note, fit_s), fitted on `calib_parts` and
    evaluated on `held`; `learned` names the weight fits to run (default: one, `WeightConfig()`). An aligner that
    cannot be built (no head above the threshold, no positive weight) gets NaN and a note."""
    calib, calib_corpus = combine_scores(list(calib_parts)) if len(calib_parts) > 1 else calib_parts[0]
    base = held[0].baselines.set_index(["kind", "query"])
    none = {m: np.nan for m in METRICS}
    rows = [{"aligner": "diagonal", "heads": "", **{m: float(base.loc[("diagonal", "own"), m]) for m in METRICS}}]
    for q in mean_queries:  # the scorer's baseline: raw rows of every head averaged, then pooled to words
        label = "mean of all heads" + ("" if list(mean_queries) == ["own"] else f" @{q}")
        rows.append({"aligner": label, "heads": "all", **{m: float(base.loc[("mean_heads", q), m]) for m in METRICS}})

    def fitted(label: str, fit) -> dict:
        t0 = time.perf_counter()
        try:
            heads, weights, described = fit()
        except AlignheadsError as e:  # e.g. a random tiny model: no head earns a positive weight
            return {"aligner": label, "heads": "", **none, "note": str(e)}
        if not heads:
            return {"aligner": label, "heads": "", **none, "note": f"no head has ts > {threshold}"}
        return {"aligner": label, "heads": described, **ensemble_metrics(*held, heads, weights=weights),
                "fit_s": time.perf_counter() - t0}

    def top(k):
        heads = topk_by_ts(calib, k, "own", threshold)
        return heads, None, " ".join(map(str, heads))

    def greedy():
        heads, _ = greedy_ensemble(calib, calib_corpus, SelectionConfig(threshold=threshold))
        return heads, None, " ".join(map(str, heads))

    def weights(cfg):
        fit = fit_weights(list(calib_parts), cfg)
        return fit.heads, list(fit.weights.values()), fit.describe()

    rows += [fitted(f"top-{k} by TS", lambda k=k: top(k)) for k in ks]
    rows.append(fitted("greedy ensemble", greedy))
    fits = learned or {"learned weights": WeightConfig()}
    rows += [fitted(label, lambda c=c: weights(c)) for label, c in fits.items()]
    return rows
