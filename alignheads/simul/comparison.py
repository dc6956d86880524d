"""Comparing policies: one cached record per (dataset, policy setting), curves, significance at matched latency.

The records come from `sweep.run_setting` (one setting, cached while its inputs are unchanged, so a long
benchmark resumes). `curve_rows`, `significance_rows` and `oracle_table` summarize records; `trace_frames`
reads one sentence back for `viz.policy_trace` and `viz.alignatt_decisions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..base.errors import AlignheadsError
from ..base.languages import target_units

OURS = ("alignatt", "learned-border")  # the head-driven policies; every other curve is a baseline


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family of p-values (same order as given)."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted, running = [1.0] * len(p_values), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def setting_label(policy: str, value: Any, holdback: float) -> str:
    """File-name label of a setting: `alignatt_-2`, `alignatt_0_hb0.25`, `local-agreement`."""
    return policy + ("" if value is None else f"_{value}") + (f"_hb{holdback:g}" if holdback else "")


# ----------------------------------------------------------------------------- summaries


def refresh_coverage(record: dict, sources: list[list[str]]) -> dict:
    """A cached record with its coverage flags recounted under the current rules (`coverage.recount`) from the
    evaluated sentences' source tokens, so results saved before a rule changed are summarised like new ones."""
    from .coverage import mean_chrf, recount

    entries = recount(record["coverage"], sources[: len(record["coverage"])])
    flagged = [e["index"] for e in entries if e["flags"]]
    cov = record["scores"]["coverage"]
    cov = {**cov, "n_flagged": len(flagged), "flagged": flagged,
           "flag_counts": {f: sum(f in e["flags"] for e in entries) for f in cov["flag_counts"]},
           "mean_chrf_offline": mean_chrf([e.get("chrf_offline") for e in entries])}
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
    ours = [c for c in by_curve if c.startswith(OURS)]
    rows = []
    for base in (c for c in by_curve if not c.startswith(OURS)):
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
    """Premature-emission rates and mean waits per condition and border: selected heads, mean of all heads, the
    diagonal (which knows the final lengths) and the causal positional rule (when the run has it)."""
    rows = []
    for cond, result in oracle.items():
        if not isinstance(result, dict) or "runs" not in result:
            continue
        for run in result["runs"]:
            variants = [v for v in ("selected", "all_heads_mean", "diagonal", "causal_position") if v in run]
            rows.append({"condition": cond, "border": run["config"]["border"],
                         **{f"{v}_premature": run[v]["premature_rate"] for v in variants},
                         **{f"{v}_wait": run[v]["wait_mean"] for v in variants},
                         "selected_overwait_mean": run["selected"]["overwait_mean"],
                         "n_words": run["selected"]["n_words"]})
    return rows


def matched_wait(oracle: dict) -> list[dict]:
    """The learned border against the causal positional rule at the same mean wait: per condition and border
    threshold, the positional rule's premature rate interpolated (over its borders) at the border's mean wait."""
    from .significance import bracket

    rows = []
    for cond, result in oracle.items():
        if not isinstance(result, dict) or not result.get("learned_border"):
            continue
        causal = [(r["causal_position"]["wait_mean"], r["causal_position"]["premature_rate"]) for r in result["runs"]
                  if "causal_position" in r]
        for point in result["learned_border"]:
            found = bracket([w for w, _ in causal], point["wait_mean"])
            causal_rate = None
            if found is not None:
                i, j, w = found
                causal_rate = (1 - w) * causal[i][1] + w * causal[j][1]
            rows.append({"condition": cond, "threshold": point["threshold"], "wait_mean": point["wait_mean"],
                         "learned_premature": point["premature_rate"], "causal_premature": causal_rate,
                         "below": None if causal_rate is None else point["premature_rate"] < causal_rate})
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
            "oracle": oracle_table(oracle) if oracle else None,
            "oracle_matched_wait": matched_wait(oracle) if oracle else None,
            "attention_offsets": attention_offsets(records),
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
