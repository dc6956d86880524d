"""Comparing policies: one cached record per (dataset, policy setting), curves, significance at matched latency.

`run_setting` simulates one setting on a corpus (text stream, latency in source words) and keeps a JSON
record: scores (with decision shares and coverage counts), the hypotheses and references (for paired
bootstrap), every sentence's coverage (with the offline translation), and the decisions of the first few
sentences (draft tokens, their aligned source words and what the policy did with them) for the
policy-trace figures. A record is reused while its key — corpus, heads, settings, model and `SCHEMA`
(raised when the code changes results) — is unchanged, so a long benchmark resumes.
`curve_rows`, `significance_rows` and `oracle_table` summarize records; `trace_frames` reads one
sentence back for `viz.policy_trace` and `viz.alignatt_decisions`.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import pandas as pd

from ..base.errors import AlignheadsError
from ..base.fileio import json_default, write_json
from ..base.languages import target_units
from ..corpus.pairs import Corpus
from ..heads.headset import HeadLike, HeadSet
from ..model.loader import LoadedModel
from .policy import get_policy
from .simulate import SentenceRun, SimulationConfig, simulate
from .translator import TranslatorConfig

SCHEMA = 1  # raise when a change to the translator, policies, simulation or oracle changes results


def setting_label(policy: str, value: Any, holdback: float) -> str:
    """File-name label of a setting: `alignatt_-2`, `alignatt_0_hb0.25`, `local-agreement`."""
    return policy + ("" if value is None else f"_{value}") + (f"_hb{holdback:g}" if holdback else "")


def curve_name(policy: str, holdback: float) -> str:
    """The curve a setting belongs to (a policy with and without a hold-back are two curves)."""
    return policy + (f" (hold-back {holdback:g} s)" if holdback else "")


def digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


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


def run_setting(lm: LoadedModel, corpus: Corpus, heads: HeadSet | Sequence[HeadLike] | None, policy: str,
                value: Any, holdback: float, path: Path, *, dataset: str = "", pace: float = 0.4,
                limit: int | None = None, memo: OrderedDict | None = None, traced: int = 6,
                label: str = "", base: TranslatorConfig | None = None) -> tuple[dict, bool]:
    """Simulate one setting (`base` translator settings, default TranslatorConfig(), with the policy's value and
    the hold-back) or reuse the record at `path`; returns (record, whether it was computed now)."""
    pol = get_policy(policy)
    config = replace(base or TranslatorConfig(), holdback=holdback, memo_size=20000)
    if value is not None:
        config = pol.with_param(config, value)
    sim = SimulationConfig(pace=pace, unit="word", limit=limit, progress=False)
    heads = heads if pol.needs_heads else None
    key = digest({"schema": SCHEMA, "data": corpus.content_hash(), "limit": limit,
                  "policy": policy, "translator": asdict(config), "sim": asdict(sim) | {"progress": None},
                  "heads": None if heads is None else [str(h) for h in (
                      heads.top() if isinstance(heads, HeadSet) else heads)],
                  "model": lm.facts.model_id})
    cached = read_json(path)
    if cached and cached.get("key") == key:
        return cached, False
    t0 = time.perf_counter()
    res = simulate(lm, corpus, heads, policy, config, sim, memo=memo)
    record = {
        "key": key, "dataset": dataset, "policy": policy, "param": value, "holdback": holdback,
        "curve": curve_name(policy, holdback), "label": label, "seconds": round(time.perf_counter() - t0, 1),
        "scores": res.scores, "predictions": [i.prediction for i in res.instances],
        "references": [i.reference for i in res.instances], "flagged": [c.index for c in res.coverage if c.flagged],
        "coverage": [{k: v for k, v in asdict(c).items() if k not in ("source", "target")} for c in res.coverage],
        "traces": [_trace(r, c) for r, c in list(zip(res.runs, res.coverage, strict=True))[:traced]],
    }
    record = json.loads(json.dumps(record, default=json_default))
    write_json(path, record)
    return record, True


# ----------------------------------------------------------------------------- summaries


def refresh_coverage(record: dict, sources: list[list[str]]) -> dict:
    """A cached record with its coverage flags recounted under the current rules (`coverage.recount`) from the
    evaluated sentences' source tokens, so results saved before a rule changed are summarised like new ones."""
    from .coverage import recount

    entries = recount(record["coverage"], sources[: len(record["coverage"])])
    flagged = [e["index"] for e in entries if e["flags"]]
    cov = record["scores"]["coverage"]
    cov = {**cov, "n_flagged": len(flagged), "flagged": flagged,
           "flag_counts": {f: sum(f in e["flags"] for e in entries) for f in cov["flag_counts"]}}
    return {**record, "coverage": entries, "flagged": flagged, "scores": {**record["scores"], "coverage": cov}}


def curve_rows(records: list[dict]) -> list[dict]:
    """One row per record: quality, latency (source words), stop-rule and held-sentence-end shares, coverage."""
    from .sweep import curve_metrics

    return [{"dataset": r["dataset"], "policy": r["curve"], "param": r["param"], **curve_metrics(r["scores"]),
             "mean_chrf_offline": r["scores"]["coverage"]["mean_chrf_offline"], "seconds": r["seconds"]}
            for r in records]


def significance_rows(records: list[dict], tgt_lang: str, n_samples: int = 1000) -> list[dict]:
    """Every AlignAtt point against every baseline curve at matched LAAL (BLEU and chrF, paired bootstrap).

    A one-point baseline (local agreement) is compared with each AlignAtt curve interpolated at its LAAL.
    `delta` is always AlignAtt minus baseline."""
    from .significance import compare_at_latency

    by_curve: dict[str, list[dict]] = {}
    for r in records:
        by_curve.setdefault(r["curve"], []).append(r)
    ours = [c for c in by_curve if c.startswith("alignatt")]
    rows = []
    for base in (c for c in by_curve if not c.startswith("alignatt")):
        points = [(r["scores"]["laal_cu"], r["predictions"]) for r in by_curve[base]]
        for curve in ours:
            mine = [(r["scores"]["laal_cu"], r["predictions"]) for r in by_curve[curve]]
            refs = by_curve[curve][0]["references"]
            pairs = ([(r["param"], r["scores"]["laal_cu"], r["predictions"], points, 1.0) for r in by_curve[curve]]
                     if len(points) > 1 else [("interp.", points[0][0], points[0][1], mine, -1.0)])
            for param, at, hyps, curve_points, sign in pairs:
                for metric in ("bleu", "chrf"):
                    c = compare_at_latency(hyps, at, curve_points, refs, tgt_lang, metric, n_samples)
                    if c is None:
                        continue
                    ours_score, theirs = (c.system, c.baseline) if sign > 0 else (c.baseline, c.system)
                    rows.append({"alignatt": curve, "param": param, "baseline": base, "metric": metric,
                                 "laal_cu": round(at, 3), "alignatt_score": round(ours_score, 2),
                                 "baseline_score": round(theirs, 2), "delta": round(sign * c.delta, 2),
                                 "ci95": sorted((round(sign * c.ci_low, 2), round(sign * c.ci_high, 2))),
                                 "p_value": round(c.p_value, 4), "significant": c.significant})
    return rows


def oracle_table(oracle: dict) -> list[dict]:
    """Premature-emission rates per condition and border: selected heads, mean of all heads, diagonal."""
    rows = []
    for cond in ("realistic", "whole_source"):
        for run in oracle[cond]["runs"]:
            rows.append({"condition": cond, "border": run["config"]["border"],
                         **{f"{v}_premature": run[v]["premature_rate"]
                            for v in ("selected", "all_heads_mean", "diagonal")},
                         "selected_overwait_mean": run["selected"]["overwait_mean"],
                         "n_words": run["selected"]["n_words"]})
    return rows


def attention_offsets(records: list[dict]) -> list[dict]:
    """Where the heads point when AlignAtt decides: per AlignAtt record, over the traced sentences' non-final
    updates, the share of first draft tokens aligned to the newest accessible word (offset −1), the one before it
    (−2), older words (≤ −3) or a word shown but not yet accessible (≥ 0). Offsets are from N_accessible."""
    rows = []
    for r in records:
        if r["policy"] != "alignatt":
            continue
        offsets = [u["tokens"][0][1] - u["n_accessible"] for t in r["traces"] for u in t["updates"]
                   if not u["final"] and u["tokens"] and u["tokens"][0][1] is not None]
        if not offsets:
            continue
        n = len(offsets)
        rows.append({"policy": r["curve"], "param": r["param"], "updates": n,
                     "older": sum(o <= -3 for o in offsets) / n, "second_newest": offsets.count(-2) / n,
                     "newest": offsets.count(-1) / n, "not_accessible": sum(o >= 0 for o in offsets) / n})
    return rows


def pick_trace(records: list[dict]) -> dict | None:
    """The sentence the policy-trace figures show: from the AlignAtt record with the highest BLEU, the traced
    sentence with the most units emitted before its final update (the one where the policy decided most)."""
    ours = [r for r in records if r["policy"] == "alignatt" and r["traces"]]
    if not ours:
        return None
    best = max(ours, key=lambda r: r["scores"]["bleu"])

    lang = best["scores"]["tgt_lang"]

    def decided(t: dict) -> int:
        return sum(len(target_units(u["new_text"], lang)) for u in t["updates"] if not u["final"])

    trace = max(best["traces"], key=decided)
    return {"setting": setting_label(best["policy"], best["param"], best["holdback"]), "index": trace["index"],
            "border": best["scores"]["translator"]["alignatt"]["border"]}


def dataset_summary(records: list[dict], tgt_lang: str, record_dir: Path, summary_dir: Path,
                    oracle: dict | None = None, n_samples: int = 1000) -> dict[str, Any]:
    """One dataset's part of a results summary: curves, significance, oracle table and the traced sentence (its
    record file named relative to `summary_dir`, where the summary is written)."""
    import os

    traced = pick_trace(records)
    if traced:
        traced["file"] = os.path.relpath(Path(record_dir) / f"{traced['setting']}.json", summary_dir)
    return {"curves": curve_rows(records),
            "significance": significance_rows(records, tgt_lang, n_samples),
            "oracle": oracle_table(oracle) if oracle else None, "attention_offsets": attention_offsets(records),
            "traced": traced}


def trace_frames(record: dict, index: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A traced sentence of a record: (emissions for `viz.policy_trace`, draft tokens for `viz.alignatt_decisions`)."""
    trace = next((t for t in record["traces"] if t["index"] == index), None)
    if trace is None:
        have = [t["index"] for t in record["traces"]]
        raise AlignheadsError(f"sentence {index} is not traced in the {record['curve']} record (traced: {have})")
    tokens = [{"time": u["time"], "n_accessible": u["n_accessible"], "position": pos, "status": status,
               "order": i, "text": text}
              for u in trace["updates"] if not u["final"]
              for i, (text, pos, status) in enumerate(u["tokens"]) if pos is not None]
    columns = ["time", "n_accessible", "position", "status", "order", "text"]
    return pd.DataFrame(trace["emissions"]), pd.DataFrame(tokens, columns=columns)
