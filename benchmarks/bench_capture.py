"""Benchmarks of q/k capture and qk-fast replay on the embedded Gemma 3 270M (issue 3).

1. Capture overhead: prompt + 16-token greedy decode with capture on all layers vs without
   (interleaved repetitions, medians); the generated tokens must be identical.
2. All-head attention rows for the target span of a ~200-token teacher-forced prompt:
   (a) base decoder (no output projection) under capture in streaming mode (each layer's rows computed
   inside the forward from the live q/k, reduced and dropped: one layer's rows alive at a time),
   vs (b) eager `output_attentions=True` on the full causal LM, then slicing the target rows.
   Time ratio, attention-data bytes, peak torch allocations, and the max difference of the rows.

Run: `python benchmarks/bench_capture.py [--repeats N] [--quick]`; writes benchmarks/results/bench_capture.json.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    Parts,
    interleaved,
    mib,
    pin_threads,
    print_table,
    storage_bytes,
    tensor_bytes,
    torch_peak_bytes,
    write_result,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

GOLD = Path(__file__).resolve().parents[2] / "shared" / "data" / "gold" / "en-it.xlwa-dev.tsv"
TARGETS = {"capture_overhead_max": 1.05, "replay_speedup_min": 2.0, "attention_memory_ratio_min": 4.0}
MAX_ABS_DIFF = 1e-4


def build_prompt(lm, gold: Path, tokens: int):
    """Teacher-forced en->it prompt of about `tokens` tokens: consecutive gold pairs joined into one long pair."""
    from alignheads.corpus.formats import read_corpus
    from alignheads.model.prompts import PromptLayout, render

    corpus = read_corpus(gold)
    layout = PromptLayout.for_tokenizer(lm.tokenizer, corpus.src_lang, corpus.tgt_lang)
    src: list[str] = []
    tgt: list[str] = []
    used: list[str] = []
    rendered = None
    for pair in corpus:
        trial = render(layout, lm.tokenizer, src + list(pair.src_words), "", tgt + list(pair.tgt_words))
        if len(trial) > tokens * 1.1:  # would overshoot: try a shorter pair
            continue
        src += pair.src_words
        tgt += pair.tgt_words
        used.append(pair.id)
        rendered = trial
        if len(rendered) >= tokens * 0.95:
            break
    if rendered is None:
        raise SystemExit(f"no pair of {gold} fits in {tokens} tokens")
    return layout, rendered, used


# ------------------------------------------------------------------------------------ 1. capture overhead
def bench_overhead(lm, prompt_ids: torch.Tensor, repeats: int, new_tokens: int) -> dict:
    from alignheads.model.capture import AttentionCapture

    model = lm.model
    n_prompt = prompt_ids.shape[1]
    mask = torch.ones_like(prompt_ids)
    gen_kw = {"max_new_tokens": new_tokens, "do_sample": False, "attention_mask": mask,
              "pad_token_id": lm.tokenizer.pad_token_id if lm.tokenizer.pad_token_id is not None
              else lm.tokenizer.eos_token_id}
    with torch.inference_mode():
        reference = model.generate(prompt_ids, **gen_kw)
    held: dict[str, dict[str, int]] = {}

    def plain(parts: Parts):
        with torch.inference_mode():
            return model.generate(prompt_ids, **gen_kw)

    def capture(q_from: int):
        def run(parts: Parts):
            with torch.inference_mode(), AttentionCapture(model, q_from=q_from) as cap:
                out = model.generate(prompt_ids, **gen_kw)
            held[f"q_from={q_from}"] = {"captured": cap.nbytes(), "storage_held": storage_bytes(_cap_tensors(cap))}
            return out

        return run

    arms = {"plain": plain, "capture_all_layers": capture(n_prompt), "capture_all_layers_q_from_0": capture(0)}

    def check(name: str, out: torch.Tensor) -> None:
        if not torch.equal(out, reference):
            raise AssertionError(f"{name}: generated tokens differ from the plain model's")

    timings = interleaved(arms, repeats, check=check, desc="1. capture overhead")
    base = timings["plain"]
    rows, out = [], {}
    for name, t in timings.items():
        ratio, cpu_ratio = t.median / base.median, t.cpu_median / base.cpu_median
        rows.append({"arm": name, "median_s": round(t.median, 4), "min_s": round(min(t.wall), 4),
                     "cpu_median_s": round(t.cpu_median, 4), "ratio": round(ratio, 4),
                     "cpu_ratio": round(cpu_ratio, 4)})
        out[name] = {**t.summary(), "ratio_to_plain": ratio, "cpu_ratio_to_plain": cpu_ratio}
    print_table(rows, f"1. capture overhead: {n_prompt}-token prompt + {new_tokens}-token greedy decode, "
                      f"{repeats} interleaved repeats")
    generated = reference.shape[1] - n_prompt
    print(f"generated tokens identical in all {len(arms) * (repeats + 1)} runs ({generated} new tokens)")
    for k, v in held.items():
        print(f"captured after generate ({k}): {mib(v['captured'])} MiB of q/k, "
              f"{mib(v['storage_held'])} MiB of storage kept alive")
    record_s, enter_exit_s = _record_time(model, prompt_ids, gen_kw, n_prompt)
    print(f"inside record(): {record_s * 1e3:.2f} ms per generate ({record_s / base.median:.2%} of the plain median); "
          f"entering + leaving the capture context: {enter_exit_s * 1e3:.2f} ms")
    ratio = out["capture_all_layers"]["ratio_to_plain"]
    return {
        "record_s_per_generate": record_s,
        "enter_exit_s": enter_exit_s,
        "prompt_tokens": n_prompt,
        "new_tokens": generated,
        "tokens_identical": True,
        "captured_bytes": held,
        "arms": out,
        "ratio": ratio,
        "target_max": TARGETS["capture_overhead_max"],
        "met": ratio <= TARGETS["capture_overhead_max"],
    }


def _record_time(model, prompt_ids, gen_kw, q_from: int) -> tuple[float, float]:
    """Seconds spent inside AttentionCapture.record during one generate, and one enter + exit of the context.

    Measured directly (a wrapper on the instance), so it does not depend on how busy the machine is.
    """
    import time

    from alignheads.model.capture import AttentionCapture

    cap = AttentionCapture(model, q_from=q_from)
    inner, spent = cap.record, [0.0]

    def timed(*args):
        t0 = time.perf_counter()
        inner(*args)
        spent[0] += time.perf_counter() - t0

    cap.record = timed  # the attention wrapper looks `record` up on the instance
    with torch.inference_mode(), cap:
        model.generate(prompt_ids, **gen_kw)
    t0 = time.perf_counter()
    for _ in range(10):
        with AttentionCapture(model, q_from=q_from):
            pass
    return spent[0], (time.perf_counter() - t0) / 10


# ------------------------------------------------------------------------------------ 2. replay vs eager
def replay_and_eager(lm, rendered):
    """The two ways to get every head's attention rows at the target positions, as arms `fn(parts, keep_rows)`.

    Both return (argmax over keys per layer/head/row, rows kept when asked) and put byte counts in `stats`.
    """
    from alignheads.model.capture import AttentionCapture

    model = lm.model
    n_layers = lm.facts.num_layers
    ids = torch.tensor([rendered.input_ids])
    q_from = rendered.prefix_end
    positions = list(range(q_from, ids.shape[1]))
    stats: dict[str, int] = {}

    def replay(parts: Parts, keep_rows: bool = False):
        """(a) base decoder under capture in streaming mode: each layer's rows for the target positions are
        computed inside the forward from the q/k the kernel gets, reduced (argmax) and dropped, so the
        attention data alive at any time is one layer's rows; nothing is stored."""
        best, kept, largest = {}, [], [0]

        def consume(layer, rows, pos):
            largest[0] = max(largest[0], tensor_bytes([rows]))
            best[layer] = rows[0].argmax(-1)
            if keep_rows:
                kept.append(rows[0])

        with torch.inference_mode():
            with AttentionCapture(model, q_from=q_from, on_rows=consume) as cap:
                model.model(input_ids=ids, use_cache=False)  # the base decoder: no 262k-vocabulary projection
            parts.lap("forward+rows")
        stats.update(captured=cap.nbytes(), captured_storage=storage_bytes(_cap_tensors(cap)), largest_block=largest[0])
        return torch.stack([best[layer] for layer in range(n_layers)]), kept

    def eager(parts: Parts, keep_rows: bool = False, base: bool = False):
        """(b) the reference: eager kernel, output_attentions on the full causal LM, target rows sliced.

        `base=True` is (c): the same on the base decoder, to separate what skipping the output
        projection saves from what replaying instead of materialising the attention saves.
        """
        model.set_attn_implementation("eager")
        try:
            with torch.inference_mode():
                net = model.model if base else model
                out = net(input_ids=ids, output_attentions=True, use_cache=False)
                parts.lap("forward")
                attn = out.attentions
                rows = [a[0][:, positions] for a in attn]
                best = torch.stack([r.argmax(-1) for r in rows])
                parts.lap("slice")
        finally:
            model.set_attn_implementation("sdpa")
        if not base:
            stats.update(attentions=tensor_bytes(attn), logits=tensor_bytes([out.logits]))
        return best, (rows if keep_rows else [])

    return replay, eager, stats


def compare_rows(lm, rendered, memory: bool) -> dict:
    """Run (a) and (b) once each: max difference of the rows, attention-data bytes, optional torch peaks."""
    replay, eager, stats = replay_and_eager(lm, rendered)
    best_a, rows_a = replay(Parts(), keep_rows=True)
    best_b, rows_b = eager(Parts(), keep_rows=True)
    impl = lm.model.config._attn_implementation
    if impl != "sdpa":
        raise AssertionError(f"attention implementation not restored: {impl}")
    max_diff = max(float((a - b.float()).abs().max()) for a, b in zip(rows_a, rows_b, strict=True))
    if max_diff > MAX_ABS_DIFF:
        raise AssertionError(f"replayed rows differ from eager output_attentions by {max_diff:.3g} > {MAX_ABS_DIFF}")
    del rows_a, rows_b
    attn_a = stats["captured"] + stats["largest_block"]
    held_a = stats["captured_storage"] + stats["largest_block"]
    out = {
        "prompt_tokens": len(rendered),
        "target_tokens": len(rendered) - rendered.prefix_end,
        "max_abs_diff": max_diff,
        "argmax_mismatches": int((best_a != best_b).sum()),
        "argmax_total": best_a.numel(),
        "bytes": {
            "a_captured_qk": stats["captured"],
            "a_captured_qk_storage_held": stats["captured_storage"],
            "a_largest_replayed_block": stats["largest_block"],
            "a_attention_data": attn_a,
            "b_attentions": stats["attentions"],
            "b_logits": stats["logits"],
        },
        "memory_ratio": stats["attentions"] / attn_a,
        "memory_ratio_storage_held": stats["attentions"] / held_a,
    }
    if memory:
        _, peak_a = torch_peak_bytes(lambda: replay(Parts()))
        _, peak_b = torch_peak_bytes(lambda: eager(Parts()))
        out["torch_peak_bytes"] = {"a_capture_replay": peak_a, "b_eager_output_attentions": peak_b,
                                   "ratio": peak_b / peak_a}
    return out


def bench_replay(lm, rendered, repeats: int, memory: bool) -> dict:
    result = compare_rows(lm, rendered, memory)
    replay, eager, _ = replay_and_eager(lm, rendered)
    best_c, _ = eager(Parts(), base=True)
    if not torch.equal(best_c, eager(Parts())[0]):
        raise AssertionError("eager attentions of the base decoder differ from the causal LM's")
    timings = interleaved({"a_capture_replay": lambda p: replay(p)[0],
                           "b_eager_output_attentions": lambda p: eager(p)[0],
                           "c_eager_output_attentions_base_decoder": lambda p: eager(p, base=True)[0]},
                          repeats, desc="2. replay vs eager")
    ta, tb = timings["a_capture_replay"], timings["b_eager_output_attentions"]
    tc = timings["c_eager_output_attentions_base_decoder"]
    speedup, cpu_speedup = tb.median / ta.median, tb.cpu_median / ta.cpu_median
    result.update({
        "layers": lm.facts.num_layers,
        "heads": lm.facts.num_heads,
        "kv_heads": lm.facts.num_kv_heads[0],
        "head_dim": lm.facts.head_dims[0],
        "a_capture_replay": ta.summary(),
        "b_eager_output_attentions": tb.summary(),
        "c_eager_output_attentions_base_decoder": tc.summary(),
        "speedup": speedup,
        "speedup_vs_c_base_decoder": tc.median / ta.median,
        "speedup_of_min": min(tb.wall) / min(ta.wall),
        "cpu_speedup": cpu_speedup,
        "speedup_target_min": TARGETS["replay_speedup_min"],
        "speedup_met": speedup >= TARGETS["replay_speedup_min"],
        "memory_ratio_target_min": TARGETS["attention_memory_ratio_min"],
        "memory_met": result["memory_ratio"] >= TARGETS["attention_memory_ratio_min"],
    })
    b = result["bytes"]
    rows = []
    for label, t, data in (("(a) capture + replay", ta, b["a_attention_data"]),
                           ("(b) eager output_attentions", tb, b["b_attentions"]),
                           ("(c) = (b) on the base decoder", tc, b["b_attentions"])):
        rows.append({"method": label, "median_s": round(t.median, 4), "min_s": round(min(t.wall), 4),
                     "cpu_median_s": round(t.cpu_median, 4),
                     **{f"{k}_s": round(v, 4) for k, v in t.summary()["parts_median_s"].items()},
                     "attention_data_MiB": mib(data)})
    if memory:
        peaks = result["torch_peak_bytes"]
        rows[0]["torch_peak_MiB"] = mib(peaks["a_capture_replay"])
        rows[1]["torch_peak_MiB"] = mib(peaks["b_eager_output_attentions"])
    print_table(rows, f"2. all-head rows for {result['target_tokens']} target tokens of a "
                      f"{result['prompt_tokens']}-token prompt, {repeats} interleaved repeats")
    print(f"speedup (b)/(a): {speedup:.3f}x wall median, {result['speedup_of_min']:.3f}x wall min, "
          f"{cpu_speedup:.3f}x CPU (target >= {TARGETS['replay_speedup_min']}x); "
          f"(c)/(a): {result['speedup_vs_c_base_decoder']:.3f}x wall median")
    print(f"attention data (b)/(a): {result['memory_ratio']:.3f}x (target >= {TARGETS['attention_memory_ratio_min']}x;"
          f" captured q/k {mib(b['a_captured_qk'])} MiB, storage actually held {mib(b['a_captured_qk_storage_held'])}"
          f" MiB -> {result['memory_ratio_storage_held']:.3f}x)")
    if memory:
        print(f"peak torch allocations (b)/(a): {result['torch_peak_bytes']['ratio']:.3f}x")
    print(f"max |(a) - (b)| = {result['max_abs_diff']:.3g} (<= {MAX_ABS_DIFF}); "
          f"argmax mismatches {result['argmax_mismatches']}/{result['argmax_total']}")
    return result


def bench_length_sweep(lm, gold: Path, lengths: list[int]) -> list[dict]:
    """Attention-data bytes and value agreement of (a) vs (b) at longer prompts (one run each, no timing)."""
    from tqdm import tqdm

    out = []
    for tokens in tqdm(lengths, desc="2b. length sweep", leave=False):
        _, rendered, used = build_prompt(lm, gold, tokens)
        r = compare_rows(lm, rendered, memory=True)
        r["pairs"] = used
        out.append(r)
    print_table([{"prompt_tokens": r["prompt_tokens"], "target_tokens": r["target_tokens"],
                  "a_attention_data_MiB": mib(r["bytes"]["a_attention_data"]),
                  "b_attentions_MiB": mib(r["bytes"]["b_attentions"]),
                  "memory_ratio": round(r["memory_ratio"], 3),
                  "torch_peak_ratio": round(r["torch_peak_bytes"]["ratio"], 3),
                  "max_abs_diff": f"{r['max_abs_diff']:.3g}"} for r in out],
                "2b. attention data vs prompt length (one run each)")
    return out


def _cap_tensors(cap) -> list[torch.Tensor]:
    return [t for r in cap.records.values() for t in (*r.queries, *r.keys)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=7, help="timed repetitions per arm (interleaved); default 7")
    ap.add_argument("--quick", action="store_true", help="3 repeats, no memory profiling (smoke run)")
    ap.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    ap.add_argument("--tokens", type=int, default=200, help="approximate teacher-forced prompt length (default 200)")
    ap.add_argument("--sweep", type=int, nargs="*", default=[400, 800],
                    help="longer prompt lengths for the attention-data sweep (default 400 800; skipped by --quick)")
    ap.add_argument("--new-tokens", type=int, default=16, help="greedy draft length for benchmark 1 (default 16)")
    ap.add_argument("--gold", type=Path, default=GOLD, help="XL-WA en-it gold file to build prompts from")
    ap.add_argument("--model", default="embedded", help="model spec for alignheads.model.loader.load_model")
    ap.add_argument("--name", default="bench_capture", help="results file name (benchmarks/results/<name>.json)")
    args = ap.parse_args(argv)
    repeats = 3 if args.quick and args.repeats == 7 else args.repeats
    if repeats < 1:
        ap.error("--repeats must be >= 1")
    if not args.gold.is_file():
        ap.error(f"gold file {args.gold} not found (it lives in ../shared beside the checkout; pass --gold)")

    from alignheads.model.loader import timed_load

    threads = pin_threads(args.threads)
    load_start = [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None
    lm, load_s = timed_load(args.model, device="cpu")
    lm.model.eval()
    layout, rendered, used = build_prompt(lm, args.gold, args.tokens)
    print(f"model {lm.facts.model_id} loaded in {load_s:.1f}s; {threads} threads; prompt {len(rendered)} tokens "
          f"({rendered.prefix_end} before the target) from pairs {', '.join(used)}")
    prompt_ids = torch.tensor([rendered.input_ids[: rendered.prefix_end]])

    overhead = bench_overhead(lm, prompt_ids, repeats, args.new_tokens)
    replay = bench_replay(lm, rendered, repeats, memory=not args.quick)
    sweep = [] if args.quick else bench_length_sweep(lm, args.gold, args.sweep)
    path = write_result(args.name, {
        "model": lm.facts.model_id,
        "model_load_s": load_s,
        "loadavg_at_start": load_start,
        "quick": args.quick,
        "repeats": repeats,
        "prompt": {"layout": layout.id, "pairs": used, "tokens": len(rendered), "prefix_end": rendered.prefix_end,
                   "gold": args.gold.name},
        "targets": TARGETS,
        "capture_overhead": overhead,
        "replay_vs_eager": replay,
        "length_sweep": sweep,
    })
    print(f"\ncapture overhead ratio {overhead['ratio']:.4f} (target <= {TARGETS['capture_overhead_max']}: "
          f"{'met' if overhead['met'] else 'MISSED'}); replay speedup {replay['speedup']:.3f}x "
          f"({'met' if replay['speedup_met'] else 'MISSED'}); attention memory {replay['memory_ratio']:.3f}x "
          f"({'met' if replay['memory_met'] else 'MISSED'})")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
