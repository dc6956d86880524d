"""AL, LAAL and YAAL on small outputs worked out by hand (arithmetic in the comments)."""

from __future__ import annotations

import math

import pytest

from alignheads.base.latency import al, laal, mean_latency, yaal

# Text example: 6 source words, 8 target words, reference 6 words.
# The first unit at or after the source end (6) is the 4th (index 3).
SRC, DELAYS, REF = 6, [2, 2, 4, 6, 6, 6, 6, 6], 6


def test_al_uses_reference_rate_and_counts_first_unit_at_source_end():
    # γ = |ref|/|src| = 6/6 = 1 -> 1/γ = 1
    # terms d_i - i/γ: 2-0, 2-1, 4-2, 6-3 (stop: 6 >= 6, included) = 2, 1, 2, 3 -> 8 / τ=4
    assert al(DELAYS, SRC, REF) == pytest.approx(2.0)


def test_laal_uses_longer_of_hypothesis_and_reference():
    # γ = max(8, 6)/6 -> 1/γ = 0.75
    # terms: 2-0, 2-0.75, 4-1.5, 6-2.25 = 2, 1.25, 2.5, 3.75 -> 9.5 / 4
    assert laal(DELAYS, SRC, REF) == pytest.approx(2.375)


def test_yaal_stops_before_first_unit_at_source_end():
    # same γ as LAAL; only d < 6 counts: 2 + 1.25 + 2.5 = 5.75 / τ=3
    assert yaal(DELAYS, SRC, REF) == pytest.approx(5.75 / 3)


def test_no_reference_uses_hypothesis_length():
    # AL with |ref| := |hyp| = 8 -> γ = 8/6, the same terms as LAAL above
    assert al(DELAYS, SRC) == pytest.approx(2.375)


def test_speech_in_milliseconds():
    # 3000 ms of audio, 4 words emitted, reference 5 words: γ = 5/3000 -> 1/γ = 600 ms per word
    # AL/LAAL terms: 800-0, 1200-600, 2000-1200, 3000-1800 (3000 >= 3000, included) = 800, 600, 800, 1200 -> 3400/4
    # YAAL: the last word is not before the end: (800 + 600 + 800)/3
    delays = [800, 1200, 2000, 3000]
    assert al(delays, 3000, 5) == pytest.approx(850.0)
    assert laal(delays, 3000, 5) == pytest.approx(850.0)
    assert yaal(delays, 3000, 5) == pytest.approx(2200 / 3)


def test_longform_yaal_counts_until_recording_end():
    # segment of 6, reference 5 units, 5 units: γ = 5/6 -> 1/γ = 1.2; recording ends 10 after the segment start
    # long-form terms until d >= 10: 2-0, 5-1.2, 7-2.4, 9-3.6 = 2, 3.8, 4.6, 5.4 -> 15.8/4
    # short-form stops at the segment end (6): (2 + 3.8)/2
    delays = [2, 5, 7, 9, 12]
    assert yaal(delays, 6, 5, longform=True, recording_end=10) == pytest.approx(3.95)
    assert yaal(delays, 6, 5) == pytest.approx(2.9)


def test_first_unit_after_source_end():
    # AL/LAAL report the first delay; YAAL is undefined (the output is left out of the average)
    assert al([7, 8], 6, 2) == 7 and laal([7, 8], 6, 2) == 7
    assert yaal([7, 8], 6, 2) is None
    # exactly at the end: AL's single term is 6 - 0; YAAL has no unit before the end
    assert al([6, 8], 6, 2) == 6 and yaal([6, 8], 6, 2) is None


def test_empty_output_has_no_latency():
    assert al([], 5, 3) is None and laal([], 5, 3) is None and yaal([], 5, 3) is None


def test_mean_latency_skips_undefined():
    assert mean_latency([2.0, None, 4.0]) == 3.0
    assert math.isnan(mean_latency([None]))


@pytest.mark.parametrize("fn", [al, laal, yaal])
def test_bad_lengths_are_refused(fn):
    with pytest.raises(ValueError, match="source_length"):
        fn([1.0], 0)
    with pytest.raises(ValueError, match="target_length"):
        fn([1.0], 3, 0)
