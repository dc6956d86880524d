"""Paired bootstrap at matched latency: equals sacrebleu's own paired bootstrap on a real baseline point."""

from __future__ import annotations

import random

import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from alignheads.simul.significance import bracket, compare_at_latency

REFS = [f"der kleine Hund {w} heute im Garten und bellt laut" for w in
        ("spielt", "schläft", "liegt", "sitzt", "läuft", "wartet", "frisst", "träumt")] * 5


def noisy(seed: int, drop: float) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(w for w in r.split() if rng.random() > drop) for r in REFS]


@pytest.mark.parametrize("metric", ["bleu", "chrf"])
def test_on_a_baseline_point_it_is_sacrebleus_paired_bootstrap(metric):
    system, base = noisy(1, 0.15), noisy(2, 0.35)
    ours = compare_at_latency(system, 2.0, [(2.0, base), (3.0, noisy(3, 0.1))], REFS, "de", metric)
    name, m = ("BLEU", BLEU()) if metric == "bleu" else ("chrF2", CHRF())
    _, scores = PairedTest([("base", base), ("sys", system)], {name: m}, [REFS], test_type="bs", n_samples=1000)()
    theirs = scores[name][1]
    assert ours.bracket == (0, 1) and ours.weight == 0.0
    assert ours.system == pytest.approx(theirs.score) and ours.baseline == pytest.approx(scores[name][0].score)
    assert ours.p_value == pytest.approx(theirs.p_value)
    assert ours.delta > 0 and ours.ci_low <= ours.delta <= ours.ci_high


def test_interpolates_between_the_bracketing_settings():
    lo, hi = noisy(4, 0.5), noisy(5, 0.05)
    res = compare_at_latency(lo, 2.5, [(3.0, hi), (2.0, lo)], REFS, "de", "bleu")
    full_lo = BLEU().corpus_score(lo, [REFS]).score
    full_hi = BLEU().corpus_score(hi, [REFS]).score
    assert res.bracket == (1, 0) and res.weight == pytest.approx(0.5)
    assert res.baseline == pytest.approx((full_lo + full_hi) / 2)
    assert res.delta < 0 and res.significant  # half-way to a much better setting: clearly worse
    assert compare_at_latency(lo, 3.5, [(3.0, hi), (2.0, lo)], REFS, "de") is None  # outside the curve


def test_bracket_orders_points_by_latency():
    assert bracket([3.0, 1.0, 2.0], 1.5) == (1, 2, 0.5)
    assert bracket([3.0, 1.0, 2.0], 3.0) == (2, 0, 1.0)
    assert bracket([1.0], 1.0) == (0, 0, 0.0)
    assert bracket([1.0, 2.0], 0.5) is None


def test_every_resample_scores_both_bracketing_settings():
    """Each bootstrap sample compares the system with the interpolation of *both* bracketing settings, resampled on
    the same sentences: the interval and p-value equal an independent re-computation at weight 0.5, and a system
    equal to the second setting at its own latency (weight 1) differs by exactly 0 in every sample."""
    import numpy as np

    system, lo, hi = noisy(6, 0.2), noisy(7, 0.45), noisy(8, 0.05)
    n, samples = len(REFS), 200
    res = compare_at_latency(system, 2.5, [(2.0, lo), (3.0, hi)], REFS, "de", "bleu", n_samples=samples, seed=3)
    assert res.weight == pytest.approx(0.5)
    idx = np.random.default_rng(3).choice(n, size=(samples, n), replace=True)

    def bleu(hyps, k):
        return BLEU().corpus_score([hyps[i] for i in k], [[REFS[i] for i in k]]).score

    diffs = np.sort([bleu(system, k) - 0.5 * bleu(lo, k) - 0.5 * bleu(hi, k) for k in idx])
    assert res.ci_low == pytest.approx(diffs[samples // 40], abs=1e-3)
    assert res.ci_high == pytest.approx(diffs[samples - samples // 40 - 1], abs=1e-3)
    same = compare_at_latency(hi, 3.0, [(2.0, lo), (3.0, hi)], REFS, "de", "bleu", n_samples=samples, seed=3)
    assert same.weight == 1.0 and same.delta == 0.0 and same.ci_low == same.ci_high == 0.0


@pytest.mark.parametrize("metric", ["bleu", "chrf"])
def test_identical_outputs_are_not_a_significant_difference(metric):
    """Guards the exact arms of bench_decode: sacrebleu's bootstrap gives a system against itself p = 1/(n+1),
    which would read as significant; identical outputs get p = 1 and Δ = 0."""
    system = noisy(1, 0.15)
    res = compare_at_latency(system, 2.0, [(2.0, list(system))], REFS, "de", metric)
    assert res.delta == 0 and res.p_value == 1.0 and not res.significant
