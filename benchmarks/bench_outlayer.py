"""The output layer's kernels on this CPU, and whether a cheaper one could screen the exact argmax (issue 20).

The embedded model's 262 144 x 640 output layer is about half of a float32 draft step. `auto` screens it with an
int8 (or bf16) copy fed the hidden state split into two bf16 rows, then takes the exact float32 logits of the tokens
the screen's proven error bound cannot rule out (`alignheads/model/outlayer.py`). This times, one thread, the layer
in float32 (one row), the int8 and bf16 screens as `auto` runs them (`ScreenedArgmax`), and FBGEMM's dynamic int8
linear (the fastest int8 kernel on CPUs without AVX-512). FBGEMM quantises the activation itself with one scale per
call, so its error bound grows with the hidden state's range: the script counts, on real draft hidden states (the
first en-de test sentences, whole source), how many tokens such a bound would leave to recompute exactly.

Run: `python benchmarks/bench_outlayer.py [--name outlayer]`; writes benchmarks/results/<name>.json.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
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
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--tokens", type=int, default=24)
    ap.add_argument("--name", default="outlayer")
    args = ap.parse_args()
    import torch
    import torch.nn.functional as F

    from alignheads.model.loader import load_model
    from alignheads.model.outlayer import ScreenedArgmax

    pin_threads(1)
    lm = load_model("embedded", dtype="float32")
    layer = lm.model.get_output_embeddings()
    w = layer.weight.detach()
    x = torch.randn(1, w.shape[1], generator=torch.Generator().manual_seed(0))
    int8, bf16 = ScreenedArgmax(layer, "int8"), ScreenedArgmax(layer, "bf16")  # the screens `auto` chooses from
    scale = int8.scale.float()
    kernels = {"float32, 1 row": lambda: F.linear(x, w),
               "int8 weight-only (_weight_int8pack_mm), 2 rows": lambda: int8._screen(x),
               "bf16, 2 rows": lambda: bf16._screen(x)}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PyTorch marks quantised tensors deprecated; still the FBGEMM entry point
            qw = torch.quantize_per_channel(w, scale.double(), torch.zeros(len(w), dtype=torch.long), 0, torch.qint8)
            packed = torch.ops.quantized.linear_prepack(qw, None)
        kernels["FBGEMM dynamic int8 (activation quantised per call), 1 row"] = \
            lambda: torch.ops.quantized.linear_dynamic(x, packed)
    except (RuntimeError, AttributeError) as e:  # a build without FBGEMM
        print("FBGEMM dynamic int8 not available:", e)
    rows = [{"kernel": k, "ms": round(ms(fn, args.repeats), 2)} for k, fn in kernels.items()]
    print_table(rows, "the output layer, one thread")

    hidden = draft_hidden_states(lm, args.prompts, args.tokens)
    w_hat = int8.q.float() * scale[:, None]
    w_l1, w_err = w_hat.abs().sum(1), (w - w_hat).abs().amax(1)
    candidates = []
    for h in hidden:  # |z - z_hat| <= act_scale / 2 * |w_hat|_1 + max|w - w_hat| * |h|_1, per vocabulary row
        act_scale = float(h.clamp(min=0).max() - h.clamp(max=0).min()) / 255
        bound = act_scale / 2 * w_l1 + w_err * h.abs().sum()
        z = w @ h
        candidates.append(int((z >= z.max() - 2 * bound.max()).sum()))
    screen = {"draft_rows": len(hidden), "hidden_min": float(hidden.min()), "hidden_max": float(hidden.max()),
              "candidates_median": statistics.median(candidates), "candidates_max": max(candidates),
              "vocabulary": len(w)}
    print("a per-call activation scale's bound:", screen)
    print("wrote", write_result(args.name, {"kernels": rows, "per_call_activation_bound": screen}))


if __name__ == "__main__":
    main()
