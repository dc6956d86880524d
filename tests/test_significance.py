"""Paired bootstrap at matched latency: equals sacrebleu's own paired bootstrap on a real baseline point."""

from __future__ import annotations

import random

import pytest
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.significance import PairedTest

from alignheads.significance import bracket, compare_at_latency

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
