"""Speech cascade on the embedded models: computation-aware real-time factor and memory over a long stream.

1. RTF (ASR + MT processing time / audio time) of a shipped talk at 1500 ms and 850 ms chunks.
2. Soak: a stream of the shipped talks concatenated to `--minutes` of audio; resident memory (RSS)
   sampled after every chunk; growth from minute 1 to the end, and per-chunk state sizes.

    python benchmarks/bench_cascade.py [--threads 1] [--minutes 10] [--heads FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine_info, pin_threads, print_table, write_result  # noqa: E402

from alignheads.asr import load_asr  # noqa: E402
from alignheads.audio import SAMPLE_RATE, iter_chunks, load_audio  # noqa: E402
from alignheads.calibrate import calibrate  # noqa: E402
from alignheads.data import read_corpus  # noqa: E402
from alignheads.evaluation import score_longform  # noqa: E402
from alignheads.headset import load_headset  # noqa: E402
from alignheads.models import load_model  # noqa: E402
from alignheads.pipeline import CascadeConfig, build_cascade  # noqa: E402
from alignheads.scoring import ScoreConfig  # noqa: E402
from alignheads.stabilizer import StabilizerConfig  # noqa: E402
from alignheads.talks import talk_references  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TALKS = ROOT / "data" / "talks"


def run_talk(lm, asr, heads, chunk_ms: int, talk: Path) -> dict:
    cascade = build_cascade(CascadeConfig(heads=heads, stabilizer=StabilizerConfig(chunk_ms=chunk_ms)), lm=lm, asr=asr)
    audio = load_audio(talk)
    t0 = time.perf_counter()
    for chunk in iter_chunks(audio, cascade.config.chunk_samples):
        cascade.process_chunk(chunk)
    cascade.finish()
    wall = time.perf_counter() - t0
    refs, segments = talk_references(talk, "de")
    scores = score_longform(cascade.instance(), refs, "de", segments)
    return {"talk": talk.name, "chunk_ms": chunk_ms, "audio_s": round(cascade.now, 2), "wall_s": round(wall, 2),
            "rtf_ca": round(cascade.stats.rtf, 3), "asr_s": round(cascade.stats.asr_s, 2),
            "mt_s": round(cascade.stats.mt_s, 2), "bleu": round(scores["bleu"], 2),
            "longyaal_cu_ms": round(scores["longyaal_cu"], 1), "longyaal_ca_ms": round(scores["longyaal_ca"], 1)}


def soak(lm, asr, heads, minutes: float, chunk_ms: int) -> dict:
    talks = [load_audio(p) for p in sorted(TALKS.glob("talk*.wav"))]
    gap = np.zeros(SAMPLE_RATE, dtype=np.float32)
    one = np.concatenate([x for t in talks for x in (t, gap)])
    audio = np.tile(one, int(np.ceil(minutes * 60 * SAMPLE_RATE / len(one))))[: int(minutes * 60 * SAMPLE_RATE)]
    cascade = build_cascade(CascadeConfig(heads=heads, stabilizer=StabilizerConfig(chunk_ms=chunk_ms)), lm=lm, asr=asr)
    translator = cascade.translator
    proc = psutil.Process()
    samples = []
    for chunk in iter_chunks(audio, cascade.config.chunk_samples):
        cascade.process_chunk(chunk)
        samples.append((cascade.now, proc.memory_info().rss, len(cascade.buffer), len(translator.history)))
    cascade.finish()
    rss_at = {m: next(r for t, r, *_ in samples if t >= m * 60) for m in range(1, int(minutes))}
    first = rss_at[1]
    last = samples[-1][1]
    return {
        "minutes": minutes, "chunk_ms": chunk_ms, "chunks": len(samples), "units": len(cascade.emissions),
        "sentences": cascade.stats.sentences, "rtf_ca": round(cascade.stats.rtf, 3),
        "rss_mib_minute_1": round(first / 2**20, 1), "rss_mib_end": round(last / 2**20, 1),
        "rss_growth_mib": round((last - first) / 2**20, 1),
        "rss_mib_by_minute": {m: round(r / 2**20, 1) for m, r in rss_at.items()},
        "max_buffer_s": round(max(b for *_, b, _ in samples) / SAMPLE_RATE, 2),
        "max_translator_history": max(h for *_, h in samples),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--heads", help="head-set JSON (default: calibrate on the shipped en-de dev set)")
    args = ap.parse_args()
    pin_threads(args.threads)
    lm = load_model("embedded")
    asr = load_asr("whisper", cpu_threads=args.threads)
    if args.heads:
        heads = load_headset(args.heads)
    else:
        _, _, heads = calibrate(lm, read_corpus(ROOT / "data" / "gold" / "en-de.dev.tsv"),
                                score_cfg=ScoreConfig(progress=False))
    rows = [run_talk(lm, asr, heads, ms, TALKS / "talk04.wav") for ms in (1500, 850)]
    print_table(rows, f"1. cascade on talk04 (whisper-base + {lm.facts.model_id}, {args.threads} thread(s))")
    soak_result = soak(lm, asr, heads, args.minutes, 1500)
    print_table([{k: v for k, v in soak_result.items() if k != "rss_mib_by_minute"}],
                f"2. {args.minutes:g}-minute stream at 1500 ms")
    print(f"RSS by minute (MiB): {soak_result['rss_mib_by_minute']}")
    print(f"targets: RTF at 1500 ms <= 1.0: {rows[0]['rtf_ca']} ({'met' if rows[0]['rtf_ca'] <= 1 else 'MISSED'}); "
          f"RSS growth minute 1 -> end < 100 MiB: {soak_result['rss_growth_mib']} "
          f"({'met' if soak_result['rss_growth_mib'] < 100 else 'MISSED'})")
    path = write_result("cascade", {"talk": rows, "soak": soak_result, "machine_after": machine_info()})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
