"""`alignheads serve` (protocol v1) on a tiny random Gemma-3: every message and error code, coalescing, stale seqs,
finals, forced rollover, oversized frames, disconnects, reconnects, fairness, health, and a fuzzed parser."""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from alignheads.base.errors import AlignheadsError
from alignheads.heads.headset import HeadEntry, HeadSet
from alignheads.serve.engine import Engine
from alignheads.serve.protocol import Init, ProtocolError, Update, WireWord, parse_message
from alignheads.serve.server import MTServer, ServeConfig, ServerThread, load_headsets, session_config
from alignheads.serve.server import source_words as to_source_words
from alignheads.speech.pipeline import PRESETS

pytestmark = pytest.mark.usefixtures("one_thread")

WORDS = "In this talk we present a simple method for simultaneous speech translation .".split()


def tiny_headset(lm, tgt: str) -> HeadSet:
    f = lm.facts
    return HeadSet([HeadEntry(2, 1), HeadEntry(5, 0, query="emit"), HeadEntry(0, 3)], f.model_id, "en", tgt,
                   f.num_layers, f.num_heads)


@pytest.fixture(scope="module")
def heads_files(tiny3, tmp_path_factory):
    d = tmp_path_factory.mktemp("heads")
    return [str(tiny_headset(tiny3, t).save(d / f"heads_en-{t}.json")) for t in ("de", "zh")]


@pytest.fixture(scope="module")
def engine(tiny3, heads_files):
    eng = Engine(tiny3, load_headsets(heads_files, tiny3), threads=1)
    eng.warmup(session_config("server", {}))
    yield eng
    eng.close()


@pytest.fixture(scope="module")
def server(engine):
    """The default server; tests needing other limits start their own with `serving`."""
    srv = MTServer(engine, ServeConfig(port=0, max_utterance_words=40))
    with ServerThread(srv) as url:
        yield srv, url


@contextmanager
def serving(engine, **kw):
    srv = MTServer(engine, ServeConfig(port=0, **kw))
    with ServerThread(srv) as url:
        yield srv, url


@contextmanager
def engine_paused(engine):
    """Hold the engine's worker, so updates queue up (coalescing and ordering become deterministic)."""
    started, gate = threading.Event(), threading.Event()

    def hold():
        started.set()
        gate.wait()

    engine.submit(hold)
    assert started.wait(30), "the engine did not take the gate"
    try:
        yield
    finally:
        gate.set()


class Client:
    """A plain protocol client on websockets' sync API."""

    def __init__(self, url: str, **kw):
        self._connect = connect(url, **kw)
        self.ws = self._connect.__enter__()

    def send(self, msg) -> None:
        self.ws.send(msg if isinstance(msg, (str, bytes)) else json.dumps(msg))

    def recv(self, timeout: float = 30.0) -> dict:
        return json.loads(self.ws.recv(timeout=timeout))

    def init(self, tgt: str = "de", **kw) -> dict:
        self.send({"type": "init", "protocol_version": 1, "source_lang": "en", "target_lang": tgt, **kw})
        return self.recv()

    def update(self, seq: int, n: int, utt: int = 0, final: bool = False, tail: int = 0, words=WORDS) -> None:
        committed = [[w, 300.0 * i, 300.0 * i + 250] for i, w in enumerate(words[:n])]
        msg = {"type": "update", "seq": seq, "utterance_id": utt, "words": committed,
               "clock_ms": 300.0 * n, "is_final": final}
        if tail:
            msg["tail"] = {"words": [[w, None, None] for w in words[n:n + tail]]}
        self.send(msg)

    def close(self) -> None:
        self._connect.__exit__(None, None, None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def health(url: str) -> dict:
    with urllib.request.urlopen(url.replace("ws://", "http://") + "/health", timeout=10) as r:
        assert r.headers["Content-Type"] == "application/json"
        return json.loads(r.read())


def wait_for(cond, timeout: float = 20.0) -> None:
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def assert_session_usable(c: Client, seq: int, utt: int = 0) -> None:
    c.update(seq, 3, utt=utt)
    r = c.recv()
    assert r["type"] == "translation" and r["seq"] == seq


# --- init ---------------------------------------------------------------------------------------------
def test_init_ok_and_health(server):
    srv, url = server
    with Client(url) as c:
        r = c.init()
        assert r == {"type": "init_ok", "protocol_version": 1, "direction": "en-de", "preset": "server",
                     "model": "tiny-gemma3"}
        wait_for(lambda: health(url)["sessions"] >= 1)
    h = health(url)
    assert h["status"] == "ok" and h["directions"] == ["en-de", "en-zh"] and h["max_sessions"] == 4
    assert set(h["presets"]) == set(PRESETS)


def test_unsupported_direction_lists_supported_and_closes(server):
    _, url = server
    with Client(url) as c:
        r = c.init(tgt="it")
        assert r["type"] == "error" and r["code"] == "unsupported_direction"
        assert r["supported"] == ["en-de", "en-zh"]
        with pytest.raises(ConnectionClosed) as e:
            c.recv()
        assert e.value.rcvd.code == 1008


@pytest.mark.parametrize("init", [
    {"protocol_version": 2},
    {"protocol_version": True},
    {"source_lang": ""},
    {"preset": "no_such_preset"},
    {"overrides": {"partial_max_new_tokens": 10_000}},
    {"overrides": {"translation_alignatt_inaccessible_ms": "soon"}},
    {"history": [["only the source"]]},
])
def test_bad_init_is_bad_protocol_and_closes(server, init):
    _, url = server
    with Client(url) as c:
        c.send({"type": "init", "protocol_version": 1, "source_lang": "en", "target_lang": "de"} | init)
        r = c.recv()
        assert r["type"] == "error" and r["code"] == "bad_protocol", r
        with pytest.raises(ConnectionClosed):
            c.recv()


def test_presets_and_whitelisted_overrides(server):
    cfg = session_config("server", {
        "translation_alignatt_inaccessible_ms": 120, "translation_alignatt_border_margin": 0,
        "partial_max_new_tokens": 6, "translation_alignatt_commit_fast_path": False,
        "translation_alignatt_hold_back_target_units": 1,  # in the authors' whitelist, no counterpart: ignored
        "something_else": {"deep": [1, 2]},  # unknown: ignored
    }, top_k=2)
    assert (cfg.holdback, cfg.alignatt.border, cfg.alignatt.max_draft, cfg.memo_size, cfg.top_k) == (0.12, 0, 6, 0, 2)
    assert session_config("paper", {}).holdback == 0.25 and session_config("server", {}).memo_size == 2
    _, url = server
    with Client(url) as c:
        r = c.init(preset="server_fast", overrides={"translation_alignatt_min_emit_target_units": 0, "x": 1})
        assert r["type"] == "init_ok" and r["preset"] == "server_fast"
        assert_session_usable(c, 1)
    with pytest.raises(AlignheadsError, match="unknown preset"):
        ServeConfig(preset="fast")


# --- bad frames keep the session ----------------------------------------------------------------------
def test_malformed_frames_are_answered_and_the_session_kept(server):
    _, url = server
    with Client(url) as c:
        c.update(1, 2)  # before init
        r = c.recv()
        assert (r["code"], r["seq"]) == ("bad_protocol", 1) and "before init" in r["message"]
        assert c.init()["type"] == "init_ok"
        for frame in ["{not json", "[1, 2]", json.dumps({"type": "hello"}), json.dumps({"seq": 3}),
                      b"\x00binary", json.dumps({"type": "init", "protocol_version": 1, "source_lang": "en",
                                                 "target_lang": "de"})]:
            c.send(frame)
            r = c.recv()
            assert r["type"] == "error" and r["code"] == "bad_protocol", (frame, r)
        c.send({"type": "update", "seq": 7, "utterance_id": 0, "words": [["a", 0, 500]], "clock_ms": 100})
        r = c.recv()
        assert r["code"] == "bad_protocol" and r["seq"] == 7 and "clock_ms" in r["message"]
        assert_session_usable(c, 8)


def test_processing_failed_drops_the_update_and_keeps_the_session(engine):
    with serving(engine, max_utterance_words=0, max_update_words=1000) as (srv, url), Client(url) as c:
        c.init()
        long = ["Übersetzungsqualität"] * 800  # far beyond the tiny model's 2048-token context
        c.update(1, len(long), words=long)
        r = c.recv()
        assert (r["type"], r["code"], r["seq"]) == ("error", "processing_failed", 1)
        assert "context limit" in r["message"]
        assert_session_usable(c, 2)
        assert srv.stats.errors["processing_failed"] == 1


def test_busy_at_max_sessions(engine):
    with serving(engine, max_sessions=1) as (_, url), Client(url) as first:
        first.init()
        with Client(url) as second:
            r = second.recv()
            assert (r["type"], r["code"]) == ("error", "busy")
            with pytest.raises(ConnectionClosed) as e:
                second.recv()
            assert e.value.rcvd.code == 1013
        assert_session_usable(first, 1)


def test_oversized_frame_closes_with_1009(engine):
    with serving(engine, max_frame_bytes=2000) as (_, url), Client(url) as c:
        c.init()
        c.send({"type": "update", "seq": 1, "utterance_id": 0, "words": [["word", 0, 1]] * 200, "clock_ms": 1})
        with pytest.raises(ConnectionClosed) as e:
            c.recv()
        assert e.value.rcvd.code == 1009


# --- bounds, timeouts and who may connect ------------------------------------------------------------
@pytest.mark.parametrize("final", [False, True])
def test_an_update_over_the_word_bound_is_refused_before_the_tokenizer(engine, final):
    """Guards the bound on committed + tail words (partial and final): the frame is answered `bad_protocol`
    naming the limit and never reaches the engine (no job, so no tokenisation); the session stays usable."""
    with serving(engine, max_update_words=10) as (srv, url), Client(url) as c:
        c.init()
        jobs = engine.jobs
        c.update(1, 8 if not final else 12, final=final, tail=0 if final else 4, words=WORDS * 2)
        r = c.recv()
        assert (r["code"], r["seq"]) == ("bad_protocol", 1) and "max_update_words (10)" in r["message"]
        assert engine.jobs == jobs and srv.stats.updates == 0
        assert health(url)["limits"]["max_update_words"] == 10
        assert_session_usable(c, 2)


def test_an_accepted_prefix_over_the_bound_refuses_the_init(engine):
    """Guards the bound on init.accepted_target_prefix: refused before any tokenisation, the connection closed."""
    with serving(engine, max_prefix_words=5) as (_, url), Client(url) as c:
        jobs = engine.jobs
        r = c.init(accepted_target_prefix="ein zwei drei vier fünf sechs")
        assert r["code"] == "bad_protocol" and "max_prefix_words (5)" in r["message"] and engine.jobs == jobs
        with pytest.raises(ConnectionClosed):
            c.recv()


@pytest.mark.parametrize("frame", [
    {"type": "update", "seq": 10**30, "utterance_id": 0, "words": [], "clock_ms": 0},
    {"type": "update", "seq": 1, "utterance_id": 0, "words": [["\ud800", 0, 1]], "clock_ms": 1},
])
def test_huge_seq_and_lone_surrogates_are_bad_protocol(server, frame):
    """Guards two frames that once failed late: a seq past 2**53 (echoed once, then every update ignored) and a
    lone surrogate (a TypeError from the tokenizer)."""
    _, url = server
    with Client(url) as c:
        c.init()
        c.send(json.dumps(frame))  # json.dumps writes the lone surrogate as the escape \\ud800
        r = c.recv()
        assert r["code"] == "bad_protocol" and ("seq" in r["message"] or "surrogate" in r["message"])
        assert_session_usable(c, 2)


def test_a_connection_without_init_is_closed_and_its_slot_freed(engine):
    """Guards the init timeout: an idle socket cannot hold a session slot."""
    with serving(engine, max_sessions=1, init_timeout_s=0.3) as (srv, url), Client(url) as idle:
        r = idle.recv()
        assert (r["code"], "no init" in r["message"]) == ("timeout", True)
        with pytest.raises(ConnectionClosed) as e:
            idle.recv()
        assert e.value.rcvd.code == 1008
        wait_for(lambda: srv.stats.sessions_active == 0)
        with Client(url) as c:
            assert c.init()["type"] == "init_ok"


def test_a_silent_session_is_closed(engine):
    """Guards the idle timeout of an initialised session."""
    with serving(engine, idle_timeout_s=0.3) as (_, url), Client(url) as c:
        c.init()
        assert c.recv()["code"] == "timeout"


@pytest.mark.parametrize("origin, allowed", [
    (None, True), ("http://localhost:8000", True), ("http://127.0.0.1", True), ("https://app.example", True),
    ("https://evil.example", False), ("http://localhost.evil.example", False), ("null", False)])
def test_browser_origins_are_checked(engine, origin, allowed):
    """Guards against cross-site WebSocket hijacking: a page from another origin cannot connect; local pages,
    --allow-origin ones and clients that send no Origin (not browsers) can."""
    from websockets.exceptions import InvalidStatus

    with serving(engine, allow_origins=("https://app.example",)) as (_, url):
        if allowed:
            with Client(url, origin=origin) as c:
                assert c.init()["type"] == "init_ok"
        else:
            with pytest.raises(InvalidStatus) as e:
                Client(url, origin=origin)
            assert e.value.response.status_code == 403


def test_a_token_is_required_when_set(engine):
    """Guards the shared token: without it (or with a wrong one) 401; with it, a session."""
    from websockets.exceptions import InvalidStatus

    with serving(engine, token="s3cret") as (_, url):
        for bad in (url, url + "?token=guess", url + "?token="):
            with pytest.raises(InvalidStatus) as e:
                Client(bad)
            assert e.value.response.status_code == 401
        with Client(url + "?token=s3cret") as c:
            assert c.init()["type"] == "init_ok"


def test_health_answers_other_methods(server):
    """Guards /health for a body-less POST or HEAD (monitoring tools use them): an HTTP answer, not a drop."""
    _, url = server
    http = url.replace("ws://", "http://") + "/health"
    for method in ("POST", "HEAD"):
        with urllib.request.urlopen(urllib.request.Request(http, method=method), timeout=10) as r:
            assert r.status == 200


def test_backwards_word_times_are_clamped_with_one_warning(server, caplog):
    """Guards the warning for a client whose word end times go backwards (clamped, said once per session)."""
    _, url = server
    with caplog.at_level("WARNING", logger="alignheads.serve.server"), Client(url) as c:
        c.init()
        for seq in (1, 2):
            c.send({"type": "update", "seq": seq, "utterance_id": 0, "clock_ms": 2000,
                    "words": [["one", 0, 900], ["two", 900, 400], ["three", 1000, 1500]]})
            assert c.recv()["type"] == "translation"
    warnings = [r for r in caplog.records if "go backwards" in r.getMessage()]
    assert len(warnings) == 1 and "1 word end times" in warnings[0].getMessage()


# --- updates ------------------------------------------------------------------------------------------
def test_partials_are_append_only_then_final(server):
    _, url = server
    with Client(url) as c:
        c.init()
        committed, covered = "", None
        for n in range(1, len(WORDS)):
            c.update(n, n, tail=2)
            r = c.recv()
            assert r["type"] == "translation" and (r["seq"], r["utterance_id"], r["final"]) == (n, 0, False)
            assert r["committed_text"] == committed + r["committed_delta"]
            assert r["stop_reason"].startswith("alignatt:")
            if r["covered_source_units"] is not None:
                assert 1 <= r["covered_source_units"] <= n + 2 and r["covered_source_units"] >= (covered or 0)
                covered = r["covered_source_units"]
            committed = r["committed_text"]
        c.update(99, len(WORDS), final=True)
        r = c.recv()
        assert (r["seq"], r["utterance_id"], r["final"], r["forced_final"]) == (99, 0, True, False)
        assert r["committed_text"].startswith(committed) and r["committed_text"] == committed + r["committed_delta"]
        assert len(r["committed_text"]) > len(committed)  # the final pass translates to the end
        # the next utterance starts fresh; the closed one's id is now stale, a skipped id is an error
        c.update(100, 2, utt=1)
        r = c.recv()
        assert (r["seq"], r["utterance_id"], r["final"]) == (100, 1, False)
        assert r["committed_text"] == r["committed_delta"]
        c.update(101, 3, utt=0)  # stale utterance: ignored
        c.update(102, 3, utt=3)
        r = c.recv()
        assert (r["code"], r["seq"]) == ("bad_protocol", 102) and "skips ahead" in r["message"]


def test_a_partial_not_newer_than_an_answered_one_is_ignored(server):
    """A partial whose seq was already answered (re-sent after a hiccup) or is older gets no reply."""
    srv, url = server
    with Client(url) as c:
        c.init()
        c.update(10, 2)
        assert c.recv()["seq"] == 10
        before = srv.stats.stale
        c.update(10, 2)  # the same seq again
        wait_for(lambda: srv.stats.stale == before + 1)
        c.update(5, 3)  # lower than one already answered
        wait_for(lambda: srv.stats.stale == before + 2)
        c.update(11, 4)
        assert c.recv()["seq"] == 11


def test_partials_coalesce_latest_wins_and_finals_stay_in_order(server, engine):
    srv, url = server
    with Client(url) as c:
        c.init()
        before = srv.stats.updates
        with engine_paused(engine):
            c.update(1, 2)
            wait_for(lambda: engine.queued == 1)  # the session's consumer took seq 1 and waits for the worker
            c.update(2, 3)
            c.update(3, 4)
            c.update(4, 5, final=True)  # supersedes the waiting partial (seq 3)
            c.update(5, 1, utt=1)
            c.update(6, 2, utt=1, final=True)
            c.update(7, 1, utt=2)
            c.update(8, 2, utt=2)
            wait_for(lambda: srv.stats.updates == before + 8)
        replies = [c.recv() for _ in range(4)]
        # 2 coalesced into 3, which the final (4) superseded; 5 superseded by the final 6; 7 coalesced into 8
        assert [(r["seq"], r["utterance_id"], r["final"]) for r in replies] == [
            (1, 0, False), (4, 0, True), (6, 1, True), (8, 2, False)]
        with pytest.raises(TimeoutError):
            c.recv(timeout=0.5)
    assert health(url)["coalesced"] >= 3


def test_a_repeated_final_is_answered_from_the_recent_finals(server):
    """A client that timed out and reconnects sends the same final again: it is not translated twice."""
    srv, url = server
    replies = []
    for _ in range(2):
        with Client(url) as c:
            c.init()
            c.update(1, 6, utt=4, final=True, words=WORDS[3:])
            replies.append(c.recv())
    assert replies[0]["committed_text"] == replies[1]["committed_text"] != ""
    assert replies[0]["stop_reason"] == "alignatt:final" and replies[1]["stop_reason"] == "alignatt:final_repeated"
    assert health(url)["finals_reused"] >= 1


def test_a_recent_final_is_reused_only_when_it_continues_the_clients_prefix(server):
    """A reconnecting client that was shown another beginning gets its own prefix continued, not the cached final."""
    srv, url = server
    with Client(url) as c:
        c.init()
        c.update(1, 6, utt=0, final=True, words=WORDS[2:])
        cached = c.recv()["committed_text"]
    with Client(url) as c:
        c.init(accepted_target_prefix="Guten Morgen")
        c.update(1, 6, utt=0, final=True, words=WORDS[2:])
        r = c.recv()
    assert cached and not cached.startswith("Guten Morgen")
    assert r["committed_text"].startswith("Guten Morgen") and r["stop_reason"] == "alignatt:final"


def test_append_only_guard_refuses_output_that_rewrites_what_was_sent(engine):
    """If the translation ever stopped extending what the session already sent, the update fails loudly instead of
    sending a contradiction."""
    from alignheads.serve.server import Session

    init = parse_message(json.dumps({"type": "init", "protocol_version": 1, "source_lang": "en", "target_lang": "de"}))
    session = engine.submit(Session, engine, init, ServeConfig()).result()
    upd = parse_message(json.dumps({"type": "update", "seq": 1, "utterance_id": 0, "clock_ms": 3000.0,
                                    "words": [[w, 300.0 * i, 300.0 * i + 250] for i, w in enumerate(WORDS[:8])]}))
    session.emitted = "Etwas ganz anderes"  # what a bug would have sent before
    with pytest.raises(RuntimeError, match="append-only"):
        engine.submit(session.handle, upd).result()


def test_forced_final_rollover(engine):
    with serving(engine, max_utterance_words=4) as (_, url), Client(url) as c:
        c.init()
        c.update(1, 4, tail=3)
        assert c.recv()["final"] is False
        c.update(2, 5, tail=3)
        r = c.recv()
        assert (r["final"], r["forced_final"], r["utterance_id"]) == (True, True, 0)
        assert r["committed_text"]
        c.update(3, 2, utt=1)
        assert (r := c.recv())["utterance_id"] == 1 and r["final"] is False


def test_sessions_take_turns(server, engine):
    """A session flooding updates cannot starve another: b's one update is answered before a's follow-up (its 18
    later updates, coalesced). a's and b's first jobs may share forwards and finish in either order."""
    srv, url = server
    with Client(url) as a, Client(url) as b:
        a.init()
        b.init()
        got: dict[str, list] = {"a": [], "b": []}

        def reader(name, c, n):
            for _ in range(n):
                r = c.recv()
                got[name].append((time.monotonic(), r["seq"]))

        before = srv.stats.updates
        threads = [threading.Thread(target=reader, args=("a", a, 2)), threading.Thread(target=reader, args=("b", b, 1))]
        with engine_paused(engine):
            a.update(1, 2)
            wait_for(lambda: engine.queued == 1)  # a's job waits behind the gate
            b.update(1, 3)
            wait_for(lambda: engine.queued == 2)  # then b's
            for seq in range(2, 20):
                a.update(seq, 2 + seq % 9)
            wait_for(lambda: srv.stats.updates == before + 20)
            for t in threads:  # waiting in recv before any answer exists: arrival times, not reading order
                t.start()
        for t in threads:
            t.join(30)
        assert [s for _, s in got["a"]] == [1, 19] and [s for _, s in got["b"]] == [1]
        assert got["b"][0][0] < got["a"][1][0]


# --- disconnects and reconnects -------------------------------------------------------------------------
def test_client_disconnecting_mid_utterance(server, engine):
    srv, url = server
    wait_for(lambda: srv.stats.sessions_active == 0)
    c = Client(url)
    c.init()
    c.update(1, 3)
    c.recv()
    with engine_paused(engine):
        c.update(2, 4)
        c.update(3, 5)
        c.ws.close()  # leaves with updates still queued
    wait_for(lambda: srv.stats.sessions_active == 0)
    with Client(url) as other:
        other.init()
        assert_session_usable(other, 1)


def test_reconnect_continues_from_the_accepted_prefix(server):
    srv, url = server
    with Client(url) as c:
        c.init()
        shown = ""
        for n in range(1, 8):
            c.update(n, n)
            shown = c.recv()["committed_text"]
    assert shown, "the tiny model emitted nothing to resume from"
    with Client(url) as c:  # the client keeps its utterance id and seq counter across the reconnect
        r = c.init(history=[["Hello.", "Hallo."]], accepted_target_prefix=shown, context_text="a talk")
        assert r["type"] == "init_ok" and r["ignored"] == ["context_text", "history"]
        c.update(20, 9, utt=5)
        r = c.recv()
        assert r["utterance_id"] == 5 and r["committed_text"].startswith(shown)
        assert r["committed_text"] == shown + r["committed_delta"]
        c.update(21, 10, utt=5, final=True)
        r = c.recv()
        assert r["final"] and r["committed_text"].startswith(shown)


# --- pure parts ---------------------------------------------------------------------------------------
def test_source_words_times_and_owners():
    words = (WireWord("Hello", 0, 400), WireWord("new world", None, None), WireWord("again", 900, 300))
    out, owner, clamped = to_source_words(words, (WireWord("tail"),), 1000.0)
    assert [w.text for w in out] == ["Hello", "new", "world", "again", "tail"]
    assert [w.end_time for w in out[:4]] == [0.4, 0.4, 0.4, 0.4]  # missing / decreasing ends take the previous
    assert 1.0 < out[4].end_time < 1.0001  # just after the clock: never accessible
    assert owner == [0, 1, 1, 2, 3] and clamped == 1


def test_load_headsets_directions(tiny3, heads_files, tmp_path):
    hs = load_headsets(heads_files, tiny3)
    assert sorted(hs) == ["en-de", "en-zh"]
    with pytest.raises(AlignheadsError, match="two head sets for en-de"):
        load_headsets([heads_files[0], heads_files[0]], tiny3)
    with pytest.raises(AlignheadsError, match="no published head sets"):
        load_headsets(["published"], tiny3)
    minimal = tmp_path / "translation_heads_tiny-gemma3_en-it.json"  # the authors' format: direction in the name
    minimal.write_text(json.dumps({"token_alignment_heads": [{"layer": 1, "head": 0, "ts": 0.5}]}))
    with pytest.warns(UserWarning, match="minimal"):
        assert sorted(load_headsets([str(minimal)], tiny3)) == ["en-it"]


def test_parse_message_accepts_the_specs_examples():
    init = parse_message(json.dumps({
        "type": "init", "protocol_version": 1, "source_lang": "en", "target_lang": "de",
        "preset": "gemma_low_latency", "overrides": {"translation_alignatt_inaccessible_ms": 0},
        "context_text": "Talk title", "history": [["Previous sentence.", "Vorheriger Satz."]],
        "accepted_target_prefix": ""}))
    assert init == Init("en", "de", "gemma_low_latency", {"translation_alignatt_inaccessible_ms": 0}, "Talk title",
                        (("Previous sentence.", "Vorheriger Satz."),), "")
    upd = parse_message(json.dumps({
        "type": "update", "seq": 42, "utterance_id": 3, "words": [["Hello", 120.0, 400.0], ["world,", 520.0, 900.0]],
        "tail": {"words": [["how", None, None], ["are", None, None]]}, "clock_ms": 2350.0, "is_final": False}))
    assert upd == Update(42, 3, (WireWord("Hello", 120, 400), WireWord("world,", 520, 900)), 2350.0,
                         (WireWord("how"), WireWord("are")), False)


@pytest.mark.parametrize("frame, where", [
    ('{"type": "update", "seq": 1, "utterance_id": 0, "words": [["a", NaN, 1]], "clock_ms": 5}', "start_ms"),
    ('{"type": "update", "seq": 1, "utterance_id": 0, "words": [["  ", 0, 1]], "clock_ms": 5}', "words[0][0]"),
    ('{"type": "update", "seq": 1, "utterance_id": -1, "words": [], "clock_ms": 5}', "utterance_id"),
    ('{"type": "update", "seq": 1, "utterance_id": 0, "words": [], "clock_ms": 1e999}', "clock_ms"),
    ('{"type": "update", "seq": 1, "utterance_id": 0, "words": [], "clock_ms": 5, "is_final": 1}', "is_final"),
    ('{"type": "update", "seq": 1, "utterance_id": 0, "words": [], "clock_ms": 5, "tail": [1]}', "tail"),
    ('{"type": "update", "seq": "1", "utterance_id": 0, "words": [], "clock_ms": 5}', "seq"),
    ('{"type": "update", "seq": 1, "utterance_id": 0, "words": [], "clock_ms": ' + "9" * 400 + "}", "clock_ms"),
    ("[" * 100_000 + "]" * 100_000, "invalid JSON"),
])
def test_parse_message_names_the_field(frame, where):
    with pytest.raises(ProtocolError, match=where.replace("[", r"\[")) as e:
        parse_message(frame)
    assert e.value.code == "bad_protocol"


# No subnormals: a native library loaded earlier in the session (compiled with fast-math) sets
# flush-to-zero, and Hypothesis then refuses to draw them.
_floats = st.floats(allow_subnormal=False)
_json = st.recursive(st.none() | st.booleans() | st.integers() | _floats | st.text(max_size=8),
                     lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=6), kids, max_size=4),
                     max_leaves=12)
_word = st.lists(st.one_of(st.text(max_size=6), st.none(), _floats, st.integers()), max_size=4)
_message = st.fixed_dictionaries({
    "type": st.sampled_from(["init", "update", "other"]) | _json,
    "protocol_version": st.sampled_from([1, 1.0, 2, True, None, "1"]),
    "source_lang": st.text(max_size=4) | _json, "target_lang": st.sampled_from(["de", ""]) | _json,
    "seq": st.integers() | _json, "utterance_id": st.integers(-2, 3) | _json,
    "words": st.lists(_word, max_size=4) | _json, "clock_ms": _floats | st.integers() | _json,
    "tail": st.fixed_dictionaries({"words": st.lists(_word, max_size=3)}) | _json,
    "is_final": st.booleans() | _json, "overrides": _json, "history": st.lists(st.lists(st.text(max_size=4))) | _json,
})


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_message.map(json.dumps), _json.map(json.dumps), st.text(max_size=40), st.binary(max_size=20)))
def test_fuzzed_frames_parse_or_fail_clearly(frame):
    try:
        msg = parse_message(frame)
    except ProtocolError as e:
        assert e.code == "bad_protocol" and str(e)
    else:
        assert isinstance(msg, (Init, Update))


@pytest.mark.slow
def test_serve_cli(heads_files, tmp_path):
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "alignheads", "serve", "--model", "tiny-gemma3", "--threads", "1"]
    bad = subprocess.run([*cmd, "--heads", str(tmp_path / "missing.json")], capture_output=True, text=True)
    assert bad.returncode == 2 and "no such head-set file" in bad.stderr and "Traceback" not in bad.stderr
    proc = subprocess.Popen([*cmd, "--heads", heads_files[0], "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        line = next(ln for ln in proc.stdout if ln.startswith("listening on "))
        url = line.split()[2]
        assert url.startswith("ws://127.0.0.1:") and health(url)["directions"] == ["en-de"]
        port = url.rsplit(":", 1)[1]
        taken = subprocess.run([*cmd, "--heads", heads_files[0], "--port", port], capture_output=True, text=True)
        assert taken.returncode == 2 and f"cannot listen on 127.0.0.1:{port}" in taken.stderr
    finally:
        proc.terminate()
        proc.wait(30)


def test_a_maximal_frame_does_not_stall_another_session(engine):
    """Guards the stall found in round 3: one client's final at the word bound is worked on a step at a time, so a
    short partial sent after it by another client is answered before it."""
    long_words = (WORDS * 40)[:400]
    with serving(engine, max_update_words=400) as (_, url), Client(url) as attacker, Client(url) as other:
        attacker.init(), other.init()
        order = []

        def read(c, name):
            c.recv(timeout=120)
            order.append(name)

        attacker.update(1, 400, final=True, words=long_words)
        wait_for(lambda: len(engine._active) == 1)  # the maximal final is being worked on
        threads = [threading.Thread(target=read, args=(attacker, "maximal"))]
        threads[0].start()
        other.update(1, 3)
        read(other, "short")
        threads[0].join(120)
        assert order == ["short", "maximal"]


@pytest.mark.slow
def test_sigterm_closes_the_sessions_and_ends_the_server(heads_files):
    """Guards shutdown: SIGTERM with a session open and its updates in flight ends the process promptly (clients
    closed with 1001), not when the engine's work is done."""
    import signal
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "alignheads", "serve", "--model", "tiny-gemma3", "--threads", "1", "--heads",
           heads_files[0], "--port", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = next(ln for ln in proc.stdout if ln.startswith("listening on ")).split()[2]
        with Client(url) as c:
            c.init()
            for seq in range(1, 30):
                c.update(seq, 1 + seq % len(WORDS))
            proc.send_signal(signal.SIGTERM)
            with pytest.raises(ConnectionClosed) as e:
                while True:
                    c.recv()
            assert e.value.rcvd is not None and e.value.rcvd.code == 1001
        assert proc.wait(20) in (0, 143)
    finally:
        proc.kill()
        proc.wait()


# --- the batched scheduler ----------------------------------------------------------------------
def _session(engine, tgt="de", **config):
    from alignheads.serve.server import Session

    init = parse_message(json.dumps({"type": "init", "protocol_version": 1, "source_lang": "en", "target_lang": tgt}))
    return engine.submit(Session, engine, init, ServeConfig(**config)).result()


def _update(seq, n, final=False, utt=0, words=WORDS):
    return parse_message(json.dumps({"type": "update", "seq": seq, "utterance_id": utt, "clock_ms": 300.0 * n,
                                     "is_final": final,
                                     "words": [[w, 300.0 * i, 300.0 * i + 250] for i, w in enumerate(words[:n])]}))


def test_sessions_drafting_together_get_what_they_get_alone(tiny3, heads_files):
    """Three sessions (two directions, different prompt lengths) whose updates run at the same time share their
    draft steps and their prompt chunks in batched forwards, and each gets exactly the text it gets when served
    alone."""
    from alignheads.serve.server import MTServer

    plan = [("de", [(1, 3), (2, 6), (3, 9, True)]), ("zh", [(1, 2), (2, 5), (3, 7, True)]),
            ("de", [(1, 8), (2, 11), (3, 12, True)])]

    def serve(batch: bool) -> tuple[list, int]:
        eng = Engine(tiny3, load_headsets(heads_files, tiny3), threads=1, batch=batch)
        sessions = [_session(eng, tgt) for tgt, _ in plan]
        texts = [[] for _ in plan]
        for step in range(3):
            futures = [eng.submit(MTServer._handle, s, _update(*updates[step])) for s, (_, updates) in
                       zip(sessions, plan, strict=True)]
            for i, f in enumerate(futures):
                texts[i].append(f.result(timeout=60)["committed_text"])
        rows = (eng.batched_rows, eng.batched_chunks)
        eng.close()
        return texts, rows

    (together, rows), (alone, none) = serve(True), serve(False)
    assert rows[0] > rows[1] > 0 and none == (0, 0)
    assert together == alone


def test_a_long_final_does_not_hold_up_another_session(engine):
    """A 256-token final advances a step at a time beside the others: a short partial submitted after it is
    answered first."""
    from alignheads.serve.server import MTServer

    long_words = (WORDS * 6)[:60]
    slow, quick = _session(engine), _session(engine)
    slow.translator.config = replace(slow.translator.config, final_max_tokens=256, final_min_ratio=3.0)
    done = []
    a = engine.submit(MTServer._handle, slow, _update(1, 60, final=True, words=long_words))
    b = engine.submit(MTServer._handle, quick, _update(1, 3))
    a.add_done_callback(lambda _: done.append("long"))
    b.add_done_callback(lambda _: done.append("short"))
    a.result(timeout=120), b.result(timeout=120)
    assert done == ["short", "long"]


def test_closing_the_engine_abandons_a_running_job_within_two_seconds(tiny3, heads_files):
    """SIGTERM while the engine drafts: the scheduler stops within a tick, the job is abandoned (cancelled)."""
    from alignheads.model.prompts import render

    eng = Engine(tiny3, load_headsets(heads_files, tiny3), threads=1)
    tr = _session(eng).translator
    tr.context_limit = 100_000
    prompt = render(tr.layout, tiny3.tokenizer, WORDS)
    job = eng.submit(tr._generate, prompt, 5000, False, "max_draft", (), 10**6)  # never stops by itself
    time.sleep(1.0)
    assert not job.done() and eng.forwards > 10
    eng.close(timeout=2.0)
    assert not eng._thread.is_alive() and job.cancelled()


def test_a_heavy_job_yields_to_light_ones_and_still_advances(tiny3, heads_files):
    """Guards the attacker case of issue 23: a job that has had `heavy_s` of the model gets no forward while a
    lighter job waits (short of `max_wait_s`), and keeps advancing once none waits."""
    from alignheads.model.prompts import render

    # heavy_s far above what the light update costs even on a loaded machine (a few forwards of the tiny model)
    eng = Engine(tiny3, load_headsets(heads_files, tiny3), threads=1, heavy_s=2.0, max_wait_s=60.0)
    forwards: list[float] = []

    def counted(steps):
        reply = None
        while True:
            try:
                request = steps.send(reply)
            except StopIteration as done:
                return done.value
            reply = yield request
            forwards.append(time.perf_counter())

    try:
        tr, light = _session(eng).translator, _session(eng)
        tr.context_limit = 100_000
        prompt = render(tr.layout, tiny3.tokenizer, WORDS)
        heavy = eng.submit(lambda: counted(tr._generate(prompt, 5000, False, "max_draft", (), 10**6)))
        wait_for(lambda: eng._active and eng._active[0].service_s >= 2.0, timeout=60)
        before = len(forwards)
        eng.submit(MTServer._handle, light, _update(1, 3)).result(timeout=60)
        assert len(forwards) - before <= 1  # at most the forward in flight when the light job came
        after = len(forwards)
        wait_for(lambda: len(forwards) > after + 5)
        assert not heavy.done()
    finally:
        eng.close()
