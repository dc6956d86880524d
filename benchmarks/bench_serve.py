"""`alignheads serve` under load: N concurrent sessions on loopback replaying the shipped talks in real time.

Each session replays the talks' transcripts (data/talks/talks.json sentence times, words spread by length;
`alignheads.speech.talks.talk_sentences`) back to back, starting at a different talk, for `--seconds` of stream time.
At every
word's end it sends the full state of the open sentence: the words heard so far, the last `--tail` of them as
the unstable tail, and `is_final` on the sentence's last word. It does not wait for answers (a pipelining
client: the server coalesces). Latency of an update = time from sending it to the first translation frame
with a seq at least its own. The server runs in its own process on the embedded model (RSS measured there).

    python benchmarks/bench_serve.py [--sessions 1,4,16] [--seconds 60] [--threads 1] [--heads FILE]

Targets (issue 14): 4 sessions with p95 < 1.5 s; every one of 16 sessions receives translations; 0 errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_table, write_result  # noqa: E402

from alignheads.heads.headset import headset_filename  # noqa: E402
from alignheads.model.loader import EMBEDDED_MODEL_ID  # noqa: E402
from alignheads.speech.talks import talk_sentences  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TALKS = ("talk04", "talk05", "talk06")
GAP_S = 1.0  # silence between replayed talks


def schedule(first_talk: int, seconds: float, tail: int) -> list[tuple[float, dict]]:
    """(stream time, update without seq) for one session: talks back to back from `first_talk` until `seconds`."""
    out, offset, utt = [], 0.0, 0
    durations = json.loads((ROOT / "data" / "talks" / "talks.json").read_text())["talks"]
    k = first_talk
    while offset < seconds:
        name = TALKS[k % len(TALKS)]
        for sent in talk_sentences(name):
            words = sent.words
            for n, w in enumerate(words, 1):
                final = n == len(words)
                cut = n if final else max(0, n - tail)
                msg = {"type": "update", "utterance_id": utt,
                       "words": [[x.text, (offset + x.start) * 1000, (offset + x.end) * 1000] for x in words[:cut]],
                       "clock_ms": (offset + w.end) * 1000, "is_final": final}
                if not final and cut < n:
                    msg["tail"] = {"words": [[x.text, None, None] for x in words[cut:n]]}
                out.append((offset + w.end, msg))
            utt += 1
        offset += durations[name]["duration"] + GAP_S
        k += 1
    return [(t, m) for t, m in out if t <= seconds]


@dataclass
class SessionLog:
    """What one client saw."""

    sent: int = 0
    translations: int = 0
    finals: int = 0
    latencies: list[float] = field(default_factory=list)
    final_latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    unanswered: int = 0


async def run_session(url: str, idx: int, start: float, seconds: float, tail: int, drain_s: float) -> SessionLog:
    from websockets.asyncio.client import connect

    log = SessionLog()
    plan = schedule(idx % len(TALKS), seconds, tail)
    pending: dict[int, tuple[float, bool]] = {}  # seq -> (sent at, is_final)
    done = asyncio.Event()
    async with connect(url, open_timeout=60) as ws:
        await ws.send(json.dumps({"type": "init", "protocol_version": 1, "source_lang": "en", "target_lang": "de"}))
        reply = json.loads(await ws.recv())
        if reply.get("type") != "init_ok":
            log.errors.append(f"init: {reply}")
            return log

        async def receive():
            async for raw in ws:
                msg, now = json.loads(raw), time.perf_counter()
                if msg.get("type") == "error":
                    log.errors.append(f"{msg.get('code')}: {msg.get('message')}")
                    continue
                log.translations += 1
                log.finals += bool(msg.get("final"))
                for seq in [s for s in pending if s <= msg["seq"]]:
                    at, final = pending.pop(seq)
                    (log.final_latencies if final else log.latencies).append(now - at)
                if not pending and done.is_set():
                    return

        receiver = asyncio.create_task(receive())
        for seq, (at, msg) in enumerate(plan, 1):
            await asyncio.sleep(max(0.0, start + at - time.perf_counter()))
            pending[seq] = (time.perf_counter(), msg["is_final"])
            await ws.send(json.dumps({**msg, "seq": seq}))
            log.sent += 1
        done.set()
        try:
            await asyncio.wait_for(receiver, drain_s)
        except TimeoutError:
            pass
        log.unanswered = len(pending)
    return log


async def run_clients(url: str, n: int, seconds: float, tail: int, drain_s: float) -> list[SessionLog]:
    t0 = time.perf_counter() + 1.0
    stagger = min(0.3, 3.0 / n)  # sessions do not send in lockstep
    return await asyncio.gather(*(run_session(url, i, t0 + i * stagger, seconds, tail, drain_s) for i in range(n)))


def start_server(heads: str, n: int, threads: int, preset: str, log_path: Path) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "alignheads", "serve", "--model", "embedded", "--heads", heads, "--port", "0",
           "--threads", str(threads), "--max-sessions", str(n), "--preset", preset]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log_path.open("w"), text=True, env=env)
    for line in proc.stdout:
        if line.startswith("listening on "):
            threading.Thread(target=proc.stdout.read, daemon=True).start()  # keep the pipe drained
            return proc, line.split()[2]
    raise SystemExit(f"the server did not start (exit {proc.wait()}); see {log_path}")


def percentile(xs: list[float], q: float) -> float | None:
    if not xs:
        return None
    return statistics.quantiles(xs, n=100, method="inclusive")[q - 1] if len(xs) > 1 else xs[0]


def run(n: int, args, heads: str) -> dict:
    out_dir = ROOT / "out" / "bench_serve"
    out_dir.mkdir(parents=True, exist_ok=True)
    proc, url = start_server(heads, n, args.threads, args.preset, out_dir / f"server_{n}.log")
    server = psutil.Process(proc.pid)
    rss = [server.memory_info().rss]
    sampling = threading.Event()

    def sample():
        while not sampling.wait(1.0):
            rss.append(server.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.perf_counter()
    try:
        logs = asyncio.run(run_clients(url, n, args.seconds, args.tail, args.drain))
        wall = time.perf_counter() - t0
        time.sleep(0.5)
        with urllib.request.urlopen(url.replace("ws://", "http://") + "/health", timeout=10) as r:
            health = json.loads(r.read())
        rss_end = server.memory_info().rss
    finally:
        sampling.set()
        proc.terminate()
        proc.wait(30)
    lat = [x for s in logs for x in s.latencies]
    fin = [x for s in logs for x in s.final_latencies]
    errors = [e for s in logs for e in s.errors]
    return {
        "sessions": n, "seconds": args.seconds, "preset": args.preset,
        "updates_sent": sum(s.sent for s in logs), "translations": sum(s.translations for s in logs),
        "coalesced": health["coalesced"], "stale": health["stale"],
        "p50_s": percentile(lat, 50), "p95_s": percentile(lat, 95), "max_s": max(lat, default=None),
        "final_p50_s": percentile(fin, 50), "final_p95_s": percentile(fin, 95),
        "min_translations_per_session": min(s.translations for s in logs),
        "worst_session_p95_s": max((percentile(s.latencies, 95) or 0) for s in logs),
        "errors": len(errors), "error_samples": errors[:5],
        "sessions_left_waiting": sum(s.unanswered > 0 for s in logs),  # updates still unanswered after --drain
        "engine_busy_fraction": health["engine_busy_s"] / wall, "engine_jobs": health["engine_jobs"],
        "engine_ms_per_job": 1000 * health["engine_busy_s"] / max(1, health["engine_jobs"]),
        "engine_cpu_ms_per_job": 1000 * health["engine_cpu_s"] / max(1, health["engine_jobs"]),
        "rss_start_mib": rss[0] / 2**20, "rss_peak_mib": max(rss + [rss_end]) / 2**20, "rss_end_mib": rss_end / 2**20,
        "per_session": [{"sent": s.sent, "translations": s.translations, "finals": s.finals,
                         "p95_s": percentile(s.latencies, 95)} for s in logs],
    }


def calibrated_heads() -> str:
    """The en-de head set `alignheads score` exports on the shipped dev set (computed once, then reused)."""
    out = ROOT / "out" / "bench_serve" / "heads"
    path = out / headset_filename(EMBEDDED_MODEL_ID, "en", "de")
    if not path.is_file():
        subprocess.run([sys.executable, "-m", "alignheads", "score", "--model", "embedded", "--data",
                        str(ROOT / "data" / "gold" / "en-de.dev.tsv"), "--src", "en", "--tgt", "de", "--out", str(out)],
                       check=True, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    return str(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sessions", default="1,4,16", help="comma-separated session counts (one server run each)")
    ap.add_argument("--seconds", type=float, default=60.0, help="stream time each session replays")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server's model worker")
    ap.add_argument("--preset", default="server", help="a name in alignheads.speech.pipeline.PRESETS "
                    "(server, server_fast, paper)")
    ap.add_argument("--tail", type=int, default=2, help="heard words sent as the unstable tail")
    ap.add_argument("--drain", type=float, default=30.0, help="seconds to wait for the last answers")
    ap.add_argument("--heads", help="head-set JSON (default: calibrate on the shipped en-de dev set, cached)")
    ap.add_argument("--name", default="serve", help="results/<name>.json")
    args = ap.parse_args()
    heads = args.heads or calibrated_heads()
    rows = [run(int(n), args, heads) for n in args.sessions.split(",")]
    cols = ["sessions", "updates_sent", "translations", "coalesced", "p50_s", "p95_s", "max_s", "final_p95_s",
            "min_translations_per_session", "worst_session_p95_s", "errors", "sessions_left_waiting",
            "engine_ms_per_job", "engine_cpu_ms_per_job", "rss_start_mib", "rss_end_mib"]
    print_table([{k: (round(r[k], 3) if isinstance(r[k], float) else r[k]) for k in cols} for r in rows],
                f"alignheads serve, embedded model, {args.seconds:g} s real-time replay, {args.threads} thread(s), "
                f"preset {args.preset}")
    by_n = {r["sessions"]: r for r in rows}
    if 4 in by_n:
        p95 = by_n[4]["p95_s"]
        print(f"target 4 sessions p95 < 1.5 s: {p95:.2f} s ({'met' if p95 < 1.5 else 'MISSED'})")
    if 16 in by_n:
        starved = by_n[16]["min_translations_per_session"] == 0
        print(f"target no session starved at 16: {'MISSED' if starved else 'met'} "
              f"(fewest translations in a session: {by_n[16]['min_translations_per_session']})")
    print(f"errors: {sum(r['errors'] for r in rows)} (target 0); sessions still waiting after the drain: "
          f"{sum(r['sessions_left_waiting'] for r in rows)}")
    print(f"wrote {write_result(args.name, {'runs': rows, 'heads': heads})}")


if __name__ == "__main__":
    main()
