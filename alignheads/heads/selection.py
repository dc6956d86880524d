"""Pick translation heads from a `HeadScores`: top-k by TS, or a greedy ensemble search by AER; stability gate.

Measured on the embedded model: the alignment signal sits in one or two heads and averaging a
fixed top-8 is worse than the best single head, so the default searches the combination (mixing
`own` and `emit` query positions) that minimises the ensemble's AER on the calibration data.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd

from ..corpus.pairs import Corpus
from .ensemble import ensemble_metrics
from .headset import Head
from .scoring import QUERIES, HeadScores


@dataclass(frozen=True)
class SelectionConfig:
    """How heads are chosen."""

    # greedy: ensemble search by AER; topk: the paper's top-k by ts; learned: weights; manual: the explorer's set
    method: Literal["greedy", "topk", "learned", "manual"] = "greedy"
    k: int = 8  # top-k size, or the greedy search's maximum ensemble size
    threshold: float = 0.1  # a head is a candidate only if ts > threshold
    candidates: int = 24  # greedy: the best candidates by AER that the search considers
    min_gain: float = 0.002  # greedy: stop when adding a head improves AER by less
    splits: int = 2  # stability: number of random half-splits
    seed: int = 0
    max_delta_ts: float = 0.03  # stability: paper's tolerance
    exclude_kv_shared: bool = False  # skip heads on KV-shared layers (the AlignAtt4LLM runtime cannot read them)


@dataclass
class Selection:
    """Chosen heads, the search's trajectory and the stability verdict."""

    heads: list[Head]
    trajectory: pd.DataFrame  # one row per step: heads so far, aer, precision, recall
    stability: dict = field(default_factory=dict)
    config: SelectionConfig = field(default_factory=SelectionConfig)
    weights: list[float] | None = None  # learned per-head weights (method "learned"); None = plain mean

    @property
    def promoted(self) -> bool:
        return bool(self.stability.get("passed", False))


def _usable(scores: HeadScores, exclude_kv_shared: bool) -> pd.DataFrame:
    h = scores.heads
    return h[~h["kv_shared"]] if exclude_kv_shared and "kv_shared" in h else h


def candidates(scores: HeadScores, threshold: float = 0.1, exclude_kv_shared: bool = False) -> pd.DataFrame:
    """Heads with ts above the threshold, any query kind, best AER first."""
    h = _usable(scores, exclude_kv_shared)
    return h[h["ts"] > threshold].sort_values(["aer", "ts"], ascending=[True, False]).reset_index(drop=True)


def topk_by_ts(scores: HeadScores, k: int = 8, query: str = "own", threshold: float = 0.1,
               exclude_kv_shared: bool = False) -> list[Head]:
    """The paper's selection: the k heads with the highest ts (ts > threshold) at one query position."""
    h = _usable(scores, exclude_kv_shared)
    h = h[(h["query"] == query) & (h["ts"] > threshold)].sort_values("ts", ascending=False).head(k)
    return [Head(int(r.layer), int(r.head), query) for r in h.itertuples()]


def greedy_ensemble(scores: HeadScores, corpus: Corpus, cfg: SelectionConfig = SelectionConfig(),
                    pairs: Sequence[int] | None = None) -> tuple[list[Head], pd.DataFrame]:
    """Greedy forward selection: start from the best candidate, add the head that lowers ensemble AER most."""
    pool = [Head(int(r.layer), int(r.head), r.query)
            for r in candidates(scores, cfg.threshold, cfg.exclude_kv_shared).head(cfg.candidates).itertuples()]
    chosen: list[Head] = []
    steps = []
    best = 1.0
    while pool and len(chosen) < cfg.k:
        trials = [(ensemble_metrics(scores, corpus, chosen + [h], pairs), h) for h in pool]
        m, h = min(trials, key=lambda x: x[0]["aer"])
        if chosen and best - m["aer"] < cfg.min_gain:
            break
        chosen.append(h)
        pool.remove(h)
        best = m["aer"]
        steps.append({"step": len(chosen), "added": str(h), "heads": " ".join(map(str, chosen)), **m})
    return chosen, pd.DataFrame(steps)


def stability(scores: HeadScores, heads: Sequence[Head], cfg: SelectionConfig = SelectionConfig()) -> dict:
    """Half-split gate: re-score random halves; top-k by ts must match and |Δts| of the heads stay ≤ tolerance."""
    n = len(scores.pair_ids)
    if not heads:
        return {"rule": "no head to check", "splits": [], "passed": False,
                "reason": "no head was selected (none above the ts threshold?)"}
    k = len(heads)
    rng = np.random.default_rng(cfg.seed)
    results = []
    for s in range(cfg.splits):
        perm = rng.permutation(n)
        a, b = scores.subset(perm[: n // 2]), scores.subset(perm[n // 2 :])
        split = {"split": s}
        for q in sorted({h.query for h in heads}):
            top_a = _topk_keys(a, q, k)
            top_b = _topk_keys(b, q, k)
            split[f"top{k}_{q}_a"], split[f"top{k}_{q}_b"] = top_a, top_b
            split[f"overlap_{q}"] = len(set(top_a) & set(top_b)) / k
        deltas = [abs(_ts(a, h) - _ts(b, h)) for h in heads]
        split["max_abs_delta_ts"] = float(max(deltas)) if deltas else 0.0
        split["identical_topk"] = all(split[key] == 1.0 for key in split if key.startswith("overlap_"))
        split["passed"] = split["identical_topk"] and split["max_abs_delta_ts"] <= cfg.max_delta_ts
        results.append(split)
    return {
        "rule": f"{cfg.splits} seeded half-splits (seed {cfg.seed}): identical top-{k} by ts per query kind "
        f"and max |Δts| of the selected heads ≤ {cfg.max_delta_ts}",
        "splits": results,
        "passed": bool(n >= 2 and all(r["passed"] for r in results)),
    }


def _topk_keys(table: pd.DataFrame, query: str, k: int) -> list[str]:
    h = table[(table["kind"] == "head") & (table["query"] == query)].sort_values("ts", ascending=False).head(k)
    return [str(Head(int(r.layer), int(r.head), query)) for r in h.itertuples()]


def _ts(table: pd.DataFrame, head: Head) -> float:
    m = table[(table["kind"] == "head") & (table["layer"] == head.layer) & (table["head"] == head.head)
              & (table["query"] == head.query)]
    return float(m["ts"].iloc[0])


def select_heads(scores: HeadScores, corpus: Corpus, cfg: SelectionConfig = SelectionConfig()) -> Selection:
    """Choose heads by `cfg.method`, then run the stability gate on them."""
    if cfg.method == "topk":
        heads = topk_by_ts(scores, cfg.k, QUERIES[0], cfg.threshold, cfg.exclude_kv_shared)
        traj = pd.DataFrame([{"step": i + 1, "added": str(h), **ensemble_metrics(scores, corpus, heads[: i + 1])}
                             for i, h in enumerate(heads)])
    elif cfg.method == "greedy":
        heads, traj = greedy_ensemble(scores, corpus, cfg)
    elif cfg.method == "learned":
        from .learned import WeightConfig, fit_weights

        learned = fit_weights([(scores, corpus)], WeightConfig(seed=cfg.seed))
        heads, weights = learned.heads, list(learned.weights.values())
        traj = pd.DataFrame(learned.search)
        return Selection(heads, traj, stability(scores, heads, cfg), cfg, weights)
    else:
        raise ValueError(f"selection method must be 'greedy', 'topk' or 'learned', not {cfg.method!r}")
    return Selection(heads, traj, stability(scores, heads, cfg), cfg)
