"""Word-alignment metrics shared by head scoring, head selection and SimAlign: AER counts and the diagonal baseline.

AER (Och & Ney 2003) over predicted links A, sure gold S and possible gold P (S ⊆ P):
AER = 1 − (|A∩S| + |A∩P|) / (|A| + |S|), precision = |A∩P| / |A|, recall = |A∩S| / |S|.
Counts are summed over a corpus first (corpus-level, as every word-alignment paper reports).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


def alignment_counts(pred: Iterable[tuple[int, int]], pair) -> np.ndarray:
    """(|A∩S|, |A∩P|, |A|, |S|) for predicted (source, target) links A against `pair.sure` / `pair.possible`;
    for sparse-anchor gold (`pair.sparse`) only predictions for linked target words count (the others' alignment
    is unknown, not absent)."""
    a = set(pred)
    if getattr(pair, "sparse", False):
        linked = pair.linked_targets
        a = {link for link in a if link[1] in linked}
    return np.array([len(a & pair.sure), len(a & pair.possible), len(a), len(pair.sure)], dtype=np.float64)


def aer_metrics(counts: Iterable[float]) -> dict[str, float]:
    """AER, precision and recall from summed `alignment_counts`."""
    a_s, a_p, a_n, s_n = (float(c) for c in counts)
    return {"aer": 1.0 - (a_s + a_p) / max(a_n + s_n, 1.0), "precision": a_p / max(a_n, 1.0),
            "recall": a_s / max(s_n, 1.0)}


def diagonal_words(n_src: int, n_tgt: int) -> np.ndarray:
    """Positional word aligner: target word j -> source word round(j · (n_src−1)/(n_tgt−1))."""
    return np.rint(np.arange(n_tgt) * (n_src - 1) / max(1, n_tgt - 1)).astype(int)
