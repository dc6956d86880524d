"""Bring a cached setting record up to a translator change by re-simulating only the sentences it can alter.

A change that can only alter some sentences — found from the record itself, e.g. the outputs that hold a closing
bracket nothing opened — need not cost a full re-run of every setting. `splice_setting` simulates just those
sentences twice: with `before` (the TranslatorConfig fields that restore the old behaviour), which must reproduce
the record's outputs exactly (else `SpliceError`: the sentences are not independent of the rest of the run, or
the machine drafts differently), and with the current code. The new outputs replace the old ones; BLEU and chrF
are recomputed over the whole corpus, and the latencies from the record's per-sentence ones (`sentence_latency`,
kept since 2026-12-07) with the spliced sentences' replaced. In an older record AL and LAAL (plain means over the
sentences with output) move by the difference of the two runs, and YAAL — whose mean leaves out sentences that
emitted nothing before their source ended, which such a record does not identify — is kept where the spliced
sentences' YAAL is unchanged, else set to None. The update counts move by the difference.
Computation-aware latencies of the spliced sentences come from this machine; the record says which sentences were
spliced, on what, what could not be recomputed, and gets the current key.
"""

from __future__ import annotations

import statistics
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, replace
from typing import Any

from ..base.errors import AlignheadsError
from ..corpus.pairs import Corpus
from ..heads.headset import HeadLike, HeadSet
from ..model.loader import LoadedModel
from .comparison import refresh_coverage
from .evaluation import LATENCIES, _quality, sentence_latencies
from .policy import get_policy
from .simulate import SimulationConfig, simulate
from .sweep import _trace, coverage_entry, setting_config, setting_key
from .translator import TranslatorConfig

DECISIONS = ("end_of_draft", "sentence_end", "stop_rule")


class SpliceError(AlignheadsError):
    """The old settings did not reproduce a record's outputs: the record cannot be spliced, only re-run."""


def splice_setting(lm: LoadedModel, corpus: Corpus, heads: HeadSet | Sequence[HeadLike] | None, record: dict,
                   indices: Sequence[int], before: dict[str, Any], *, base: TranslatorConfig | None = None,
                   limit: int | None = None, memos: tuple[OrderedDict, OrderedDict] | None = None,
                   label: str = "") -> dict:
    """`record` (from `sweep.run_setting` on `corpus` with `base` and `limit`) under the current code, re-simulating
    only `indices`. `before`: TranslatorConfig fields that give the code the record was made with; `memos`:
    (before, now) draft memos shared across the settings of one corpus."""
    policy, scores, n = record["policy"], record["scores"], len(record["predictions"])
    config, sim, key, heads = _setting(lm, corpus, heads, record, base, limit)
    out = {**record, "key": key}
    indices = sorted(set(indices))
    out["spliced"] = {"sentences": indices, "before": before, "label": label, "model_dtype": lm.dtype,
                      **({"earlier": record["spliced"]} if record.get("spliced") else {})}
    if not indices:
        return out
    if indices[0] < 0 or indices[-1] >= n:
        raise SpliceError(f"sentences {indices} are not all in the record (0 to {n - 1})")
    t0 = time.perf_counter()
    sub = Corpus([corpus[i] for i in indices], corpus.src_lang, corpus.tgt_lang, corpus.name, corpus.sources)
    memo_old, memo_new = memos or (OrderedDict(), OrderedDict())
    sim = replace(sim, limit=None)
    old = simulate(lm, sub, heads, policy, replace(config, **before), sim, memo=memo_old)
    for k, i in enumerate(indices):
        stored, got = record["coverage"][i], asdict(old.coverage[k])
        if (old.instances[k].prediction, got["accessible_at_end"], got["target_units"]) != (
                record["predictions"][i], stored["accessible_at_end"], stored["target_units"]):
            raise SpliceError(f"{record['dataset']} {policy} {record['param']}: sentence {i} re-simulated with "
                              f"{before} gives {old.instances[k].prediction!r}, the record has "
                              f"{record['predictions'][i]!r}")
    exact = "sentence_latency" in record  # every sentence's latencies are kept: the means are recomputed exactly
    was_lat = sentence_latencies(old.instances, corpus.tgt_lang, use_omnisteval=sim.use_omnisteval)
    if exact:
        for k, i in enumerate(indices):
            if any(record["sentence_latency"][i][m] != was_lat[k][m] for m in LATENCIES if m.endswith("_cu")):
                raise SpliceError(f"{record['dataset']} {policy} {record['param']}: sentence {i} re-simulated with "
                                  f"{before} emits at other times than the record says")
    new = simulate(lm, sub, heads, policy, config, sim, memo=memo_new)
    if not exact and any(not r.instance.delays for r in (*old.runs, *new.runs)):
        raise SpliceError("a spliced sentence has no output: the latency means do not move by a difference")

    predictions, coverage, traces = list(record["predictions"]), list(record["coverage"]), list(record["traces"])
    for k, i in enumerate(indices):
        predictions[i] = new.instances[k].prediction
        cov = replace(new.coverage[k], index=i)
        coverage[i] = coverage_entry(cov)
        if i < len(traces):
            traces[i] = {**_trace(new.runs[k], cov), "index": i}
    s = {**scores, **_quality(predictions, record["references"], scores["bleu_tokenize"])}
    stale = []
    now_lat = sentence_latencies(new.instances, corpus.tgt_lang, use_omnisteval=sim.use_omnisteval)
    if exact:
        lat = list(record["sentence_latency"])
        for k, i in enumerate(indices):
            lat[i] = now_lat[k]
        out["sentence_latency"] = lat
        for m in LATENCIES:
            vals = [v[m] for v in lat if v[m] is not None]
            s[m] = statistics.mean(vals) if vals else None
    else:  # a record from before they were kept
        for m in LATENCIES:
            if s.get(m) is None:
                continue
            was, now = [v[m] for v in was_lat], [v[m] for v in now_lat]
            if not m.startswith("yaal"):  # AL and LAAL: plain means over the sentences with output
                s[m] += (sum(now) - sum(was)) / (n - scores["n_empty"])
            elif was != now:  # YAAL leaves out sentences the record does not identify: its mean cannot move
                s[m] = None
                stale.append(m)
    s["n_empty"] = sum(not p.strip() for p in predictions)
    st = dict(s["stats"])
    for f, v in new.stats.items():
        if f in st and f != "prefill_saved" and isinstance(v, (int, float)):
            st[f] += v - old.stats[f]
    st["prefill_saved"] = st["reused_tokens"] / st["prompt_tokens"] if st["prompt_tokens"] else None
    s["stats"] = st
    s["decisions"] = _moved_shares(s["decisions"], old.scores["decisions"], new.scores["decisions"])
    out.update(scores=s, predictions=predictions, coverage=coverage, traces=traces)
    out = refresh_coverage(out, [list(p.src_words) for p in corpus])
    out["spliced"].update(not_recomputed=stale, seconds=round(time.perf_counter() - t0, 1))
    return out


def is_current(lm: LoadedModel, corpus: Corpus, heads: HeadSet | Sequence[HeadLike] | None, record: dict,
               base: TranslatorConfig | None = None, limit: int | None = None) -> bool:
    """True when `record` was made (or spliced) under the current code and settings: its key is current."""
    return record["key"] == _setting(lm, corpus, heads, record, base, limit)[2]


def _setting(lm, corpus, heads, record, base, limit) -> tuple[TranslatorConfig, SimulationConfig, str, Any]:
    """The record's translator settings, simulation settings, current key and heads (None: the policy reads none)."""
    policy = record["policy"]
    config = setting_config(policy, record["param"], record["holdback"], base)
    sim = SimulationConfig(pace=record["scores"]["pace_s"], unit="word", limit=limit, progress=False)
    heads = heads if get_policy(policy).needs_heads else None
    return config, sim, setting_key(lm, corpus, heads, policy, config, sim), heads


def _moved_shares(shares: dict, old: dict, new: dict) -> dict:
    """Decision shares (`simulate.decision_shares`) with the old run's counts replaced by the new run's."""
    def counts(d: dict) -> dict[str, int]:
        return {k: round((d[k] or 0.0) * d["updates"]) for k in DECISIONS}

    now, was = counts(new), counts(old)
    total = {k: v + now[k] - was[k] for k, v in counts(shares).items()}
    updates = shares["updates"] + new["updates"] - old["updates"]
    return {"updates": updates, **{k: (v / updates if updates else None) for k, v in total.items()}}
