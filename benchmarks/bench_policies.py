"""Quality-latency of all four policies on every shipped test set and the shared XL-WA dev (issue 11, item 7).

Per dataset, heads are calibrated (score + greedy selection) on other data than the sentences evaluated:
the shipped `<dir>.dev.tsv` for the shipped `<dir>.test.tsv` (36 sentences each), and for the shared XL-WA
en-it dev (103) the shipped en-it dev + test, plus the authors' en-it set when `alignheads.data` reads it
(the `a4l` format). Each sentence is streamed as text at 0.4 s per word (latency in source words) under
every setting of a reduced grid; AlignAtt also with the cascade's 0.25 s hold-back (each new word shown,
not yet accessible, for 0.25 s). Then, from the cached runs:

- curves (BLEU, chrF, LAAL/AL/YAAL CU and CA), the share of updates in which the stop rule cut the draft,
  and the coverage flags of every setting;
- sacrebleu's paired bootstrap (BLEU and chrF) of every AlignAtt point against each baseline's curve
  interpolated at the same LAAL (`alignheads.significance`); a one-point baseline (local agreement) is
  compared against the AlignAtt curve interpolated at its LAAL;
- the oracle premature-emission rate (reference forced as the draft) with the prompt showing only what was
  heard and the newest word held back one step (realistic), next to the whole source shown (`policy_eval`).

Resumable: each (dataset, setting) and each oracle run is cached as JSON under
`benchmarks/results/policies/<dataset>/` with a key of everything it depends on; a rerun computes only
what is missing or stale. `--summary-only` rebuilds `benchmarks/results/policies.json` from the cache.
`make figures` draws figures/quality_latency_<dataset>.png and the policy-trace figures from these files.

Run: `nohup python benchmarks/bench_policies.py --threads 1 > bench_policies.log &` (hours on 2 busy cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, machine_info, pin_threads, print_table, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "data" / "gold"
SHARED = ROOT.parent / "shared" / "data"
CACHE = RESULTS_DIR / "policies"
SCHEMA = 1
PACE = 0.4
HOLDBACK = 0.25
TRACED = 6  # sentences per setting whose decisions (draft tokens, aligned source words) are kept for figures
BORDERS = (1, 0, -1, -2, -3)  # oracle


@dataclass(frozen=True)
class Dataset:
    """A corpus to evaluate and the corpora its heads are calibrated on (never the evaluated one)."""

    name: str
    eval: Path
    calib: tuple[Path, ...]


DATASETS = {
    "xlwa-en-it": Dataset("xlwa-en-it", SHARED / "gold" / "en-it.xlwa-dev.tsv",
                          (GOLD / "en-it.dev.tsv", GOLD / "en-it.test.tsv",
                           SHARED / "a4l" / "word_alignments" / "word_alignments_en-it.json")),
    "en-it": Dataset("en-it", GOLD / "en-it.test.tsv", (GOLD / "en-it.dev.tsv",)),
    "en-de": Dataset("en-de", GOLD / "en-de.test.tsv", (GOLD / "en-de.dev.tsv",)),
    "en-zh": Dataset("en-zh", GOLD / "en-zh.test.tsv", (GOLD / "en-zh.dev.tsv",)),
}

# (policy, swept value, hold-back s) in two rounds, each run over every dataset before the next: the first gives
# every curve two or more points, so an interrupted run can already be compared. AlignAtt with the hold-back is the
# cascade's setting (b = 1 there is the paper's).
ROUNDS = [
    [("alignatt", -2, 0.0), ("wait-k", 3, 0.0), ("cut-last", 2, 0.0), ("local-agreement", None, 0.0),
     ("alignatt", 0, HOLDBACK), ("alignatt", 1, HOLDBACK), ("wait-k", 5, 0.0), ("cut-last", 4, 0.0),
     ("alignatt", -3, 0.0)],
    [("alignatt", -1, 0.0), ("wait-k", 1, 0.0), ("cut-last", 0, 0.0), ("alignatt", -1, HOLDBACK)],
]
QUICK_ROUNDS = [[("alignatt", -2, 0.0), ("alignatt", 0, HOLDBACK), ("wait-k", 1, 0.0), ("wait-k", 3, 0.0),
                  ("local-agreement", None, 0.0)]]
CODE = ("translator.py", "policy.py", "simulate.py", "coverage.py", "oracle.py", "prompts.py")  # results depend on


def label(policy: str, value, holdback: float) -> str:
    return f"{policy}" + ("" if value is None else f"_{value}") + (f"_hb{holdback:g}" if holdback else "")


def curve_name(policy: str, holdback: float) -> str:
    """The curve a setting belongs to (AlignAtt with and without the hold-back are two curves)."""
    return policy + (f" (hold-back {holdback:g} s)" if holdback else "")


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_hash() -> str:
    """Of the library modules the results depend on: a cached result from other code is stale."""
    return digest([(ROOT / "alignheads" / name).read_text(encoding="utf-8") for name in CODE])


def read_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


# ----------------------------------------------------------------------------- heads


def load_calibration(ds: Dataset):
    """The calibration corpus (concatenated) and the files used / skipped with the reason."""
    from alignheads.data import Corpus, read_corpus
    from alignheads.errors import AlignheadsError

    parts, used, skipped = [], [], {}
    for path in ds.calib:
        if not path.is_file():
            skipped[str(path)] = "absent"
            continue
        try:
            parts.append(read_corpus(path))
            used.append(path.name)
        except AlignheadsError as e:  # e.g. the a4l format before data.py reads it
            skipped[path.name] = str(e).splitlines()[0][:200]
    first = parts[0]
    corpus = Corpus([p for c in parts for p in c], first.src_lang, first.tgt_lang, name="+".join(used))
    return corpus, used, skipped


def heads_for(lm, ds: Dataset, log: dict, cache: Path):
    """The dataset's head set, calibrated once and cached (keyed by the calibration data)."""
    from alignheads.calibrate import calibrate
    from alignheads.headset import load_headset
    from alignheads.scoring import ScoreConfig

    corpus, used, skipped = load_calibration(ds)
    path = cache / ds.name / "heads.json"
    meta_path = cache / ds.name / "heads_meta.json"
    meta = {"calibration": used, "skipped": skipped, "pairs": len(corpus), "hash": corpus.content_hash(),
            "model": lm.facts.model_id}
    if read_json(meta_path) == meta and path.is_file():
        hs = load_headset(path)
    else:
        t0 = time.perf_counter()
        _, _, hs = calibrate(lm, corpus, score_cfg=ScoreConfig(progress=False))
        hs.save(path)
        from alignheads.fileio import write_json

        write_json(meta_path, meta)
        print(f"[{ds.name}] heads {[str(h) for h in hs.top()]} calibrated on {used} in "
              f"{time.perf_counter() - t0:.0f} s", flush=True)
    log[ds.name] = {**meta, "heads": [str(h) for h in hs.top()], "file": os.path.relpath(path, ROOT)}
    return hs


# ----------------------------------------------------------------------------- simulations


def _trace(run, cov) -> dict:
    """One sentence's emissions and per-update decisions (draft tokens with aligned source word and status)."""
    updates = []
    for u in run.updates:
        tr = u.decision_trace
        if not tr.tokens:
            continue
        updates.append({"time": round(u.time - run.start, 3), "final": u.final, "n_source": u.n_source,
                        "n_accessible": u.n_accessible, "stop_reason": tr.stop_reason, "new_text": u.new_text,
                        "tokens": [[t.text, t.position, t.status] for t in tr.tokens]})
    return {"index": run.instance.index, "source": run.instance.source, "reference": run.instance.reference,
            "prediction": run.instance.prediction, "emissions": run.trace_frame().to_dict("records"),
            "updates": updates, "coverage": asdict(cov)}


def run_setting(lm, ds: Dataset, corpus, heads, setting, memo, limit, cache: Path) -> dict:
    """Simulate one setting on the dataset (or reuse its cache); returns the cached record."""
    from alignheads.fileio import write_json
    from alignheads.policy import get_policy
    from alignheads.simulate import SimulationConfig, simulate
    from alignheads.translator import TranslatorConfig

    policy, value, holdback = setting
    pol = get_policy(policy)
    config = replace(TranslatorConfig(holdback=holdback), memo_size=20000)
    if value is not None:
        config = pol.with_param(config, value)
    sim = SimulationConfig(pace=PACE, unit="word", limit=limit, progress=False)
    key = {"schema": SCHEMA, "code": code_hash(), "data": corpus.content_hash(), "limit": limit, "policy": policy,
           "translator": asdict(config), "sim": asdict(sim) | {"progress": None},
           "heads": [str(h) for h in heads.top()] if pol.needs_heads else None, "model": lm.facts.model_id}
    path = cache / ds.name / f"{label(*setting)}.json"
    cached = read_json(path)
    if cached and cached.get("key") == digest(key):
        return cached
    t0 = time.perf_counter()
    res = simulate(lm, corpus, heads if pol.needs_heads else None, policy, config, sim, memo=memo)
    record = {
        "key": digest(key), "dataset": ds.name, "policy": policy, "param": value, "holdback": holdback,
        "curve": curve_name(policy, holdback), "label": "loaded machine", "seconds": round(time.perf_counter() - t0, 1),
        "machine": machine_info(), "scores": res.scores,
        "predictions": [i.prediction for i in res.instances], "references": [i.reference for i in res.instances],
        "flagged": [c.index for c in res.coverage if c.flagged],
        "traces": [_trace(r, c) for r, c in list(zip(res.runs, res.coverage, strict=True))[:TRACED]],
    }
    write_json(path, json.loads(json.dumps(record, default=_num)))
    s = res.scores
    print(f"[{ds.name}] {label(*setting)}: BLEU {s['bleu']:.2f} chrF {s['chrf']:.2f} LAAL {s['laal_cu']:.2f} "
          f"stop {s['decisions']['stop_rule']:.2f} flagged {s['coverage']['n_flagged']} "
          f"({record['seconds']:.0f} s)", flush=True)
    return record


def _num(o):
    import numpy as np

    if isinstance(o, np.integer | np.floating):
        return o.item()
    raise TypeError(type(o).__name__)


def run_oracle(lm, ds: Dataset, corpus, heads, limit, cache: Path) -> dict:
    """Premature-emission rates, realistic (heard words only, newest held back) and with the whole source shown."""
    from alignheads.fileio import write_json
    from alignheads.oracle import policy_eval
    from alignheads.policy import AlignAttConfig

    cfgs = [AlignAttConfig(border=b) for b in BORDERS]
    key = digest({"schema": SCHEMA, "code": code_hash(), "data": corpus.content_hash(), "limit": limit,
                  "borders": BORDERS,
                  "heads": [str(h) for h in heads.top()], "model": lm.facts.model_id})
    path = cache / ds.name / "oracle.json"
    cached = read_json(path)
    if cached and cached.get("key") == key:
        return cached
    out = {"key": key, "dataset": ds.name, "label": "loaded machine"}
    for name, kw in (("realistic", {"pending": 1}), ("whole_source", {"show_future": True})):
        t0 = time.perf_counter()
        out[name] = policy_eval(lm, corpus, heads, cfgs, limit=limit, progress=False, **kw)
        print(f"[{ds.name}] oracle {name}: {time.perf_counter() - t0:.0f} s", flush=True)
    write_json(path, out)
    return out


# ----------------------------------------------------------------------------- summary


def curves_table(records: list[dict]):
    import pandas as pd

    rows = []
    for r in records:
        s = r["scores"]
        rows.append({"dataset": r["dataset"], "policy": r["curve"], "param": r["param"], "bleu": s["bleu"],
                     "chrf": s["chrf"], "laal_cu": s["laal_cu"], "al_cu": s["al_cu"], "yaal_cu": s["yaal_cu"],
                     "laal_ca": s["laal_ca"], "stop_share": s["decisions"]["stop_rule"],
                     "sentence_end_share": s["decisions"]["sentence_end"], "n_flagged": s["coverage"]["n_flagged"],
                     "ended_early": s["coverage"]["flag_counts"]["ended_early"],
                     "mean_chrf_offline": s["coverage"]["mean_chrf_offline"], "n": s["n_instances"],
                     "seconds": r["seconds"]})
    return pd.DataFrame(rows)


def significance_rows(records: list[dict], tgt_lang: str) -> list[dict]:
    """Every AlignAtt point against every baseline curve at matched LAAL (BLEU and chrF, paired bootstrap)."""
    from alignheads.significance import compare_at_latency

    by_curve: dict[str, list[dict]] = {}
    for r in records:
        by_curve.setdefault(r["curve"], []).append(r)
    ours = [c for c in by_curve if c.startswith("alignatt")]
    rows = []
    for base in (c for c in by_curve if not c.startswith("alignatt")):
        points = [(r["scores"]["laal_cu"], r["predictions"]) for r in by_curve[base]]
        for curve in ours:
            for r in by_curve[curve]:
                refs = r["references"]
                for metric in ("bleu", "chrf"):
                    if len(points) > 1:  # an AlignAtt point against the baseline's curve at its latency
                        c = compare_at_latency(r["predictions"], r["scores"]["laal_cu"], points, refs, tgt_lang,
                                               metric)
                        sign, at = 1.0, r["scores"]["laal_cu"]
                    else:  # a one-point baseline against the AlignAtt curve at the baseline's latency
                        mine = [(x["scores"]["laal_cu"], x["predictions"]) for x in by_curve[curve]]
                        c = compare_at_latency(points[0][1], points[0][0], mine, refs, tgt_lang, metric)
                        sign, at = -1.0, points[0][0]
                    if c is None:
                        continue
                    rows.append({"alignatt": curve, "param": r["param"] if sign > 0 else "interp.",
                                 "baseline": base, "metric": metric, "laal_cu": round(at, 3),
                                 "alignatt_score": round(c.system if sign > 0 else c.baseline, 2),
                                 "baseline_score": round(c.baseline if sign > 0 else c.system, 2),
                                 "delta": round(sign * c.delta, 2),
                                 "ci95": sorted((round(sign * c.ci_low, 2), round(sign * c.ci_high, 2))),
                                 "p_value": round(c.p_value, 4), "significant": c.significant})
                if len(points) == 1:
                    break  # one comparison per AlignAtt curve
    return rows


def summarize(names: list[str], settings: list, heads_log: dict, limit, cache: Path) -> dict:
    import pandas as pd

    from alignheads.data import read_corpus

    out = {"label": "loaded machine", "pace_s": PACE, "latency_unit": "source words", "limit": limit,
           "heads": heads_log, "datasets": {}}
    all_rows = []
    for name in names:
        ds = DATASETS[name]
        records = [r for s in settings if (r := read_json(cache / name / f"{label(*s)}.json"))]
        if not records:
            continue
        tgt = read_corpus(ds.eval).tgt_lang
        table = curves_table(records)
        all_rows.append(table)
        sig = significance_rows(records, tgt)
        oracle = read_json(cache / name / "oracle.json")
        out["datasets"][name] = {"curves": table.to_dict("records"), "significance": sig,
                                 "oracle": _oracle_table(oracle) if oracle else None}
        print_table(table.drop(columns=["dataset"]).to_dict("records"), f"{name}: curves ({len(records)} settings)")
        if sig:
            print_table(sig, f"{name}: AlignAtt vs baselines at matched LAAL (paired bootstrap, 1000 resamples)")
        if oracle:
            print_table(_oracle_table(oracle), f"{name}: oracle premature-emission rate (selected heads)")
    if all_rows:
        out["curves"] = pd.concat(all_rows, ignore_index=True).to_dict("records")
    return out


def _oracle_table(oracle: dict) -> list[dict]:
    rows = []
    for cond in ("realistic", "whole_source"):
        for run in oracle[cond]["runs"]:
            rows.append({"condition": cond, "border": run["config"]["border"],
                         **{f"{v}_premature": run[v]["premature_rate"] for v in ("selected", "all_heads_mean",
                                                                                 "diagonal")},
                         "selected_overwait_mean": run["selected"]["overwait_mean"],
                         "n_words": run["selected"]["n_words"]})
    return rows


# ----------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    ap.add_argument("--limit", type=int, default=None, help="first N sentences per dataset (default: all)")
    ap.add_argument("--quick", action="store_true", help="3 sentences, 5 settings, no oracle: checks the script")
    ap.add_argument("--no-oracle", action="store_true")
    ap.add_argument("--summary-only", action="store_true", help="rebuild policies.json from the cache")
    args = ap.parse_args()
    rounds, cache = ROUNDS, CACHE
    if args.quick:
        args.limit, args.no_oracle, rounds = args.limit or 3, True, QUICK_ROUNDS
        cache = Path(tempfile.gettempdir()) / "bench_policies_quick"  # never mixed with the real results
    settings = [s for r in rounds for s in r]
    threads = pin_threads(args.threads)
    heads_log: dict = {}
    names = [n for n in args.datasets if DATASETS[n].eval.is_file()]
    for n in set(args.datasets) - set(names):
        print(f"[{n}] skipped: {DATASETS[n].eval} not found (shared data absent)", flush=True)
    if args.summary_only:
        heads_log = {n: read_json(cache / n / "heads_meta.json") for n in names}
    else:
        from alignheads.data import read_corpus
        from alignheads.models import load_model

        lm = load_model("embedded")
        corpora = {n: read_corpus(DATASETS[n].eval) for n in names}
        heads = {n: heads_for(lm, DATASETS[n], heads_log, cache) for n in names}
        for round_ in rounds:
            for name in names:
                memo: OrderedDict = OrderedDict()  # drafts shared by the settings of one dataset and round
                for setting in round_:
                    run_setting(lm, DATASETS[name], corpora[name], heads[name], setting, memo, args.limit, cache)
        if not args.no_oracle:
            for name in names:
                run_oracle(lm, DATASETS[name], corpora[name], heads[name], args.limit, cache)
    summary = summarize(names, settings, heads_log, args.limit, cache)
    summary["threads"] = threads
    if args.quick:
        print(f"quick run: cache and summary under {cache}")
        write_result("summary", summary, cache)
    else:
        write_result("policies", summary)


if __name__ == "__main__":
    main()
