"""How a head set's attention becomes one map: the only place heads are combined.

Every consumer — AlignAtt's decision, the ensemble aligner of selection, learned weights, the oracle, the analysis
helpers and the explorer — calls `combine_heads` on a stack `[heads, rows, source words]` (rows are draft tokens,
or target words), each choosing its steps explicitly with a `Combination`:

1. `renormalise`: each head's row rescaled to sum 1 over the source words (heads that put little of their mass on
   the source still vote with one voice) — selection, learned weights, the set mean of maps;
2. `z_score`: per head, every source column standardised over the rows (an attention sink on one word, high for
   every row, cancels) — AlignAtt, as whisper and SimulStreaming do over draft tokens;
3. `median_width`: a median filter along the source axis (odd width, reflected edges) — AlignAtt;

then the (weighted) mean over heads. The per-head stack after the steps is returned too (AlignAtt reads each
head's own argmax from it; learned weights use it as features).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..base.errors import AlignheadsError


@dataclass(frozen=True)
class Combination:
    """The steps applied to each head's rows before the mean over heads (see the module docstring)."""

    renormalise: bool = False
    z_score: bool = False
    median_width: int = 0  # odd; 0 or 1 = off

    def __post_init__(self):
        if self.median_width < 0 or (self.median_width > 1 and self.median_width % 2 == 0):
            raise AlignheadsError(f"median_width must be odd (or 0/1 = off), got {self.median_width}")


RAW = Combination()  # the weights as the model applied them
RENORMALISED = Combination(renormalise=True)  # selection, learned weights, the set map of the explorer and notebooks
SET_MEAN = "head set mean (rows renormalised)"  # what maps call RENORMALISED's mean, everywhere


def renormalise(attn: np.ndarray, eps: float = 1e-9) -> np.ndarray:
    """Rescale every row to sum 1 over the last (source) axis."""
    return attn / np.clip(attn.sum(-1, keepdims=True), eps, None)


def z_score(attn: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Per head and source column, standardise over the rows (axis 1), as whisper/SimulStreaming do.

    A single row has no spread to standardise; it is returned unchanged (z-scoring would zero it).
    """
    if attn.shape[1] < 2:
        return attn.astype(np.float64, copy=True)
    mean = attn.mean(axis=1, keepdims=True)
    std = attn.std(axis=1, keepdims=True)
    return (attn - mean) / (std + eps)


def median_filter(x: np.ndarray, width: int) -> np.ndarray:
    """Median over a sliding window of odd `width` along the last axis, edges reflected (whisper's rule).

    Rows no longer than width // 2 are returned unchanged (a reflected pad needs more).
    """
    pad = width // 2
    if width <= 1 or x.shape[-1] <= pad:
        return x
    padded = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)], mode="reflect")
    windows = np.lib.stride_tricks.sliding_window_view(padded, width, axis=-1)
    return np.median(windows, axis=-1)


def combine_heads(attn: np.ndarray, weights: Sequence[float] | None = None,
                  how: Combination = RAW) -> tuple[np.ndarray, np.ndarray]:
    """(combined [rows, source words], per-head stack after `how`'s steps [heads, rows, source words]).

    `attn` is [heads, rows, source words]; `weights` (one per head, >= 0, positive sum) replace the plain mean.
    """
    x = np.asarray(attn, dtype=np.float64)
    if x.ndim != 3:
        raise AlignheadsError(f"head attention must be [heads, rows, source words], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[2] == 0:
        raise AlignheadsError(f"combining heads needs at least one head and one source word, got shape {x.shape}")
    if weights is not None and (len(weights) != x.shape[0] or min(weights) < 0 or sum(weights) <= 0):
        raise AlignheadsError(f"head weights must be {x.shape[0]} numbers >= 0 with a positive sum, got "
                              f"{list(weights)}")
    if how.renormalise:
        x = renormalise(x)
    if how.z_score:
        x = z_score(x)
    x = median_filter(x, how.median_width)
    return np.average(x, axis=0, weights=weights), x
