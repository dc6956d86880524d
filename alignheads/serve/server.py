"""`alignheads serve`: the AlignAtt MT server of protocol v1, the sidecar WhisperLiveKit's alignatt backend calls.

The client owns transcription and sends the full state of the open utterance (committed words with their
times, the unstable tail, the stream clock); the server answers with append-only translation.

Scheduling: one `Engine` holds the model, and every model call runs on its single worker thread, so calls
never interleave. Each session keeps at most one job in the worker's FIFO queue (its consumer awaits one
update before taking the next), which makes the queue round-robin over sessions: none starves. Per session a
mailbox of one holds the newest partial update (an older one waiting there is superseded: coalesced) and an
ordered queue holds finals, which are never dropped.

Time: word times and `clock_ms` are milliseconds on the client's stream clock. Committed words count as
accessible once the hold-back old (0 in the `server` preset: the client already committed them); tail words are shown in
the prompt but never accessible, so AlignAtt holds target tokens that lean on them. When the client later
commits those words the prompt is unchanged and the held tokens are released from the remembered draft
without a model call (the commit fast path; the translator's draft memo).
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from ..base.errors import AlignheadsError
from ..base.languages import get_language
from ..heads.headset import A4L_ANY_LANGUAGE, HeadSet, filename_direction, load_headset
from ..model.loader import LoadedModel
from ..simul.translator import NO_NEW_SOURCE, Forward, SourceWord, TranslatorConfig, drive
from ..speech.pipeline import configure_translator, resolve_heads
from ..speech.presets import PRESETS
from .config import ServeConfig
from .engine import Engine
from .protocol import Init, ProtocolError, Update, WireWord, error, init_ok, parse_message, show_value, translation

log = logging.getLogger("alignheads.serve.server")
LOCAL_ORIGIN = re.compile(r"https?://(localhost|127\.0\.0\.1|\[::1\])(:\d+)?")


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

FINAL_REPEATED = "final_repeated"  # stop reason of a final answered from the engine's recent finals
MAX_DRAFT = 64  # the largest draft a client may ask for (partial_max_new_tokens): one update must stay short


FAST_PATH_MEMO = 2  # drafts remembered per session for the commit fast path


def _ms_to_s(v: float) -> float:
    return v / 1000


# Client overrides (the authors' whitelist) that alignheads has: key -> (pipeline setting, check, expected, convert).
# The rest of their whitelist (target-unit hold-back, minimum emit units, LCP stability, history length) has no
# counterpart here and, like any unknown key, is ignored as the protocol says. The commit fast path is the
# translator's draft memo (`memo_size`), on unless the client turns it off.
OVERRIDES: dict[str, tuple[str, Callable[[Any], bool], str, Callable[[Any], Any]]] = {
    "translation_alignatt_inaccessible_ms": (
        "holdback", lambda v: _num(v) and 0 <= v <= 60_000, "a number of ms in [0, 60000]", _ms_to_s),
    "translation_alignatt_border_margin": (
        "border", lambda v: _int(v) and -16 <= v <= 16, "an integer in [-16, 16]", int),
    "partial_max_new_tokens": (
        "max_draft", lambda v: _int(v) and 1 <= v <= MAX_DRAFT, f"an integer in [1, {MAX_DRAFT}]", int),
    "translation_alignatt_commit_fast_path": (
        "memo_size", lambda v: isinstance(v, bool), "true or false", lambda v: FAST_PATH_MEMO if v else 0),
}


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def session_config(preset: str, overrides: dict[str, Any], top_k: int | None = None) -> TranslatorConfig:
    """The translator settings of a session: the preset, then the client's whitelisted overrides (others ignored);
    `top_k` heads of the head set (None: all)."""
    settings: dict[str, Any] = {}
    for key, value in overrides.items():
        if key in OVERRIDES:
            name, ok, expected, convert = OVERRIDES[key]
            if not ok(value):
                raise ProtocolError(f"init.overrides.{key} must be {expected}, got {show_value(value)}")
            settings[name] = convert(value)
    memo = settings.pop("memo_size", FAST_PATH_MEMO)
    return configure_translator(TranslatorConfig(memo_size=memo, top_k=top_k), preset, **settings)


# --- head sets ----------------------------------------------------------------------------------
def load_headsets(specs: list[str], lm: LoadedModel) -> dict[str, HeadSet]:
    """Head sets by direction ("en-de") from `--heads` values: files, or `published` (the registry's for the model)."""
    from ..heads.registry import PUBLISHED

    out: dict[str, HeadSet] = {}
    for spec in specs:
        if spec == "published":
            model_id = lm.facts.model_id
            found = [resolve_heads(spec, model_id, src, tgt) for m, src, tgt in PUBLISHED
                     if m.lower() == model_id.lower()]
            if not found:
                known = sorted({m for m, _, _ in PUBLISHED})
                raise AlignheadsError(f"no published head sets for {lm.facts.model_id!r} (published: "
                                      f"{', '.join(known)}); pass --heads FILE from `alignheads score`")
        else:
            hs = load_headset(spec)
            if {"?", A4L_ANY_LANGUAGE} & {hs.src_lang, hs.tgt_lang}:  # no direction in the file: take the name's
                direction = filename_direction(spec)
                if direction is None:
                    raise AlignheadsError(f"{spec}: the file names no direction (no src_lang/tgt_lang, and the name "
                                          "does not end in _<src>-<tgt>.json)")
                hs.src_lang, hs.tgt_lang = direction
            found = [hs]
        for hs in found:
            direction = f"{get_language(hs.src_lang).code}-{get_language(hs.tgt_lang).code}"
            if direction in out:
                raise AlignheadsError(f"two head sets for {direction} ({spec!r} and an earlier --heads)")
            out[direction] = hs
    return out


# --- one session ----------------------------------------------------------------------------------
class Session:
    """The protocol state of one connection; `handle` runs on the engine's worker."""

    def __init__(self, engine: Engine, init: Init, config: ServeConfig):
        try:
            direction = f"{get_language(init.source_lang).code}-{get_language(init.target_lang).code}"
        except AlignheadsError:
            direction = f"{init.source_lang}-{init.target_lang}"
        if direction not in engine.headsets:
            raise ProtocolError(f"direction {direction} is not served here (model {engine.lm.facts.model_id})",
                                code="unsupported_direction")
        name = init.preset or config.preset
        if name not in PRESETS:
            raise ProtocolError(f"unknown preset {name!r}; this server has {', '.join(PRESETS)}")
        self.engine, self.config, self.direction = engine, config, direction
        self.preset = name
        self.translator = engine.translator(direction, session_config(name, init.overrides, config.top_k))
        # The prompt layout must stay the one the heads were calibrated with: context and history are not added.
        self.ignored = [k for k in ("context_text", "history") if getattr(init, k)]
        self.utterance_id: int | None = None  # adopted from the first update (a reconnecting client keeps its ids)
        self.answered_seq: int | None = None
        self.emitted = ""  # committed_text of the open utterance
        self.buffer = ""
        self.covered: int | None = None
        self.warned_times = False
        if init.accepted_target_prefix.strip():
            self.translator.resume(init.accepted_target_prefix)
            self.emitted = self.translator.target

    def is_stale(self, upd: Update) -> bool:
        """An update for a closed utterance, or a partial no newer than one already answered."""
        if self.utterance_id is not None and upd.utterance_id < self.utterance_id:
            return True
        return not upd.is_final and self.answered_seq is not None and upd.seq <= self.answered_seq

    def handle(self, upd: Update) -> dict[str, Any] | None:
        """Translate one update; None when it is stale (ignored, no reply)."""
        return drive(self.handle_steps(upd))

    def handle_steps(self, upd: Update) -> Generator[Forward, Any, dict[str, Any] | None]:
        """`handle` as steps: the translator's forwards are yielded to the engine (see `alignheads.serve.engine`)."""
        if self.is_stale(upd):
            return None
        if self.utterance_id is None:
            self.utterance_id = upd.utterance_id
        if upd.utterance_id > self.utterance_id:
            raise ProtocolError(f"update.utterance_id {upd.utterance_id} skips ahead: utterance {self.utterance_id} "
                                "is open (close it with is_final: true first)", seq=upd.seq)
        limit = self.config.max_utterance_words
        forced = not upd.is_final and limit > 0 and len(upd.words) > limit
        final = upd.is_final or forced
        words, owner, clamped = source_words(upd.words, () if final else upd.tail, upd.clock_ms)
        if clamped and not self.warned_times:  # once per session: a client bug, not worth a line per update
            self.warned_times = True
            log.warning("update %s: %d word end times go backwards (or below 0) and were clamped to the previous "
                        "word's end; this client's times are not monotonic", upd.seq, clamped)
        key = (self.direction, repr(self.translator.config), tuple(w.text for w in words))
        cached = self.engine.finals.get(key) if final else None
        if cached is not None and cached.startswith(self.translator.target):  # it extends what this client saw
            text, reason = cached, FINAL_REPEATED
            self.engine.finals.move_to_end(key)
            self.engine.finals_reused += 1
        else:
            trace = (yield from self.translator.update_steps(words, upd.clock_ms / 1000, final=final)).decision_trace
            text, reason = self.translator.target, "commit_fast_path" if trace.memo_hit else trace.stop_reason
        self.answered_seq = upd.seq if self.answered_seq is None else max(self.answered_seq, upd.seq)
        if not text.startswith(self.emitted):
            raise RuntimeError(f"append-only output broken: {self.emitted!r} -> {text!r}")
        delta, self.emitted = text[len(self.emitted):], text
        if final:
            self.engine.finals[key] = text
            while len(self.engine.finals) > 64:
                self.engine.finals.popitem(last=False)
            out = translation(upd.seq, self.utterance_id, committed_text=text, committed_delta=delta,
                              stop_reason=f"{self.translator.policy}:{reason}", final=True, forced_final=forced)
            self.translator.reset()
            self.utterance_id += 1
            self.emitted, self.buffer, self.covered = "", "", None
            return out
        attended = [owner[t.position] for t in trace.tokens if t.status == "emitted" and t.position is not None]
        if attended:
            self.covered = max(self.covered or 0, max(attended) + 1)
        if trace.stop_reason != NO_NEW_SOURCE:
            self.buffer = trace.draft_text[trace.emitted_chars:].strip()
        return translation(upd.seq, self.utterance_id, committed_text=text, committed_delta=delta,
                           buffer_text=self.buffer, covered_source_units=self.covered,
                           stop_reason=f"{self.translator.policy}:{reason}")


def source_words(words: tuple[WireWord, ...], tail: tuple[WireWord, ...],
                 clock_ms: float) -> tuple[list[SourceWord], list[int], int]:
    """Translator words (one per whitespace-separated piece), per piece the index of the wire word it came from
    (committed words first, then tail words), and how many committed end times were clamped.

    A committed word without an end time is taken to end with its predecessor; one ending before its predecessor
    (or before 0) is clamped to it (end times must not decrease). Tail words end just after the clock: never
    accessible.
    """
    out: list[SourceWord] = []
    owner: list[int] = []
    end, clamped = 0.0, 0
    for i, w in enumerate(words):
        if w.end_ms is not None:
            clamped += w.end_ms < end
            end = max(end, w.end_ms)
        for piece in w.text.split():
            out.append(SourceWord(piece, end / 1000))
            owner.append(i)
    for j, w in enumerate(tail):
        for piece in w.text.split():
            out.append(SourceWord(piece, math.nextafter(clock_ms / 1000, math.inf)))
            owner.append(len(words) + j)
    return out, owner, clamped


class Mailbox:
    """Per-session inbox: the newest partial update (latest wins) and the finals in arrival order."""

    def __init__(self):
        self.partial: Update | None = None
        self.finals: deque[Update] = deque()
        self._event = asyncio.Event()
        self.closed = False

    def put(self, upd: Update) -> bool:
        """Queue `upd`; True when it superseded a waiting partial (coalesced)."""
        superseded = self.partial is not None and (not upd.is_final or self.partial.seq < upd.seq)
        if superseded:
            self.partial = None
        if upd.is_final:
            self.finals.append(upd)
        else:
            self.partial = upd
        self._event.set()
        return superseded

    def close(self) -> None:
        self.closed = True
        self._event.set()

    async def get(self) -> Update | None:
        """The next update (finals first), or None once closed."""
        while not self.closed:
            if self.finals:
                return self.finals.popleft()
            if self.partial is not None:
                upd, self.partial = self.partial, None
                return upd
            self._event.clear()
            await self._event.wait()
        return None


# --- the server -----------------------------------------------------------------------------------
@dataclass
class ServerStats:
    """Counters for /health and the benchmark."""

    started: float = field(default_factory=time.time)
    sessions_active: int = 0
    sessions_total: int = 0
    updates: int = 0  # update frames received
    translations: int = 0  # translation frames sent
    coalesced: int = 0  # partial updates superseded in a mailbox before the engine took them
    stale: int = 0  # updates ignored as stale
    errors: Counter = field(default_factory=Counter)  # error frames sent, by code


class MTServer:
    """The WebSocket server: one Engine, many sessions."""

    def __init__(self, engine: Engine, config: ServeConfig | None = None):
        self.engine, self.config = engine, config or ServeConfig()
        self.stats = ServerStats()
        self.url: str | None = None

    def health(self) -> dict[str, Any]:
        s = self.stats
        return {"status": "ok", "protocol_version": 1, "model": self.engine.lm.facts.model_id,
                "limits": self.config.limits(),
                "directions": self.engine.directions, "presets": sorted(PRESETS), "default_preset": self.config.preset,
                "sessions": s.sessions_active, "max_sessions": self.config.max_sessions,
                "sessions_total": s.sessions_total, "updates": s.updates, "translations": s.translations,
                "coalesced": s.coalesced, "stale": s.stale, "errors": dict(s.errors),
                "engine_jobs": self.engine.jobs, "engine_busy_s": round(self.engine.busy_s, 3),
                "engine_cpu_s": round(self.engine.cpu_s, 3), "finals_reused": self.engine.finals_reused,
                "uptime_s": round(time.time() - s.started, 1)}

    def _process_request(self, connection, request):
        path, _, query = request.path.partition("?")
        if path == "/health":
            response = connection.respond(HTTPStatus.OK, json.dumps(self.health()) + "\n")
            del response.headers["Content-Type"]
            response.headers["Content-Type"] = "application/json"
            return response
        if self.config.token is not None:
            given = parse_qs(query).get("token", [""])[0]
            if not hmac.compare_digest(given.encode(), self.config.token.encode()):
                return connection.respond(HTTPStatus.UNAUTHORIZED, "a token is required: connect with ?token=...\n")
        return None

    async def _send(self, ws, message: dict[str, Any]) -> None:
        if message["type"] == "error":
            self.stats.errors[message["code"]] += 1
        elif message["type"] == "translation":
            self.stats.translations += 1
        await ws.send(json.dumps(message, ensure_ascii=False))

    async def handler(self, ws) -> None:
        """One connection = one session."""
        from websockets.exceptions import ConnectionClosed

        if self.stats.sessions_active >= self.config.max_sessions:
            await self._send(ws, error("busy", f"the server is at capacity ({self.config.max_sessions} sessions)"))
            await ws.close(1013, "busy")
            return
        self.stats.sessions_active += 1
        self.stats.sessions_total += 1
        session: Session | None = None
        mailbox = Mailbox()
        consumer: asyncio.Task | None = None

        async def consume():
            while (upd := await mailbox.get()) is not None:
                reply = await self.engine.run(self._handle, session, upd)
                if reply is None:
                    self.stats.stale += 1
                    continue
                try:
                    await self._send(ws, reply)
                except ConnectionClosed:  # the client left; the handler cleans up
                    return

        try:
            while True:
                timeout = self.config.init_timeout_s if session is None else self.config.idle_timeout_s
                try:
                    raw = await asyncio.wait_for(ws.recv(), timeout)
                except TimeoutError:  # a slot held without init, or a session gone silent: free it
                    what = "no init" if session is None else "no frame"
                    await self._send(ws, error("timeout", f"{what} in {timeout:g} s: the connection is closed"))
                    await ws.close(1008, "timeout")
                    return
                try:
                    msg = parse_message(raw)
                    self.config.check(msg)
                    if isinstance(msg, Init):
                        if session is not None:
                            raise ProtocolError("the session is already initialised (one init per connection)")
                        try:
                            session = await self.engine.run(Session, self.engine, msg, self.config)
                        except ProtocolError as e:
                            e.kind = "init"
                            raise
                        except Exception as e:
                            log.exception("session set-up failed")
                            await self._send(ws, error("processing_failed", f"{type(e).__name__}: {e}"))
                            await ws.close(1011, "processing_failed")
                            return
                        extra = {"ignored": session.ignored} if session.ignored else {}
                        await self._send(ws, init_ok(session.direction, session.preset,
                                                     self.engine.lm.facts.model_id, **extra))
                        consumer = asyncio.create_task(consume())
                    elif session is None:
                        raise ProtocolError("update before init", seq=msg.seq)
                    else:
                        self.stats.updates += 1
                        self.stats.coalesced += mailbox.put(msg)
                except ProtocolError as e:  # a bad frame is answered; the session stays usable
                    supported = self.engine.directions if e.code == "unsupported_direction" else None
                    await self._send(ws, error(e.code, str(e), seq=e.seq, supported=supported))
                    if session is None and e.kind == "init":  # a failed init ends the connection
                        await ws.close(1008, e.code)
                        return
        except ConnectionClosed:
            pass
        finally:
            mailbox.close()
            if consumer is not None:
                consumer.cancel()  # a job already on the worker finishes there; its reply has nowhere to go
            self.stats.sessions_active -= 1

    @staticmethod
    def _handle(session: Session, upd: Update) -> Generator[Forward, Any, dict[str, Any] | None]:
        t0 = time.perf_counter()
        try:
            reply = yield from session.handle_steps(upd)
            log.debug("seq %s: %d words%s -> %s in %.2f s", upd.seq, len(upd.words), " (final)" if upd.is_final else "",
                      "stale" if reply is None else repr(reply.get("committed_delta", reply.get("code"))),
                      time.perf_counter() - t0)
            return reply
        except ProtocolError as e:
            return error(e.code, str(e), seq=upd.seq)
        except Exception as e:  # the update is dropped, the session stays usable
            if isinstance(e, AlignheadsError):
                log.warning("update %s failed: %s", upd.seq, e)
            else:
                log.exception("update %s failed", upd.seq)
            return error("processing_failed", f"{type(e).__name__}: {e}", seq=upd.seq)

    async def serve(self, ready: Callable[[str], None] | None = None, stop: asyncio.Event | None = None) -> None:
        """Listen until `stop` is set (or forever); `ready(url)` is called once the socket is bound."""
        from websockets.asyncio.server import serve

        cfg = self.config
        if cfg.token is None and not _loopback(cfg.host):
            log.warning("listening on %s without a token: anyone who can reach this address can use the server "
                        "(set --token, or keep it on 127.0.0.1 behind a proxy that authenticates)", cfg.host)
        # Browsers always send Origin: only pages from this machine (and --allow-origin) may connect; clients that
        # send none (WhisperLiveKit's Python client) are not browsers and are let in.
        origins = [None, LOCAL_ORIGIN, *cfg.allow_origins]
        async with serve(self.handler, cfg.host, cfg.port, max_size=cfg.max_frame_bytes,
                         process_request=self._process_request, origins=origins, close_timeout=1) as server:
            host, port = next(iter(server.sockets)).getsockname()[:2]
            self.url = f"ws://{host}:{port}"
            log.info("serving AlignAtt MT (%s) at %s", ", ".join(self.engine.directions), self.url)
            if ready is not None:
                ready(self.url)
            if stop is None:
                await server.serve_forever()
            else:
                await stop.wait()


class ServerThread:
    """An MTServer on a background thread with its own event loop (tests, notebooks); `with` gives its URL."""

    def __init__(self, server: MTServer):
        self.server = server
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="alignheads-serve", daemon=True)

    def _run(self):
        async def main():
            self._loop, self._stop = asyncio.get_running_loop(), asyncio.Event()
            await self.server.serve(ready=lambda _: self._ready.set(), stop=self._stop)

        try:
            asyncio.run(main())
        except BaseException as e:  # surfaced by start()
            self._error = e
            self._ready.set()

    def start(self, timeout: float = 30.0) -> str:
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            raise AlignheadsError(f"the server did not start: {self._error!r}")
        return self.server.url

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

