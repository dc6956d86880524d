"""Speech cascade on the embedded models (whisper-base + Gemma 3 270M): real-time factor, ASR word error rate and
where the time goes, the code before issue 20 against the current one in the same run; robustness; a long soak.

1. Every shipped talk at 850 ms and 1500 ms chunks with two arms, interleaved talk by talk so a busy machine's
   drift hits both: `before` is the cascade before issue 20 (float32 model, one forward per draft token, no draft
   memo, recognition and translation taking turns: RTF = (ASR + MT) / audio); `now` is the default (`--dtype
   auto`: the exact screened output layer; the last draft verified as a guess; the draft memo; the recogniser and
   the translator overlapping on two threads, one core each: RTF = max(ASR busy, MT busy) / audio, each measured
   while both run; the summed RTF beside it). Per arm: computation-aware RTF and CPU-time RTF, ASR WER (jiwer:
   committed transcript vs the talk's text), BLEU and LongYAAL, the emissions' lag behind the stream (CA − CU
   time) and its slope over the talk (a pipeline that keeps up does not fall behind), and the seconds in ASR
   encode / decode / word alignment / VAD, MT prefill / draft / replay / decide and the rest.
2. Constructed audio (the talks are espeak, not real speech), `now` arm: 20 s of silence, 20 s of white noise at
   -50 dBFS, a talk with 5 s pauses between its sentences, a talk under white noise at -30 dBFS, a talk with its
   sentence gaps cut out (one long utterance).
3. Soak (`--minutes N`, 0 to skip): the talks looped (1 s apart) for N minutes at 1500 ms; RSS after every
   chunk, its growth from minute 1 to the end, units emitted and units lost (units the live callback
   received that are not in the written instances.log, in order: must be 0), sentences without output.

    python benchmarks/bench_cascade.py [--threads 1] [--minutes 10] [--skip-talks] [--heads FILE] [--name cascade]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, pin_threads, print_table, write_result  # noqa: E402

from alignheads.base.languages import target_units  # noqa: E402
from alignheads.corpus.formats import read_corpus  # noqa: E402
from alignheads.heads.calibrate import calibrate  # noqa: E402
from alignheads.heads.headset import load_headset  # noqa: E402
from alignheads.heads.scoring import ScoreConfig  # noqa: E402
from alignheads.model.loader import load_model  # noqa: E402
from alignheads.simul.coverage import coverage_summary  # noqa: E402
from alignheads.simul.evaluation import read_instances, score_longform  # noqa: E402
from alignheads.simul.translator import TranslatorConfig  # noqa: E402
from alignheads.speech.asr import WhisperBackend  # noqa: E402
from alignheads.speech.audio import SAMPLE_RATE, iter_chunks, load_audio  # noqa: E402
from alignheads.speech.cascade import SpeechCascade  # noqa: E402
from alignheads.speech.outputs import coverage, write_outputs  # noqa: E402
from alignheads.speech.pipeline import CASCADE_MEMO, DEFAULT_HOLDBACK, CascadeConfig, build_cascade  # noqa: E402
from alignheads.speech.stabilizer import StabilizerConfig  # noqa: E402
from alignheads.speech.talks import talk_references  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TALKS = sorted((ROOT / "data" / "talks").glob("talk*.wav"))
TGT = "de"
# arm -> (model dtype, verify the last draft as a guess, draft memo, recognise and translate at the same time)
ARMS = {"before": (None, False, 0, False), "now": ("auto", True, CASCADE_MEMO, True)}


def words_of(text: str) -> str:
    """Lower-cased words without punctuation, for WER."""
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


def make(models: dict, heads, asr: WhisperBackend, arm: str, chunk_ms: int, on_emit=None) -> SpeechCascade:
    """A fresh en-de AlignAtt cascade with the default translator settings and the arm's speed settings."""
    dtype, guess, memo, overlap = ARMS[arm]
    translator = TranslatorConfig(holdback=DEFAULT_HOLDBACK, memo_size=memo, guess=guess)
    return build_cascade(CascadeConfig(heads=heads, tgt=TGT, stabilizer=StabilizerConfig(chunk_ms=chunk_ms),
                                       translator=translator, overlap=overlap, dtype=dtype),
                         lm=models[dtype], asr=asr, on_emit=on_emit)


def run(models, heads, asr: WhisperBackend, arm: str, chunk_ms: int, audio: np.ndarray) -> SpeechCascade:
    """Stream `audio` through a fresh cascade; return it finished."""
    cascade = make(models, heads, asr, arm, chunk_ms)
    for chunk in iter_chunks(audio, cascade.config.chunk_samples):
        cascade.process_chunk(chunk)
    cascade.finish()
    cascade.close()
    return cascade


def lag(cascade: SpeechCascade) -> dict:
    """How far the emissions trail the stream (CA − CU time): mean, last, and the slope over the talk (s per s)."""
    if len(cascade.emissions) < 2:
        return {"lag_mean_s": None, "lag_last_s": None, "lag_slope": None}
    cu = np.array([e.time_cu for e in cascade.emissions])
    behind = np.array([e.time_ca for e in cascade.emissions]) - cu
    slope = float(np.polyfit(cu, behind, 1)[0]) if np.ptp(cu) > 0 else 0.0
    return {"lag_mean_s": round(float(behind.mean()), 3), "lag_last_s": round(float(behind[-1]), 3),
            "lag_slope": round(slope, 4)}


def measured(models, heads, asr: WhisperBackend, arm: str, chunk_ms: int, audio: np.ndarray
             ) -> tuple[SpeechCascade, dict]:
    """Run and account for the time: wall and CPU, ASR stages, VAD, MT stages."""
    before = asr.timings
    c0 = time.process_time()
    cascade = run(models, heads, asr, arm, chunk_ms, audio)
    cpu = time.process_time() - c0
    st = cascade.stats
    asr_t = {k: v - before[k] for k, v in asr.timings.items()}
    mt_t = {"prefill": 0.0, "draft": 0.0, "replay": 0.0, "decide": 0.0}
    updates = [u for rec in [cascade.translator_updates] for u in rec]
    assert len(updates) < cascade.translator_updates.maxlen, "translator updates were dropped; use a shorter clip"
    for u in updates:
        for k in mt_t:
            mt_t[k] += u.decision_trace.timings.get(k, 0.0)
    row = {"audio_s": round(cascade.now, 1), "rtf_ca": round(st.rtf, 3), "rtf_sum": round(st.rtf_sum, 3),
           "rtf_cpu": round(cpu / cascade.now, 3), **lag(cascade),
           "asr_s": round(st.asr_s, 2), "mt_s": round(st.mt_s, 2), "asr_calls": st.asr_calls, "chunks": st.chunks,
           **{f"asr_{k}_s": round(v, 2) for k, v in asr_t.items()},
           "asr_other_s": round(st.asr_s - sum(asr_t.values()), 2),
           **{f"mt_{k}_s": round(v, 2) for k, v in mt_t.items()},
           "mt_other_s": round(st.mt_s - sum(mt_t.values()), 2), "units": len(cascade.emissions)}
    return cascade, row


def transcript(cascade: SpeechCascade) -> str:
    return " ".join(w.text for rec in cascade.sentences for w in rec.words)


def flagged(cascade: SpeechCascade) -> dict:
    """The run's coverage flags (after the timed run): count, per flag, and each flagged sentence with the same
    model's offline translation of it, so a `short` output can be told from a short offline translation."""
    cov = coverage_summary(coverage(cascade, offline=False))
    detail = [{"index": s["index"], "flags": s["flags"], "source": s["source"], "target": s["target"],
               "offline": cascade.translator.offline(s["source"].split())}
              for s in cov["sentences"] if s["flags"]]
    return {"flagged": cov["n_flagged"], "flag_counts": cov["flag_counts"], "flagged_sentences": detail}


def bench_talks(models, heads, asr, chunks: list[int]) -> tuple[list[dict], list[dict]]:
    import jiwer

    rows = []
    for chunk_ms in chunks:
        for i, talk in enumerate(TALKS):
            audio = load_audio(talk)
            refs, segments = talk_references(talk, TGT)
            reference_text = (talk.with_suffix(".txt")).read_text(encoding="utf-8")
            order = list(ARMS) if i % 2 == 0 else list(ARMS)[::-1]
            for arm in order:
                cascade, row = measured(models, heads, asr, arm, chunk_ms, audio)
                scores = score_longform(cascade.instance(), refs, TGT, segments)
                rows.append({"arm": arm, "chunk_ms": chunk_ms, "talk": talk.stem, **row,
                             "bleu": round(scores["bleu"], 2), "longyaal_cu_ms": round(scores["longyaal_cu"]),
                             "longyaal_ca_ms": round(scores["longyaal_ca"]), **flagged(cascade),
                             "_ref": words_of(reference_text), "_hyp": words_of(transcript(cascade))})
                print(f"  {arm:5s} {chunk_ms} ms {talk.stem}: RTF {row['rtf_ca']} (cpu {row['rtf_cpu']})", flush=True)
    summary = []
    for chunk_ms in chunks:
        for arm in ARMS:
            sel = [r for r in rows if r["arm"] == arm and r["chunk_ms"] == chunk_ms]
            audio = sum(r["audio_s"] for r in sel)
            tot = {k: sum(r[k] for r in sel) for k in sel[0] if k.endswith("_s") and k != "audio_s"}
            overlap = ARMS[arm][3]
            summary.append({
                "arm": arm, "chunk_ms": chunk_ms, "audio_s": round(audio, 1),
                "rtf_ca": round(sum(r["rtf_ca"] * r["audio_s"] for r in sel) / audio, 3),
                "rtf_sum": round((tot["asr_s"] + tot["mt_s"]) / audio, 3), "overlap": overlap,
                "rtf_asr": round(tot["asr_s"] / audio, 3), "rtf_mt": round(tot["mt_s"] / audio, 3),
                "lag_slope_max": max(r["lag_slope"] or 0.0 for r in sel),
                "rtf_cpu": round(sum(r["rtf_cpu"] * r["audio_s"] for r in sel) / audio, 3),
                "asr_wer": round(100 * jiwer.wer([r["_ref"] for r in sel], [r["_hyp"] for r in sel]), 2),
                "bleu_mean": round(sum(r["bleu"] for r in sel) / len(sel), 2),
                "flagged": sum(r["flagged"] for r in sel),
                "asr_calls": sum(r["asr_calls"] for r in sel), "chunks": sum(r["chunks"] for r in sel),
                **{k: round(v, 2) for k, v in tot.items()}})
    for chunk_ms in chunks:
        before, now = (next(s for s in summary if s["arm"] == a and s["chunk_ms"] == chunk_ms) for a in ARMS)
        now["speedup_vs_before"] = round(before["rtf_ca"] / now["rtf_ca"], 2)
        now["mt_speedup_vs_before"] = round(before["mt_s"] / now["mt_s"], 2)
        now["wer_change_points"] = round(now["asr_wer"] - before["asr_wer"], 2)
    for r in rows:
        del r["_ref"], r["_hyp"]
    return rows, summary


def noise(seconds: float, dbfs: float, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(round(seconds * SAMPLE_RATE)) * 10 ** (dbfs / 20)).astype(
        np.float32)


def constructed(talk: Path) -> dict[str, tuple[np.ndarray, str | None]]:
    """Audio cases built from a shipped talk: name -> (audio, the words spoken or None for none)."""
    import json

    audio = load_audio(talk)
    text = talk.with_suffix(".txt").read_text(encoding="utf-8")
    sents = json.loads((talk.parent / "talks.json").read_text())["talks"][talk.stem]["sentences"]
    pieces = [audio[round(max(0.0, s["start"] - 0.2) * SAMPLE_RATE): round((s["end"] + 0.2) * SAMPLE_RATE)]
              for s in sents]
    pause = np.zeros(5 * SAMPLE_RATE, np.float32)
    return {
        "silence_20s": (np.zeros(20 * SAMPLE_RATE, np.float32), None),
        "white_noise_-50dBFS_20s": (noise(20, -50), None),
        "pauses_5s": (np.concatenate([x for p in pieces for x in (p, pause)]), text),
        "white_noise_-30dBFS_mixed": (audio + noise(len(audio) / SAMPLE_RATE, -30, seed=1), text),
        "no_gaps": (np.concatenate(pieces), text),
    }


def bench_robustness(models, heads, asr: WhisperBackend, chunk_ms: int) -> list[dict]:
    import jiwer

    rows = []
    for name, (audio, text) in constructed(TALKS[0]).items():
        cascade, row = measured(models, heads, asr, "now", chunk_ms, audio)
        heard = words_of(transcript(cascade))
        rows.append({"case": name, "audio_s": row["audio_s"], "units": row["units"],
                     "sentences": len(cascade.sentences), "asr_calls": row["asr_calls"], "chunks": row["chunks"],
                     "asr_wer": round(100 * jiwer.wer(words_of(text), heard), 2) if text else None,
                     "rtf_ca": row["rtf_ca"], "lag_slope": row["lag_slope"], **flagged(cascade),
                     "heard": heard[:120]})
        print(f"  {name}: {row['units']} units", flush=True)
    return rows


def soak(models, heads, asr: WhisperBackend, minutes: float, chunk_ms: int, checkpoint=None) -> dict:
    talks = [load_audio(p) for p in TALKS]
    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    one = np.concatenate([x for t in talks for x in (t, gap)])
    total = int(minutes * 60 * SAMPLE_RATE)
    audio = np.tile(one, int(np.ceil(total / len(one))))[:total]
    live: list[str] = []
    cascade = make(models, heads, asr, "now", chunk_ms, on_emit=lambda em: live.extend(e.text for e in em))
    proc = psutil.Process()
    samples = []
    from tqdm import tqdm

    for chunk in tqdm(iter_chunks(audio, cascade.config.chunk_samples), total=-(-total // cascade.config.chunk_samples),
                      desc="soak", unit="chunk", mininterval=30):
        cascade.process_chunk(chunk)
        samples.append((cascade.now, proc.memory_info().rss, len(cascade.buffer)))
        if checkpoint and len(samples) % 100 == 0:  # a long run that is stopped still leaves its numbers
            checkpoint({"partial": True, "audio_s": round(cascade.now, 1), "units_emitted": len(live),
                        "rtf_ca": round(cascade.stats.rtf, 3), "rss_mib": round(samples[-1][1] / 2**20, 1),
                        "rss_mib_by_minute": {round(t / 60): round(r / 2**20, 1) for t, r, _ in samples[::40]}})
    cascade.finish()
    cascade.close()
    with tempfile.TemporaryDirectory() as out:
        summary = write_outputs(out, cascade, audio_name="soak", offline=False)
        logged = target_units(read_instances(Path(out) / "instances.log", TGT)[0].prediction, TGT)
    kept = next((i for i, (a, b) in enumerate(zip(live, logged, strict=False)) if a != b), min(len(live), len(logged)))
    rss_at = {m: next(r for t, r, _ in samples if t >= m * 60) for m in range(1, int(minutes))}
    first, last = rss_at.get(1, samples[0][1]), samples[-1][1]
    return {
        "minutes": minutes, "chunk_ms": chunk_ms, "chunks": len(samples), "rtf_ca": round(cascade.stats.rtf, 3),
        **lag(cascade),
        "units_emitted": len(live), "units_logged": len(logged), "units_lost": len(live) - kept,
        "sentences": len(cascade.sentences), "sentences_without_output": sum(
            1 for rec in cascade.sentences if rec.words and not rec.steps),
        "flagged_sentences": summary["flagged_sentences"], "coverage": summary["coverage"],
        "asr_calls": cascade.stats.asr_calls,
        "rss_mib_minute_1": round(first / 2**20, 1), "rss_mib_end": round(last / 2**20, 1),
        "rss_growth_mib": round((last - first) / 2**20, 1),
        "rss_mib_by_minute": {m: round(r / 2**20, 1) for m, r in rss_at.items()},
        "max_buffer_s": round(max(b for *_, b in samples) / SAMPLE_RATE, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=10.0, help="soak length (0: no soak)")
    ap.add_argument("--chunks", default="850,1500", help="chunk sizes in ms for part 1")
    ap.add_argument("--skip-talks", action="store_true", help="run only the soak")
    ap.add_argument("--heads", help="head-set JSON (default: calibrate on the shipped en-de dev set)")
    ap.add_argument("--name", default="cascade", help="results/<name>.json for the talks (one file per machine)")
    args = ap.parse_args()
    pin_threads(args.threads)
    models = {dtype: load_model("embedded", dtype=dtype) for dtype, *_ in ARMS.values()}
    lm = models[None]
    asr = WhisperBackend(cpu_threads=args.threads)
    if args.heads:
        heads = load_headset(args.heads)
    else:
        _, _, heads = calibrate(lm, read_corpus(ROOT / "data" / "gold" / "en-de.dev.tsv"),
                                score_cfg=ScoreConfig(progress=False))
    if not args.skip_talks:
        chunks = [int(c) for c in args.chunks.split(",")]
        rows, summary = bench_talks(models, heads, asr, chunks)
        print_table([{k: v for k, v in r.items() if not isinstance(v, list | dict)} for r in rows],
                    f"1. cascade per talk (whisper-base + {lm.facts.model_id}, {args.threads} thread(s))")
        print_table(summary, "1. all talks per arm (before: issue 20's start; now: the defaults)")
        robust = bench_robustness(models, heads, asr, 850)
        print_table([{k: v for k, v in r.items() if not isinstance(v, list | dict)} for r in robust],
                    "2. constructed audio at 850 ms (now)")
        targets = {850: 0.5, 1500: 0.35}
        for s in summary:
            if s["arm"] == "now" and s["chunk_ms"] in targets:
                ok = s["rtf_ca"] <= targets[s["chunk_ms"]]
                print(f"target RTF at {s['chunk_ms']} ms <= {targets[s['chunk_ms']]}: {s['rtf_ca']} "
                      f"({'met' if ok else 'MISSED'}; summed {s['rtf_sum']}); speed-up {s['speedup_vs_before']}x "
                      f"(MT {s['mt_speedup_vs_before']}x); WER {s['asr_wer']} ({s['wer_change_points']:+} points)")
        path = write_result(args.name, {"talks": rows, "summary": summary, "constructed": robust,
                                        "machine_after": machine_info()})
        print(f"wrote {path}")
    if args.minutes > 0:
        def checkpoint(partial):
            write_result("cascade_soak", {"soak": {"minutes": args.minutes, **partial}})

        result = soak(models, heads, asr, args.minutes, 1500, checkpoint)
        print_table([{k: v for k, v in result.items() if k != "rss_mib_by_minute"}],
                    f"3. {args.minutes:g}-minute stream at 1500 ms")
        print(f"RSS by minute (MiB): {result['rss_mib_by_minute']}")
        print(f"targets: units lost = 0: {result['units_lost']} ({'met' if result['units_lost'] == 0 else 'MISSED'}); "
              f"RSS growth minute 1 -> end < 100 MiB: {result['rss_growth_mib']} "
              f"({'met' if result['rss_growth_mib'] < 100 else 'MISSED'})")
        path = write_result("cascade_soak", {"soak": result, "machine_after": machine_info()})
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
