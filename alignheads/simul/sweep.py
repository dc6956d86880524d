"""Quality-latency sweeps: one engine (`run_setting`: one policy setting simulated, its record cached), every policy
over its parameter grid (`quality_latency`), and matched-latency comparisons of a curve against a baseline."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..base.fileio import json_default, write_json
from ..corpus.pairs import Corpus
from ..heads.headset import HeadLike, HeadSet
from ..model.loader import LoadedModel
from ..model.prompts import PromptLayout
from .coverage import SentenceCoverage
from .evaluation import sentence_latencies
from .policy import POLICIES, get_policy
from .significance import bracket
from .simulate import SentenceRun, SimulationConfig, simulate
from .translator import TranslatorConfig

CURVE_COLUMNS = ["policy", "param", "bleu", "chrf", "al_cu", "laal_cu", "yaal_cu", "al_ca", "laal_ca", "yaal_ca",
                 "latency_unit", "n_instances", "n_empty", "compute_s", "prefill_saved", "stop_share",
                 "sentence_end_share", "n_flagged"]
SCHEMA = 1  # raise when a change to the translator, policies, simulation or oracle changes results


def curve_name(policy: str, holdback: float) -> str:
    """The curve a setting belongs to (a policy with and without a hold-back are two curves)."""
    return policy + (f" (hold-back {holdback:g} s)" if holdback else "")


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


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
    out_dir: str | Path | None = None,
) -> pd.DataFrame:
    """Run every policy over its parameter range (`run_setting` per point; `out_dir/<policy>_<value>/` gets each
    run's files); one row per (policy, param) — the table viz.quality_latency plots.

    Drafts are remembered per prompt across runs (same model and heads), so the runs share their model calls;
    a remembered draft is charged the wall time it first took, keeping computation-aware latency honest.
    """
    grid = grid if grid is not None else default_grid()
    config = config or TranslatorConfig()
    policies = {name: get_policy(name) for name in grid}
    memo: OrderedDict = OrderedDict()
    rows = []
    for policy, values in grid.items():
        for value in values:
            sub = Path(out_dir) / f"{policy}_{value}" if out_dir is not None else None
            record, _ = run_setting(lm, corpus, heads if policies[policy].needs_heads else None, policy, value,
                                    config.holdback, base=config, sim=sim or SimulationConfig(), layout=layout,
                                    word_times=word_times, out_dir=sub, memo=memo, traced=0)
            s = record["scores"]
            rows.append({"policy": policy, "param": value, **curve_metrics(s), "latency_unit": s["latency_unit"],
                         "n_empty": s["n_empty"], "compute_s": s["stats"]["compute_s"],
                         "prefill_saved": s["stats"]["prefill_saved"]})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def _trace(run: SentenceRun, coverage) -> dict[str, Any]:
    """One sentence's emissions and per-update decisions (draft tokens: text, aligned source word, status)."""
    updates = []
    for u in run.updates:
        tr = u.decision_trace
        if tr.tokens:
            updates.append({"time": round(u.time - run.start, 3), "final": u.final, "n_source": u.n_source,
                            "n_accessible": u.n_accessible, "stop_reason": tr.stop_reason, "new_text": u.new_text,
                            "tokens": [[t.text, t.position, t.status] for t in tr.tokens]})
    return {"index": run.instance.index, "source": run.instance.source, "reference": run.instance.reference,
            "prediction": run.instance.prediction, "emissions": run.trace_frame().to_dict("records"),
            "updates": updates, "coverage": asdict(coverage)}


def setting_config(policy: str, value: Any, holdback: float, base: TranslatorConfig | None = None) -> TranslatorConfig:
    """The translator settings of one sweep setting: `base` (default TranslatorConfig()) with the policy's value, the
    hold-back and a memo."""
    config = replace(base or TranslatorConfig(), holdback=holdback, memo_size=20000)
    return config if value is None else get_policy(policy).with_param(config, value)


def setting_key(lm: LoadedModel, corpus: Corpus, heads: HeadSet | Sequence[HeadLike] | None, policy: str,
                config: TranslatorConfig, sim: SimulationConfig) -> str:
    """The cache key of a setting's record: corpus, heads, settings, model and `SCHEMA`."""
    return digest({"schema": SCHEMA, "data": corpus.content_hash(), "limit": sim.limit,
                   "policy": policy,
                   # the guess verification drafts exactly what plain drafting does: records of either are reused
                   "translator": {k: v for k, v in asdict(config).items() if k != "guess"},
                   "sim": asdict(sim) | {"progress": None},
                   "heads": None if heads is None else [str(h) for h in (
                       heads.top() if isinstance(heads, HeadSet) else heads)],
                   "model": lm.facts.model_id})


def run_setting(lm: LoadedModel, corpus: Corpus, heads: HeadSet | Sequence[HeadLike] | None, policy: str,
                value: Any, holdback: float, path: Path | None = None, *, dataset: str = "", pace: float = 0.4,
                limit: int | None = None, memo: OrderedDict | None = None, traced: int = 6,
                label: str = "", base: TranslatorConfig | None = None, sim: SimulationConfig | None = None,
                layout: PromptLayout | None = None, word_times: dict[str, list[float]] | None = None,
                out_dir: str | Path | None = None) -> tuple[dict, bool]:
    """Simulate one setting (`base` translator settings, default TranslatorConfig(), with the policy's value and
    the hold-back) or reuse the record at `path` (None: no cache); returns (record, whether it was computed now).

    The record: scores (with decision shares and coverage counts), the hypotheses and references (for paired
    bootstrap), every sentence's coverage, and the decisions of the first `traced` sentences. It is reused while
    its key — corpus, heads, settings, model and `SCHEMA` (raised when the code changes results) — is unchanged.
    `sim` (default: text stream at `pace`, latency in words, `limit` pairs) and `layout`, `word_times`,
    `out_dir` go to `simulate`."""
    config = setting_config(policy, value, holdback, base)
    sim = sim or SimulationConfig(pace=pace, unit="word", limit=limit, progress=False)
    heads = heads if get_policy(policy).needs_heads else None
    key = setting_key(lm, corpus, heads, policy, config, sim)
    cached = read_json(path) if path is not None else None
    if cached and cached.get("key") == key:
        return cached, False
    t0 = time.perf_counter()
    res = simulate(lm, corpus, heads, policy, config, sim, layout=layout, word_times=word_times, out_dir=out_dir,
                   memo=memo)
    record = {
        "key": key, "dataset": dataset, "policy": policy, "param": value, "holdback": holdback,
        "curve": curve_name(policy, holdback), "label": label, "seconds": round(time.perf_counter() - t0, 1),
        "scores": res.scores, "predictions": [i.prediction for i in res.instances],
        "references": [i.reference for i in res.instances], "flagged": [c.index for c in res.coverage if c.flagged],
        "coverage": [coverage_entry(c) for c in res.coverage],
        "traces": [_trace(r, c) for r, c in list(zip(res.runs, res.coverage, strict=True))[:traced]],
        # lets `splice` rescore exactly
        "sentence_latency": sentence_latencies(res.instances, corpus.tgt_lang, use_omnisteval=sim.use_omnisteval),
    }
    record = json.loads(json.dumps(record, default=json_default))
    if path is not None:
        write_json(path, record)
    return record, True


def coverage_entry(c: SentenceCoverage) -> dict:
    """A sentence's coverage as a record keeps it (its texts are in the record's predictions and the corpus)."""
    return {k: v for k, v in asdict(c).items() if k not in ("source", "target")}


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
