"""Quality-latency sweeps: every policy over its parameter grid on one corpus, and matched-latency comparisons."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ..base.fileio import atomic_open
from ..corpus.pairs import Corpus
from ..heads.headset import HeadLike, HeadSet
from ..model.loader import LoadedModel
from ..model.prompts import PromptLayout
from .policy import POLICIES, get_policy
from .significance import bracket
from .simulate import SimulationConfig, simulate
from .translator import TranslatorConfig

CURVE_COLUMNS = ["policy", "param", "bleu", "chrf", "al_cu", "laal_cu", "yaal_cu", "al_ca", "laal_ca", "yaal_ca",
                 "latency_unit", "n_instances", "n_empty", "compute_s", "prefill_saved", "stop_share",
                 "sentence_end_share", "n_flagged"]


def curve_metrics(scores: dict) -> dict:
    """The curve columns of one simulation's scores: quality, latency, decision shares and coverage flags."""
    decisions, coverage = scores["decisions"], scores["coverage"]
    return {**{c: scores.get(c) for c in CURVE_COLUMNS[2:10]}, "n_instances": scores["n_instances"],
            "stop_share": decisions["stop_rule"], "sentence_end_share": decisions["sentence_end"],
            "n_flagged": coverage["n_flagged"], "ended_early": coverage["flag_counts"]["ended_early"]}


def default_grid(with_heads: bool = True) -> dict[str, list]:
    """Every registered policy's default sweep (policies that need heads only `with_heads`)."""
    return {name: list(p.grid) for name, p in POLICIES.items() if with_heads or not p.needs_heads}


def quality_latency(
    lm: LoadedModel,
    corpus: Corpus,
    heads: Sequence[HeadLike] | HeadSet | None = None,
    grid: dict[str, Sequence] | None = None,
    config: TranslatorConfig | None = None,
    sim: SimulationConfig | None = None,
    *,
    layout: PromptLayout | None = None,
    word_times: dict[str, list[float]] | None = None,
    out_csv: str | Path | None = None,
    out_dir: str | Path | None = None,
    memo_size: int = 20000,
) -> pd.DataFrame:
    """Run every policy over its parameter range; one row per (policy, param) — the table viz.quality_latency plots.

    Drafts are remembered per prompt across runs (same model and heads), so the runs share their model calls;
    a remembered draft is charged the wall time it first took, keeping computation-aware latency honest.
    """
    grid = grid if grid is not None else default_grid()
    config = config or TranslatorConfig()
    policies = {name: get_policy(name) for name in grid}
    memo: OrderedDict = OrderedDict()
    config = replace(config, memo_size=memo_size)
    rows = []
    for policy, values in grid.items():
        for value in values:
            cfg = policies[policy].with_param(config, value)
            sub = Path(out_dir) / f"{policy}_{value}" if out_dir is not None else None
            res = simulate(lm, corpus, heads if policies[policy].needs_heads else None, policy, cfg, sim,
                           layout=layout, word_times=word_times, out_dir=sub, memo=memo)
            s = res.scores
            rows.append({"policy": policy, "param": value, **curve_metrics(s), "latency_unit": s["latency_unit"],
                         "n_empty": s["n_empty"], "compute_s": res.stats["compute_s"],
                         "prefill_saved": res.stats["prefill_saved"]})
    table = pd.DataFrame(rows, columns=CURVE_COLUMNS)
    if out_csv is not None:
        with atomic_open(out_csv) as f:
            table.to_csv(f, index=False)
    return table


def matched_latency(curves: pd.DataFrame, policy: str = "alignatt", baseline: str = "cut-last",
                    latency: str = "laal_cu", quality: str = "bleu") -> pd.DataFrame:
    """For each point of `policy`, the baseline's quality at the same latency (linear interpolation along the
    baseline's points sorted by latency, as `significance.bracket`; NaN outside its range) and the difference."""
    a = curves[curves["policy"] == policy].dropna(subset=[latency, quality])
    b = curves[curves["policy"] == baseline].dropna(subset=[latency, quality])
    lat, qual = b[latency].tolist(), b[quality].tolist()
    rows = []
    for r in a.itertuples():
        x = getattr(r, latency)
        q = math.nan
        if (br := bracket(lat, x)) is not None:
            i, j, w = br
            q = (1 - w) * qual[i] + w * qual[j]
        rows.append({"param": r.param, latency: x, quality: getattr(r, quality), f"{baseline}_{quality}": q,
                     "delta": getattr(r, quality) - q})
    return pd.DataFrame(rows)
