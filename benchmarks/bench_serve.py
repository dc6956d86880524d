"""`alignheads serve` under load: N concurrent sessions on loopback replaying the shipped talks in real time.

Each session replays the talks' transcripts (data/talks/talks.json sentence times, words spread by length;
`alignheads.speech.talks.talk_sentences`) back to back, starting at a different talk, for `--seconds` of stream
time. At every word's end it sends the full state of the open sentence: the words heard so far, the last `--tail`
of them as the unstable tail, and `is_final` on the sentence's last word. It does not wait for answers (a
pipelining client: the server coalesces). Latency of an update = time from sending it to the first translation
frame with a seq at least its own. The server runs in its own process on the embedded model (RSS measured there).

Runs (`--runs`, one fresh server each): `N` sessions on the batched scheduler; `N:serial`, the same with each
session's draft steps in a forward of its own (`serve --no-batch`); `N:attacker`, N sessions plus one client that
sends finals at the server's word bound (`max_update_words` words) back to back for the whole replay. The
attacker's effect is the ratio of the N sessions' p95 with and without it, in the same benchmark run.

    python benchmarks/bench_serve.py [--runs 1,4,8,16,4:serial,4:attacker] [--seconds 60] [--threads 1]

Targets (issues 20 and 23): 4 sessions p95 < 1.5 s, 8 sessions p95 < 3 s; at 16, 5 s after the replay ends no
session has an update still unanswered; with the attacker the 4 sessions' p95 <= 1.5x their p95 without it;
0 errors; RSS growth reported.
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
    waiting_after_5s: int = 0  # updates (a final or the newest partial) still unanswered 5 s after the replay ended
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
        await asyncio.sleep(max(0.0, start + seconds + 5.0 - time.perf_counter()))
        log.waiting_after_5s = len(pending)
        try:
            await asyncio.wait_for(receiver, drain_s)
        except TimeoutError:
            pass
        log.unanswered = len(pending)
    return log


async def run_attacker(url: str, start: float, seconds: float, words: int) -> SessionLog:
    """One client sending finals of `words` words back to back (each waits for its answer) until the replay ends."""
    from websockets.asyncio.client import connect

    log = SessionLog()
    pool = [w.text for name in TALKS for sent in talk_sentences(name) for w in sent.words]
    async with connect(url, open_timeout=60, max_size=None) as ws:
        await ws.send(json.dumps({"type": "init", "protocol_version": 1, "source_lang": "en", "target_lang": "de"}))
        await ws.recv()
        await asyncio.sleep(max(0.0, start - time.perf_counter()))
        seq = 0
        while time.perf_counter() < start + seconds:
            seq += 1
            text = [pool[(seq * 7919 + i) % len(pool)] for i in range(words)]  # a new text each time: no reuse
            clock = 400.0 * words
            await ws.send(json.dumps({"type": "update", "seq": seq, "utterance_id": seq - 1, "is_final": True,
                                      "clock_ms": clock, "words": [[w, 400.0 * i, 400.0 * i + 300]
                                                                   for i, w in enumerate(text)]}))
            at = time.perf_counter()
            log.sent += 1
            msg = json.loads(await ws.recv())
            if msg.get("type") == "error":
                log.errors.append(f"{msg.get('code')}: {msg.get('message')}")
            else:
                log.finals += 1
                log.final_latencies.append(time.perf_counter() - at)
    return log


async def run_clients(url: str, n: int, seconds: float, tail: int, drain_s: float,
                      attacker_words: int = 0) -> tuple[list[SessionLog], SessionLog | None]:
    t0 = time.perf_counter() + 1.0
    stagger = min(0.3, 3.0 / n)  # sessions do not send in lockstep
    tasks = [run_session(url, i, t0 + i * stagger, seconds, tail, drain_s) for i in range(n)]
    if attacker_words:
        tasks.append(run_attacker(url, t0, seconds, attacker_words))
    logs = await asyncio.gather(*tasks)
    return (logs[:n], logs[n]) if attacker_words else (logs, None)


def start_server(heads: str, n: int, args, log_path: Path, batch: bool) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "alignheads", "serve", "--model", "embedded", "--heads", heads, "--port", "0",
           "--threads", str(args.threads), "--max-sessions", str(n), "--preset", args.preset, "--dtype", args.dtype,
           *([] if batch else ["--no-batch"])]
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


def run(spec: str, args, heads: str) -> dict:
    """One server process, `spec` = N, N:serial or N:attacker (see the module docstring)."""
    n_text, _, arm = spec.partition(":")
    n, arm = int(n_text), arm or "batched"
    if arm not in ("batched", "serial", "attacker"):
        raise SystemExit(f"--runs: unknown arm {arm!r} in {spec!r} (N, N:serial, N:attacker)")
    out_dir = ROOT / "out" / "bench_serve"
    out_dir.mkdir(parents=True, exist_ok=True)
    proc, url = start_server(heads, n + (arm == "attacker"), args, out_dir / f"server_{n}_{arm}.log",
                             batch=arm != "serial")
    with urllib.request.urlopen(url.replace("ws://", "http://") + "/health", timeout=10) as r:
        bound = json.loads(r.read())["limits"]["max_update_words"]
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
        logs, attacker = asyncio.run(run_clients(url, n, args.seconds, args.tail, args.drain,
                                                 bound if arm == "attacker" else 0))
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
        "sessions": n, "arm": arm, "seconds": args.seconds, "preset": args.preset, "dtype": args.dtype,
        "updates_sent": sum(s.sent for s in logs), "translations": sum(s.translations for s in logs),
        "coalesced": health["coalesced"], "stale": health["stale"],
        "p50_s": percentile(lat, 50), "p95_s": percentile(lat, 95), "max_s": max(lat, default=None),
        "final_p50_s": percentile(fin, 50), "final_p95_s": percentile(fin, 95),
        "min_translations_per_session": min(s.translations for s in logs),
        "worst_session_p95_s": max((percentile(s.latencies, 95) or 0) for s in logs),
        "errors": len(errors), "error_samples": errors[:5],
        "sessions_waiting_after_5s": sum(s.waiting_after_5s > 0 for s in logs),
        "sessions_left_waiting": sum(s.unanswered > 0 for s in logs),  # updates still unanswered after --drain
        "attacker": None if attacker is None else {
            "words_per_final": bound, "finals_sent": attacker.sent, "finals_answered": attacker.finals,
            "final_p50_s": percentile(attacker.final_latencies, 50), "errors": attacker.errors[:5]},
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
    ap.add_argument("--runs", default="1,4,8,16,4:serial,4:attacker",
                    help="comma-separated runs, one server each: N sessions, N:serial (no batching), N:attacker")
    ap.add_argument("--seconds", type=float, default=60.0, help="stream time each session replays")
    ap.add_argument("--threads", type=int, default=1, help="torch threads of the server's model worker")
    ap.add_argument("--dtype", default="auto", help="the server's --dtype (default auto)")
    ap.add_argument("--preset", default="server", help="a name in alignheads.speech.presets.PRESETS "
                    "(server, server_fast, paper)")
    ap.add_argument("--tail", type=int, default=2, help="heard words sent as the unstable tail")
    ap.add_argument("--drain", type=float, default=30.0, help="seconds to wait for the last answers")
    ap.add_argument("--heads", help="head-set JSON (default: calibrate on the shipped en-de dev set, cached)")
    ap.add_argument("--name", default="serve", help="results/<name>.json")
    args = ap.parse_args()
    heads = args.heads or calibrated_heads()
    rows = [run(spec, args, heads) for spec in args.runs.split(",")]
    cols = ["sessions", "arm", "updates_sent", "translations", "coalesced", "p50_s", "p95_s", "final_p95_s",
            "min_translations_per_session", "errors", "sessions_waiting_after_5s", "engine_ms_per_job",
            "rss_start_mib", "rss_end_mib"]
    print_table([{k: (round(r[k], 3) if isinstance(r[k], float) else r[k]) for k in cols} for r in rows],
                f"alignheads serve, embedded model ({args.dtype}), {args.seconds:g} s real-time replay, "
                f"{args.threads} thread(s), preset {args.preset}")
    by = {(r["sessions"], r["arm"]): r for r in rows}
    for n, limit in ((4, 1.5), (8, 3.0)):
        if (n, "batched") in by:
            p95 = by[n, "batched"]["p95_s"]
            print(f"target {n} sessions p95 < {limit:g} s: {p95:.2f} s ({'met' if p95 < limit else 'MISSED'})")
    if (16, "batched") in by:
        waiting = by[16, "batched"]["sessions_waiting_after_5s"]
        print(f"target at 16, nothing waiting 5 s after the replay: {waiting} sessions waiting "
              f"({'met' if waiting == 0 else 'MISSED'})")
    for (n, arm), r in by.items():
        if arm == "attacker" and (n, "batched") in by:
            ratio = r["p95_s"] / by[n, "batched"]["p95_s"]
            r["p95_ratio_to_no_attacker"] = ratio
            print(f"target attacker: {n} sessions' p95 {ratio:.2f}x without it ({'met' if ratio <= 1.5 else 'MISSED'};"
                  f" {r['attacker']['finals_answered']} maximal finals answered)")
        if arm == "serial" and (n, "batched") in by:
            r["p95_ratio_to_batched"] = r["p95_s"] / by[n, "batched"]["p95_s"]
            print(f"batching at {n}: serial p95 {r['p95_s']:.2f} s vs batched {by[n, 'batched']['p95_s']:.2f} s")
    print(f"errors: {sum(r['errors'] for r in rows)} (target 0); sessions still waiting after the drain: "
          f"{sum(r['sessions_left_waiting'] for r in rows)}")
    print(f"wrote {write_result(args.name, {'runs': rows, 'heads': heads})}")


if __name__ == "__main__":
    main()
