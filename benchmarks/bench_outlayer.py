"""The output layer's screens on this CPU: time per draft token, candidates left to float32, tokens equal (issue 20).

The embedded model's 262 144 x 640 output layer is about half of a float32 draft step. `auto` screens it with a
compressed copy and takes the exact float32 logits of the tokens the screen's proven error bound cannot rule out
(`alignheads/model/outlayer.py`): int8 weights with bf16 activations (`_weight_int8pack_mm`), bf16, or int8 through
FBGEMM's dynamic int8 linear fed a lossless grid (the fastest int8 kernel on CPUs without AVX-512). This times, one
thread, the float32 layer (one row) and each screen's whole argmax on real draft hidden states (the first en-de
test sentences, whole source), and counts per row the candidates recomputed in float32 and the whole-layer
fallbacks; every screen's tokens must equal the float32 layer's.

Run: `python benchmarks/bench_outlayer.py [--name outlayer]`; writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import pin_threads, print_table, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
GOLD = Path(__file__).resolve().parents[1] / "data" / "gold"


def ms(fn, repeats: int) -> float:
    """Median ms of `fn()` over `repeats` calls after two warm-up calls."""
    fn(), fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def draft_hidden_states(lm, prompts: int, tokens: int):
    """The final hidden states the output layer sees while drafting the first en-de test sentences."""
    import torch

    from alignheads.corpus.formats import read_corpus
    from alignheads.heads.headset import load_headset
    from alignheads.model.prompts import render
    from alignheads.simul.translator import SimultaneousTranslator, TranslatorConfig, drive

    heads = load_headset(Path(__file__).resolve().parent / "results" / "policies" / "en-de" / "heads.json")
    tr = SimultaneousTranslator(lm, heads, "en", "de", config=TranslatorConfig(reuse_cache=False))
    seen, argmax = [], lm.greedy.argmax
    lm.greedy.argmax = lambda h, banned=None: (seen.append(h.detach().float().clone()), argmax(h, banned=banned))[1]
    for pair in read_corpus(GOLD / "en-de.test.tsv").pairs[:prompts]:
        drive(tr._generate(render(tr.layout, lm.tokenizer, list(pair.src_words)), tokens, True, "max_draft"))
    lm.greedy.argmax = argmax
    return torch.cat(seen)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3, help="timed passes over the hidden states")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--name", default="outlayer")
    args = ap.parse_args()
    import torch.nn.functional as F

    from alignheads.model.loader import load_model
    from alignheads.model.outlayer import PlainArgmax, ScreenedArgmax, output_argmax

    pin_threads(1)
    lm = load_model("embedded", dtype="float32")
    layer = lm.model.get_output_embeddings()
    hidden = draft_hidden_states(lm, args.prompts, args.tokens)
    plain = PlainArgmax(layer)
    reference = [plain.argmax(h[None])[0] for h in hidden]
    rows = [{"way": "float32 layer", "ms_per_row": round(ms(lambda: F.linear(hidden[:1], layer.weight),
                                                               10 * args.repeats), 2)}]
    for screen in ("int8", "bf16", "fbgemm"):
        try:
            head = ScreenedArgmax(layer, screen)
        except (RuntimeError, NotImplementedError) as e:  # a screen this build or CPU cannot run
            print(f"{screen}: not available ({e})")
            continue
        equal = sum(head.argmax(h[None])[0] == ref for h, ref in zip(hidden, reference, strict=True))
        per_row = []
        for h in hidden:
            before = head.stats.candidates
            per_row.append((ms(lambda h=h, head=head: head.argmax(h[None]), args.repeats),
                            head.stats.candidates - before))
        rows.append({"way": f"screened {screen}", "ms_per_row": round(statistics.median(t for t, _ in per_row), 2),
                     "candidates_median": statistics.median(c / (args.repeats + 2) for _, c in per_row),
                     "candidates_max": max(c // (args.repeats + 2) for _, c in per_row),
                     "fallbacks_per_row": round(head.stats.fallbacks / head.stats.rows, 4),
                     "tokens_equal_float32": f"{equal}/{len(reference)}"})
    print_table(rows, f"the output layer, one thread, {len(hidden)} draft hidden states")
    chosen = output_argmax(layer, "auto")
    print(f"auto chooses {chosen.name} (timed on a slice, ms per row: {chosen.timings})")
    print("wrote", write_result(args.name, {"rows": rows, "draft_rows": len(hidden), "auto": chosen.name,
                                            "auto_timings": chosen.timings}))


if __name__ == "__main__":
    main()
