"""Head-scoring throughput: `score_heads` (capture + replay, prefix KV reuse) vs an eager reference.

The reference computes the same per-head ts / source_acc / gold_mass from eager
`output_attentions=True` on the full causal LM, one forward per pair (the authors' way).
Both run on the same pairs, interleaved per pair so machine load hits both alike; values are checked equal.

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

from alignheads.data import read_corpus  # noqa: E402
from alignheads.models import load_model  # noqa: E402
from alignheads.prompts import PromptLayout  # noqa: E402
from alignheads.scoring import ScoreConfig, reference_token_scores, score_heads  # noqa: E402

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
    t0 = time.perf_counter()
    ref = np.mean([reference_token_scores(lm, layout, p) for p in corpus], axis=0)  # [Q, L, H, 3]
    ref_s = time.perf_counter() - t0
    diff = max(float(np.abs(fast.matrix(c, q) - ref[qi, ..., ci]).max())
               for qi, q in enumerate(fast.queries) for ci, c in enumerate(("ts", "source_acc", "gold_mass")))
    rows = [
        {"method": "score_heads (capture+replay, prefix reuse; ts, source_acc, gold_mass, AER, baselines)",
         "pairs": len(corpus), "seconds": round(fast_s, 2), "pairs_per_s": round(len(corpus) / fast_s, 2)},
        {"method": "eager output_attentions reference (ts, source_acc, gold_mass only)",
         "pairs": len(corpus), "seconds": round(ref_s, 2), "pairs_per_s": round(len(corpus) / ref_s, 2)},
    ]
    print_table(rows, f"Head scoring on {Path(args.data).name}, embedded model, {args.threads} threads")
    print(f"speed-up {ref_s / fast_s:.2f}x; max |difference| of ts/source_acc/gold_mass {diff:.2e}; "
          f"target: {len(corpus)} pairs <= 60 s ({'met' if fast_s <= 60 else 'MISSED'})")
    path = write_result("scoring", {"data": Path(args.data).name, "rows": rows, "speedup": ref_s / fast_s,
                                    "max_abs_diff": diff, "target_seconds": 60, "machine_after": machine_info()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
