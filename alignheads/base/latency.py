"""Simultaneous-MT latency of one output: AL, LAAL and YAAL, computed as OmniSTEval 0.1.10 computes them.

`delays[i]` is when target unit i was emitted (the source consumed so far, or the wall-clock time for the
computation-aware variant), in the unit of `source_length`: ms of audio for speech, source words for text.
`target_length` is the reference length in target units; `None` means "no reference: use len(delays)".
Each function returns None where the metric is undefined for the output; the corpus score is the mean of the
defined values (`mean_latency`), as in OmniSTEval and SimulEval.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from statistics import mean


def _check(delays: Sequence[float], source_length: float, target_length: int | None) -> int:
    """Validate the inputs shared by all metrics; return the target length to use."""
    if not source_length > 0:
        raise ValueError(f"source_length must be > 0, got {source_length}")
    if target_length is None:
        return len(delays)
    if target_length <= 0:
        raise ValueError(f"target_length must be > 0 when given, got {target_length}")
    return target_length


def _lagging(delays: Sequence[float], rate: float, cutoff: float, *, include_cutoff: bool) -> float | None:
    """Mean of d_i − i/rate over the units emitted before `cutoff` (i counted from 0).

    With `include_cutoff` the first unit at or after the cutoff is still counted (AL, LAAL); without it the sum
    stops before that unit (YAAL).
    """
    total, tau = 0.0, 0
    for i, d in enumerate(delays):
        if d >= cutoff and not include_cutoff:
            break
        total += d - i / rate
        tau = i + 1
        if d >= cutoff:
            break
    return total / tau if tau else None


def al(delays: Sequence[float], source_length: float, target_length: int | None = None) -> float | None:
    """Average Lagging: γ = |ref|/|src|, sum up to and including the first unit emitted at or after the source end."""
    tgt = _check(delays, source_length, target_length)
    if not delays:
        return None
    if delays[0] > source_length:
        return float(delays[0])
    return _lagging(delays, tgt / source_length, source_length, include_cutoff=True)


def laal(delays: Sequence[float], source_length: float, target_length: int | None = None) -> float | None:
    """Length-Adaptive AL: as AL but γ = max(|hyp|, |ref|)/|src|, so over-long outputs are not rewarded."""
    tgt = _check(delays, source_length, target_length)
    if not delays:
        return None
    if delays[0] > source_length:
        return float(delays[0])
    return _lagging(delays, max(len(delays), tgt) / source_length, source_length, include_cutoff=True)


def yaal(
    delays: Sequence[float],
    source_length: float,
    target_length: int | None = None,
    *,
    longform: bool = False,
    recording_end: float = math.inf,
) -> float | None:
    """Yet Another AL: (1/τ)·Σ_{i<τ}(d_i − i/γ), γ = max(|hyp|, |ref|)/|src|.

    τ counts the units emitted strictly before the source end (short-form) — for a long-form segment, before
    `recording_end` (time from the segment's start to the end of the recording) instead. None when the first
    unit already comes at or after that point: such outputs are left out of the average.
    """
    tgt = _check(delays, source_length, target_length)
    cutoff = recording_end if longform else min(source_length, recording_end)
    if not delays or delays[0] >= cutoff:
        return None
    return _lagging(delays, max(len(delays), tgt) / source_length, cutoff, include_cutoff=False)


def mean_latency(values: Iterable[float | None]) -> float:
    """Corpus latency: mean of the defined per-output values, NaN when none is defined."""
    defined = [v for v in values if v is not None]
    return mean(defined) if defined else math.nan
