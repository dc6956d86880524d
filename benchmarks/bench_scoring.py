"""Head-scoring throughput: `score_heads` (capture + replay, prefix KV reuse) vs eager references.

The references compute the same per-head ts / source_acc / gold_mass from eager `output_attentions=True`,
one forward per pair: (a) on the full causal LM (the authors' way), (b) on the decoder without the
262k-word output layer — the same depth `score_heads` runs at, so (b) shows what capture + replay itself
buys and (a) adds what skipping the output layer buys. Values are checked equal.

    python benchmarks/bench_scoring.py [--data PATH] [--limit N] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, pin_threads, print_table, write_result  # noqa: E402

from alignheads.corpus.formats import read_corpus  # noqa: E402
from alignheads.heads.scoring import ScoreConfig, reference_token_scores, score_heads  # noqa: E402
from alignheads.model.loader import load_model  # noqa: E402
from alignheads.model.prompts import PromptLayout  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "gold" / "en-it.xlwa-dev.tsv"
SHIPPED = Path(__file__).resolve().parents[1] / "data" / "gold" / "en-it.dev.tsv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(SHARED if SHARED.is_file() else SHIPPED))
    ap.add_argument("--limit", type=int)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    pin_threads(args.threads)
    lm = load_model("embedded")
    corpus = read_corpus(args.data)
    if args.limit:
        corpus = corpus.head(args.limit)
    layout = PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
    cfg = ScoreConfig(progress=False)
    score_heads(lm, corpus.head(2), layout, cfg)  # warm-up
    reference_token_scores(lm, layout, corpus[0])

    t0 = time.perf_counter()
    fast = score_heads(lm, corpus, layout, cfg)
    fast_s = time.perf_counter() - t0
    refs, seconds, diff = {}, {}, 0.0
    for name, full in (("full", True), ("decoder", False)):
        t0 = time.perf_counter()
        refs[name] = np.mean([reference_token_scores(lm, layout, p, full_model=full) for p in corpus], axis=0)
        seconds[name] = time.perf_counter() - t0
        diff = max(diff, *(float(np.abs(fast.matrix(c, q) - refs[name][qi, ..., ci]).max())
                           for qi, q in enumerate(fast.queries)
                           for ci, c in enumerate(("ts", "source_acc", "gold_mass"))))
    rows = [
        {"method": "score_heads (decoder only, capture+replay, prefix reuse; all scores, baselines)",
         "pairs": len(corpus), "seconds": round(fast_s, 2), "ratio": 1.0},
        {"method": "eager output_attentions, same decoder (no output layer)", "pairs": len(corpus),
         "seconds": round(seconds["decoder"], 2), "ratio": round(seconds["decoder"] / fast_s, 2)},
        {"method": "eager output_attentions, full causal LM (the authors' way)", "pairs": len(corpus),
         "seconds": round(seconds["full"], 2), "ratio": round(seconds["full"] / fast_s, 2)},
    ]
    print_table(rows, f"Head scoring on {Path(args.data).name}, embedded model, {args.threads} threads "
                      "(ratio = seconds / score_heads seconds)")
    print(f"same depth: {seconds['decoder'] / fast_s:.2f}x; vs the full LM: {seconds['full'] / fast_s:.2f}x; "
          f"max |difference| of ts/source_acc/gold_mass {diff:.2e}; "
          f"target: {len(corpus)} pairs <= 60 s ({'met' if fast_s <= 60 else 'MISSED'})")
    path = write_result("scoring", {"data": Path(args.data).name, "rows": rows,
                                    "speedup_same_depth": seconds["decoder"] / fast_s,
                                    "speedup_vs_full_lm": seconds["full"] / fast_s, "max_abs_diff": diff,
                                    "target_seconds": 60, "machine_after": machine_info()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
