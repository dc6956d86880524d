"""A held-out test of the learned border (issue 21): the configuration fixed for en-zh, on sentences nothing has seen.

Every set `bench_policies.py` compares on had been looked at while the learned border was developed, so its
significance target could not be re-tested honestly there. The shared Tsinghua zh-en dev set, read as en→zh, has
been used only by `heads_report.py` (a separate head set): no policy, head set or border of the comparison has been
run on it. This benchmark runs, unchanged, `bench_policies`' en-zh configuration — its head set and learned border,
calibrated on the shipped en-zh dev set, loaded from `benchmarks/results/policies/en-zh/` and refused if its
calibration data differ — on the first `LIMIT` Tsinghua sentences (English source lowercased and tokenized, news),
streamed as `bench_policies` streams (0.4 s per word, 0.25 s hold-back, `--dtype auto`).

Fixed before the first sentence was run (commit of this file):
- settings: the learned border at θ = 0.5 / 0.65 / 0.8 and local agreement LA-2 / 3 / 4, the best baseline at
  every latency on the shipped en-zh test (wait-k and cut-last were 10+ BLEU below there and are not run);
- test: each learned-border point against the LA curve interpolated at its LAAL, BLEU and chrF (sacrebleu's
  paired bootstrap, 1000 samples), Holm over the points inside LA's latency range;
- outcome: confirmed if at least one point is above LA with Holm p < 0.05 and none significantly below.

Runs are cached under `benchmarks/results/heldout/tsinghua-en-zh/`; the summary is `benchmarks/results/heldout.json`.

    python benchmarks/bench_heldout.py [--threads 1] [--settings LABEL ...] [--summary-only | --splice]
"""

from __future__ import annotations

import argparse
from collections import OrderedDict

import bench_policies as bp
from common import RESULTS_DIR, pin_threads, print_table, write_result

CACHE = RESULTS_DIR / "heldout"
HELDOUT = bp.Dataset("tsinghua-en-zh", bp.SHARED / "gold" / "zh-en.tsinghua-dev.src-tgt", bp.DATASETS["en-zh"].calib)
LIMIT = 40  # sentences (1220 source words, twice the shipped en-zh test): what fits one session on two cores
SETTINGS = [("learned-border", 0.5, bp.HOLDBACK), ("local-agreement", 2, bp.HOLDBACK),
            ("learned-border", 0.65, bp.HOLDBACK), ("local-agreement", 3, bp.HOLDBACK),
            ("learned-border", 0.8, bp.HOLDBACK), ("local-agreement", 4, bp.HOLDBACK)]


def heldout_corpus():
    """The Tsinghua zh-en dev set seen from English (en→zh)."""
    from alignheads.corpus.formats import read_corpus

    return read_corpus(HELDOUT.eval).swap()


def fixed_heads(lm):
    """`bench_policies`' en-zh head set and learned border as fixed; refused if the data behind them changed."""
    corpus, _, _ = bp.load_calibration(bp.DATASETS["en-zh"])
    meta = bp.read_json(bp.CACHE / "en-zh" / "heads_meta.json")
    if not meta or meta["hash"] != corpus.content_hash() or meta["model"] != lm.facts.model_id:
        raise SystemExit(f"{bp.CACHE / 'en-zh'}: no head set calibrated on {bp.DATASETS['en-zh'].calib[0].name} "
                         f"for {lm.facts.model_id}; run bench_policies.py --datasets en-zh first")
    log: dict = {}
    heads = bp.heads_for(lm, bp.DATASETS["en-zh"], log, bp.CACHE)
    return heads, log["en-zh"]


def summary(heads_log: dict) -> dict:
    """`bench_policies`-shaped summary (curves, significance against the LA curve with Holm over its rows, traced
    sentence) plus the pre-registered verdict."""
    from alignheads.simul.comparison import dataset_summary, holm, refresh_coverage

    corpus = heldout_corpus()
    sources = [list(p.src_words) for p in corpus]
    records = [refresh_coverage(r, sources) for s in SETTINGS
               if (r := bp.read_json(CACHE / HELDOUT.name / f"{bp.setting_label(*s)}.json"))]
    part = dataset_summary(records, corpus.tgt_lang, CACHE / HELDOUT.name, RESULTS_DIR)
    tests = part["significance"]
    for r, p in zip(tests, holm([r["p_value"] for r in tests]), strict=True):
        r["p_holm"], r["significant_holm"] = round(p, 4), p < 0.05
    above = [r for r in tests if r["significant_holm"] and r["delta"] > 0]
    below = [r for r in tests if r["significant"] and r["delta"] < 0]
    part["verdict"] = ("incomplete" if len(records) < len(SETTINGS) else
                       "confirmed" if above and not below else "not confirmed")
    print_table([{k: v for k, v in r.items() if k != "dataset"} for r in part["curves"]],
                f"{HELDOUT.name}: curves ({len(records)} of {len(SETTINGS)} settings)")
    if tests:
        print_table(tests, f"{HELDOUT.name}: learned border vs LA at matched LAAL (Holm over {len(tests)})")
    print(f"pre-registered outcome: {part['verdict']}")
    return {"label": "", "pace_s": bp.PACE, "latency_unit": "source words", "limit": {HELDOUT.name: LIMIT},
            "source": f"{HELDOUT.eval.name}, read as en-zh", "heads": {HELDOUT.name: heads_log},
            "datasets": {HELDOUT.name: part}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--settings", nargs="+", metavar="LABEL", help="run only these of the fixed settings")
    ap.add_argument("--summary-only", action="store_true")
    ap.add_argument("--splice", action="store_true", help="bring the cached runs up to the current translator "
                    "(bench_policies.py --splice), then the summary")
    args = ap.parse_args()
    by_label = {bp.setting_label(*s): s for s in SETTINGS}
    if unknown := set(args.settings or ()) - set(by_label):
        ap.error(f"unknown setting(s) {', '.join(sorted(unknown))}; fixed: {', '.join(by_label)}")
    if not HELDOUT.eval.is_file():
        ap.error(f"{HELDOUT.eval} not found: the held-out test needs ../shared/data")
    threads = pin_threads(args.threads)
    heads_log: dict = {}
    if args.summary_only:
        heads_log = bp.read_json(bp.CACHE / "en-zh" / "heads_meta.json")
    else:
        from alignheads.model.loader import load_model

        lm = load_model("embedded", dtype="auto")
        heads, heads_log = fixed_heads(lm)
        corpus, memo = heldout_corpus(), OrderedDict()
        if args.splice:
            bp.splice_stale(lm, HELDOUT, corpus, heads, SETTINGS, LIMIT, CACHE)
        for label in [] if args.splice else args.settings or by_label:
            bp.run_setting(lm, HELDOUT, corpus, heads, by_label[label], memo, LIMIT, CACHE)
    write_result("heldout", {**summary(heads_log), "threads": threads})


if __name__ == "__main__":
    main()
