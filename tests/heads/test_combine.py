"""The one place heads are combined (`combine_heads`): its steps, and every consumer calling it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import median_filter as scipy_median

from alignheads.base.errors import AlignheadsError
from alignheads.heads.combine import RAW, RENORMALISED, Combination, combine_heads, median_filter, z_score
from tests.simul.test_policy import diagonal_attention


def test_z_score_standardises_each_column_over_draft_tokens():
    a = diagonal_attention(5, 8)
    z = z_score(a)
    np.testing.assert_allclose(z.mean(axis=1), 0.0, atol=1e-9)
    np.testing.assert_allclose(z.std(axis=1), 1.0, atol=1e-4)  # eps 1e-8 in the denominator
    one = a[:, :1]
    np.testing.assert_array_equal(z_score(one), one)  # nothing to standardise with one token


def test_median_filter_matches_scipy_mirror_mode_and_leaves_short_rows():
    x = np.random.default_rng(1).normal(size=(3, 4, 11))
    ours = median_filter(x, 7)
    ref = scipy_median(x, size=(1, 1, 7), mode="mirror")
    np.testing.assert_allclose(ours, ref)
    short = x[..., :3]
    np.testing.assert_array_equal(median_filter(short, 7), short)
    np.testing.assert_array_equal(median_filter(x, 1), x)


def test_steps_run_in_order_and_the_weighted_mean_follows():
    """renormalise -> z-score -> median filter per head, then the weighted mean; the per-head stack comes back."""
    a = np.random.default_rng(0).uniform(size=(3, 5, 9))
    mean, per_head = combine_heads(a, [1.0, 2.0, 1.0], Combination(renormalise=True, z_score=True, median_width=3))
    want = median_filter(z_score(a / a.sum(-1, keepdims=True)), 3)
    np.testing.assert_allclose(per_head, want)
    np.testing.assert_allclose(mean, (want[0] + 2 * want[1] + want[2]) / 4)
    raw_mean, raw = combine_heads(a)
    np.testing.assert_allclose(raw, a)
    np.testing.assert_allclose(raw_mean, a.mean(0))
    renorm, _ = combine_heads(a, how=RENORMALISED)
    np.testing.assert_allclose(renorm.sum(-1), 1.0)
    assert RAW == Combination()


@pytest.mark.parametrize("attn, weights, match", [
    (np.zeros((2, 3)), None, "must be \\[heads, rows"),
    (np.zeros((0, 3, 4)), None, "at least one head"),
    (np.zeros((2, 3, 4)), [1.0], "2 numbers"),
    (np.zeros((2, 3, 4)), [1.0, -1.0], "positive sum"),
])
def test_bad_input_is_a_clear_error(attn, weights, match):
    with pytest.raises(AlignheadsError, match=match):
        combine_heads(attn, weights)
    with pytest.raises(AlignheadsError, match="odd"):
        Combination(median_width=4)
