"""Benchmarks of the simultaneous translator on the embedded Gemma 3 270M (issue 5).

1. Capture overhead: per-forward decode time of a 16-token draft with q/k capture on the head set's layers vs
   without (interleaved repetitions, medians, fresh KV cache each time); the draft tokens must be identical.
2. Decision share: (replay + decision) / update wall time over an AlignAtt simulation.
3. KV-cache reuse: prompt tokens served from the cache on the shipped test sets (wait-k 3 runs).
4. Quality-latency sweep on en-de / en-it test (first --sweep-pairs sentences): AlignAtt (border b) vs
   cut-last-x, wait-k and local agreement; AlignAtt vs cut-last at matched LAAL.
5. Oracle premature rate (reference forced as the draft) of the selected heads vs the all-head mean vs the
   diagonal, for several borders, with the prompt showing the revealed prefix and with the whole source shown.

Heads: calibrated on the shipped *dev* sets (alignheads.heads.calibrate, top-k by ts), evaluated on *test*.
Run: `python benchmarks/bench_translator.py [--threads 2] [--quick]`; writes benchmarks/results/translator.json
and the curve tables benchmarks/results/translator_curves_<pair>.csv.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, interleaved, pin_threads, print_table, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "data" / "gold"
TARGETS = {"capture_overhead_max": 0.10, "decision_share_max": 0.10}


def calibrate_heads(lm, pair: str, k: int, out_dir: Path):
    """Top-k heads by ts on the shipped dev set of `pair` (the paper's selection)."""
    from alignheads.corpus.formats import read_corpus
    from alignheads.heads.calibrate import calibrate
    from alignheads.heads.scoring import ScoreConfig
    from alignheads.heads.selection import SelectionConfig

    corpus = read_corpus(GOLD / f"{pair}.dev.tsv")
    t0 = time.perf_counter()
    scores, _selection, headset = calibrate(lm, corpus, score_cfg=ScoreConfig(progress=False),
                                            select_cfg=SelectionConfig(method="topk", k=k))
    headset.save(out_dir / f"heads_{pair}.json")
    return headset, scores, time.perf_counter() - t0


def bench_capture(lm, heads, repeats: int) -> dict:
    from alignheads.corpus.formats import read_corpus
    from alignheads.model.prompts import render
    from alignheads.simul.policy import AlignAttConfig
    from alignheads.simul.translator import SimultaneousTranslator, TranslatorConfig, drive

    pair = read_corpus(GOLD / "en-de.test.tsv")[1]
    cfg = TranslatorConfig(alignatt=AlignAttConfig(max_draft=16), reuse_cache=False, stop_at_newline=False)
    tr = SimultaneousTranslator(lm, heads, "en", "de", config=cfg)
    prompt = render(tr.layout, lm.tokenizer, pair.src_words[:10])

    per: dict[str, list[float]] = {"plain": [], "capture": []}

    def arm(name: str, attention: bool):
        def run(parts):
            d = drive(tr._generate(prompt, 16, attention, "max_draft"))
            per[name].append(d.timings["draft"] / d.timings["draft_forwards"])
            return d
        return run

    seen = {}

    def check(name, d):
        seen.setdefault("ids", d.ids)
        assert d.ids == seen["ids"], f"{name}: draft tokens differ with capture"

    timings = interleaved({"plain": arm("plain", False), "capture": arm("capture", True)}, repeats, warmup=1,
                          check=check, desc="capture overhead")
    per_fwd = {k: statistics.median(v[1:]) for k, v in per.items()}  # the first call of each arm is warm-up
    d = drive(tr._generate(prompt, 16, True, "max_draft"))
    overhead = per_fwd["capture"] / per_fwd["plain"] - 1
    return {
        "prompt_tokens": len(prompt),
        "draft_tokens": len(d.ids),
        "heads": [str(h) for h in tr.heads],
        "capture_layers": tr._layers,
        "per_forward_s": per_fwd,
        "per_token_overhead": overhead,
        "replay_s": d.timings.get("replay"),
        "whole_draft_wall_median_s": {k: v.median for k, v in timings.items()},
        "whole_draft_ratio": timings["capture"].median / timings["plain"].median,
        "identical_tokens": True,
        "target_max": TARGETS["capture_overhead_max"],
        "meets_target": overhead <= TARGETS["capture_overhead_max"],
    }


def decision_share(result) -> dict:
    """(replay + decide) over update wall time, from a simulation's updates (model updates only)."""
    shares, dec, tot = [], 0.0, 0.0
    for run in result.runs:
        for u in run.updates:
            t = u.decision_trace.timings
            if u.final or "prefill" not in t or u.decision_trace.memo_hit:
                continue
            d = t.get("replay", 0.0) + t.get("decide", 0.0)
            shares.append(d / u.compute_s)
            dec += d
            tot += u.compute_s
    return {"updates": len(shares), "median_share": statistics.median(shares) if shares else None,
            "aggregate_share": dec / tot if tot else None, "target_max": TARGETS["decision_share_max"],
            "meets_target": bool(shares) and dec / tot <= TARGETS["decision_share_max"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--capture-threads", type=int, nargs="+", default=[2],
                    help="thread counts for the capture-overhead measurement")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--k", type=int, default=4, help="heads per head set (top-k by ts on dev)")
    ap.add_argument("--sweep-pairs", type=int, default=8, help="test sentences per language in the sweep")
    ap.add_argument("--eval-pairs", type=int, default=12, help="test sentences per language in the oracle")
    ap.add_argument("--reuse-pairs", type=int, default=12, help="test sentences per language for KV reuse")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, to check the script runs")
    ap.add_argument("--skip-sweep", action="store_true")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.sweep_pairs, args.eval_pairs, args.reuse_pairs = 2, 1, 2, 2
    threads = pin_threads(args.threads)

    import pandas as pd

    from alignheads.base.fileio import atomic_open
    from alignheads.corpus.formats import read_corpus
    from alignheads.model.loader import load_model
    from alignheads.simul.oracle import policy_eval
    from alignheads.simul.policy import AlignAttConfig
    from alignheads.simul.simulate import SimulationConfig, simulate
    from alignheads.simul.sweep import matched_latency, quality_latency
    from alignheads.simul.translator import TranslatorConfig

    t_load = time.perf_counter()
    lm = load_model("embedded")
    payload: dict = {"threads": threads, "model": lm.facts.model_id, "load_s": time.perf_counter() - t_load,
                     "args": vars(args), "loadavg_start": os.getloadavg()}
    work = Path(tempfile.mkdtemp(prefix="bench_translator_"))
    pairs = ("en-de", "en-it")

    # heads, calibrated on dev
    headsets = {}
    payload["heads"] = {}
    for pair in pairs:
        hs, scores, secs = calibrate_heads(lm, pair, args.k, work)
        headsets[pair] = hs
        base = scores.baselines
        payload["heads"][pair] = {
            "heads": [str(h) for h in hs.top()], "ts": [e.ts for e in hs.heads], "seconds": secs,
            "diagonal_ts": float(base[(base.kind == "diagonal") & (base["query"] == "own")]["ts"].iloc[0]),
            "mean_heads_ts": float(base[(base.kind == "mean_heads") & (base["query"] == "own")]["ts"].iloc[0]),
        }
    print_table([{"pair": p, **{k: v for k, v in d.items() if k != "ts"}} for p, d in payload["heads"].items()],
                "heads (top-k by ts on dev)")

    # 1. capture overhead, at each thread count asked for
    payload["capture"] = {}
    for n in args.capture_threads:
        pin_threads(n)
        cap = bench_capture(lm, headsets["en-de"], args.repeats)
        payload["capture"][f"threads_{n}"] = cap
        print_table([{"arm": k, "per_forward_ms": round(v * 1000, 2)} for k, v in cap["per_forward_s"].items()],
                    f"1. capture overhead per decode forward, {n} thread(s): {cap['per_token_overhead']:+.1%} "
                    f"(target <= {TARGETS['capture_overhead_max']:.0%}); whole draft incl. replay "
                    f"x{cap['whole_draft_ratio']:.3f}")
    pin_threads(args.threads)

    quiet = SimulationConfig(progress=True)
    # 2. decision share (AlignAtt, b = -1, no memo)
    de_test = read_corpus(GOLD / "en-de.test.tsv")
    res = simulate(lm, de_test.head(max(2, args.sweep_pairs // 2)), headsets["en-de"], "alignatt",
                   TranslatorConfig(alignatt=AlignAttConfig(border=-1)), quiet)
    payload["decision_share"] = decision_share(res)
    print_table([payload["decision_share"]], "2. decision code share of an update")

    # 3. KV reuse on the shipped test sets
    payload["kv_reuse"] = {}
    for pair in ("en-de", "en-it", "en-zh"):
        corpus = read_corpus(GOLD / f"{pair}.test.tsv").head(args.reuse_pairs)
        r = simulate(lm, corpus, None, "wait-k", TranslatorConfig(wait_k=3), quiet)
        st = r.stats
        payload["kv_reuse"][pair] = {"sentences": len(corpus), "prompt_tokens": st["prompt_tokens"],
                                     "reused_tokens": st["reused_tokens"], "saved": st["prefill_saved"],
                                     "model_updates": st["model_updates"], "bleu": r.scores["bleu"],
                                     "laal_cu": r.scores["laal_cu"]}
    print_table([{"pair": k, **v} for k, v in payload["kv_reuse"].items()], "3. prefill tokens served by the KV cache")

    # 4. quality-latency sweep
    if not args.skip_sweep:
        payload["sweep"] = {}
        grid = {"alignatt": [1, 0, -1, -2, -3], "cut-last": [0, 1, 2, 3, 4], "wait-k": [1, 3, 5],
                "local-agreement": [2]}
        # the paper's word-level median filter (width 7) and the filter off (width 1), see the oracle below
        median1 = TranslatorConfig(alignatt=AlignAttConfig(median_width=1))
        for pair in pairs:
            corpus = read_corpus(GOLD / f"{pair}.test.tsv").head(args.sweep_pairs)
            t0 = time.perf_counter()
            table = quality_latency(lm, corpus, headsets[pair], grid, TranslatorConfig(),
                                    SimulationConfig(progress=False))
            extra = quality_latency(lm, corpus, headsets[pair], {"alignatt": [-1, -2, -3]}, median1,
                                    SimulationConfig(progress=False))
            extra["policy"] = "alignatt-median1"
            table = pd.concat([table, extra], ignore_index=True)
            with atomic_open(RESULTS_DIR / f"translator_curves_{pair}.csv") as f:
                table.to_csv(f, index=False)
            matched = {p: matched_latency(table, p, "cut-last", "laal_cu", "bleu").to_dict("records")
                       for p in ("alignatt", "alignatt-median1")}
            payload["sweep"][pair] = {"sentences": len(corpus), "seconds": time.perf_counter() - t0,
                                      "curves": table.to_dict("records"), "matched_laal_cu": matched}
            print_table(table[["policy", "param", "bleu", "chrf", "laal_cu", "laal_ca", "al_cu", "yaal_cu",
                               "n_empty"]].round(3).to_dict("records"), f"4. quality-latency {pair}")
            for p, rows in matched.items():
                print_table(rows, f"   {p} vs cut-last at matched LAAL ({pair})")

    # 5. oracle
    payload["oracle"] = {}
    cfgs = [AlignAttConfig(border=b, median_width=w) for w in (7, 1) for b in (1, 0, -1, -2)]
    for pair in pairs:
        corpus = read_corpus(GOLD / f"{pair}.test.tsv")
        for future in (False, True):
            r = policy_eval(lm, corpus, headsets[pair], cfgs, limit=args.eval_pairs, show_future=future)
            key = f"{pair}/{'whole_source' if future else 'prefix'}"
            payload["oracle"][key] = r
            rows = [{"border": run["config"]["border"], "median": run["config"]["median_width"], "variant": v, **run[v]}
                    for run in r["runs"] for v in ("selected", "all_heads_mean", "diagonal")]
            print_table(rows, f"5. oracle {key} ({r['n_pairs']} pairs, {r['seconds']:.0f} s)")
    payload["loadavg_end"] = os.getloadavg()
    path = write_result("translator", payload)
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
