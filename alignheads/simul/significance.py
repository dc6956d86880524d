"""Paired bootstrap (sacrebleu's) between a system and a baseline's quality-latency curve at matched latency.

A simultaneous system is one point (latency, quality); a baseline is a curve of points. To compare a
point with the curve at the same latency, the baseline's quality there is interpolated linearly between
the two settings that bracket the point's latency (weights fixed on the whole test set). Every bootstrap
resample of sentences then scores the system and both bracketing baseline settings on the same sentences
(sacrebleu's sufficient statistics, `_paired_bs_test`'s procedure and p-value), so the interpolated
baseline is resampled exactly like a real system. With the point's latency equal to one setting's it is
sacrebleu's own paired bootstrap test.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import _compute_p_value

from ..base.errors import AlignheadsError
from ..base.languages import get_language

N_SAMPLES = 1000


@dataclass
class MatchedComparison:
    """System vs baseline curve at the system's latency: scores, their difference, its 95% CI and p-value."""

    metric: str
    latency: float
    system: float
    baseline: float  # interpolated at `latency` on the full set
    delta: float  # system - baseline
    ci_low: float  # 95% bootstrap interval of the difference
    ci_high: float
    p_value: float  # paired bootstrap, as sacrebleu computes it
    bracket: tuple[int, int]  # indices of the baseline settings used
    weight: float  # of the second one

    @property
    def significant(self) -> bool:
        return self.p_value < 0.05


def _metric(name: str, tgt_lang: str):
    if name == "bleu":
        return BLEU(tokenize=get_language(tgt_lang).sacrebleu_tokenize)
    if name == "chrf":
        return CHRF()
    raise AlignheadsError(f"unknown metric {name!r}; choose bleu or chrf")


def bracket(latencies: Sequence[float], x: float) -> tuple[int, int, float] | None:
    """Indices (i, j) of the baseline points whose latencies enclose x, and the weight of j; None outside."""
    order = sorted(range(len(latencies)), key=lambda i: latencies[i])
    lat = [latencies[i] for i in order]
    if not lat or not lat[0] <= x <= lat[-1]:
        return None
    for a, b in zip(range(len(lat)), range(1, len(lat)), strict=False):
        if lat[a] <= x <= lat[b]:
            w = 0.0 if lat[b] == lat[a] else (x - lat[a]) / (lat[b] - lat[a])
            return order[a], order[b], w
    return order[0], order[0], 0.0  # a single baseline point at exactly x


def compare_at_latency(
    system: Sequence[str],
    latency: float,
    baselines: Sequence[tuple[float, Sequence[str]]],
    references: Sequence[str],
    tgt_lang: str,
    metric: str = "bleu",
    n_samples: int = N_SAMPLES,
    seed: int | None = None,
) -> MatchedComparison | None:
    """Paired bootstrap of `system` against the baseline curve `[(latency, hypotheses), ...]` at `latency`.

    None when the latency lies outside the baseline's range (no interpolation is possible there).
    """
    n = len(references)
    if len(system) != n or any(len(h) != n for _, h in baselines):
        raise AlignheadsError("the system, every baseline point and the references need one line per sentence")
    found = bracket([lat for lat, _ in baselines], latency)
    if found is None or any(math.isnan(lat) for lat, _ in baselines):
        return None
    i, j, w = found
    m = _metric(metric, tgt_lang)
    refs = [list(references)]
    stats = [np.array(m._extract_corpus_statistics(list(h), refs), dtype="float32")
             for h in (system, baselines[i][1], baselines[j][1])]

    def score(s: np.ndarray) -> float:
        return float(m._compute_score_from_stats(s.sum(0)).score)

    sys_score, lo, hi = (score(s) for s in stats)
    base = (1 - w) * lo + w * hi
    if seed is None:  # sacrebleu's default seed (SACREBLEU_SEED, 12345)
        env = os.environ.get("SACREBLEU_SEED", "12345")
        seed = None if env.lower() == "none" else int(env)
    idxs = np.random.default_rng(seed).choice(n, size=(n_samples, n), replace=True)
    sampled = [np.array([score(s[k]) for k in idxs]) for s in stats]
    diffs = sampled[0] - ((1 - w) * sampled[1] + w * sampled[2])
    absolute = np.abs(diffs)
    # sacrebleu gives a system compared with itself p = 1/(n+1) ("a zero difference is not chance"); identical
    # outputs are no evidence of a difference, so they get p = 1
    p = float(_compute_p_value(absolute - absolute.mean(), abs(sys_score - base))) if absolute.any() else 1.0
    ordered = np.sort(diffs)  # 95% percentile interval, the bounds sacrebleu's estimate_ci uses
    low, high = ordered[n_samples // 40], ordered[n_samples - n_samples // 40 - 1]
    return MatchedComparison(metric, float(latency), sys_score, base, sys_score - base, float(low), float(high), p,
                             (i, j), w)
