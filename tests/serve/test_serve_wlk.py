"""WhisperLiveKit 0.2.26's own AlignAtt client (`whisperlivekit.translation_alignatt`, not a re-implementation)
against `alignheads serve`, on a shipped talk's transcript played as timed ASR commits with a hypothesis tail."""

from __future__ import annotations

import os
import time

import pytest

from alignheads.heads.headset import HeadEntry, HeadSet
from alignheads.serve.engine import Engine
from alignheads.serve.server import MTServer, ServeConfig, ServerThread, session_config
from alignheads.simul.translator import SimultaneousTranslator, SourceWord
from alignheads.speech.asr import Word
from alignheads.speech.talks import TALKS_DIR, talk_sentences

wlk = pytest.importorskip(
    "whisperlivekit.translation_alignatt",
    reason="whisperlivekit is not installed: `pip install --no-deps whisperlivekit==0.2.26` and the "
    "[whisperlivekit] extra (`make venv` installs both)")
from whisperlivekit.timed_objects import ASRToken, HypothesisTail  # noqa: E402

# Real sockets, server threads and the client's own timeouts: integration tests (slow tier), about 15 s together.
pytestmark = [pytest.mark.usefixtures("one_thread"), pytest.mark.slow]
TAIL = 2  # words of unstable ASR tail sent with each commit (the client's "balanced" latency sends a tail)


def sentences(n: int | None = None):
    """talk04's sentences, word times rounded to 1/64 s so that ms <-> s conversions are exact."""
    q = [[Word(w.text, round(w.start * 64) / 64, round(w.end * 64) / 64) for w in s.words]
         for s in talk_sentences("talk04")]
    return q[:n]


def play(client, sents, stop_after: int | None = None, on_stop=None):
    """Feed the words one commit at a time (plus the next TAIL words as tail), calling `process()` after each
    like WhisperLiveKit's translation task; return per word (final segment text or None, buffer text)."""
    flat = [w for s in sents for w in s]
    events = []
    for i, w in enumerate(flat):
        items = [ASRToken(start=w.start, end=w.end, text=" " + w.text)]
        nxt = flat[i + 1:i + 1 + TAIL]
        if nxt:
            items.append(HypothesisTail(start=nxt[0].start, end=nxt[-1].end, text=" ".join(x.text for x in nxt)))
        client.insert_tokens(items)
        segment, buffer = client.process()
        events.append((segment.text if segment is not None else None, buffer.text))
        if i == stop_after:
            on_stop()
    return events


def check_append_only(events) -> list[tuple[str, str]]:
    """Buffers only grow within an utterance; each final starts with the utterance's last streamed partial.
    Returns (last partial, final) per utterance."""
    out, shown = [], ""
    for final, buffer in events:
        if final is not None:
            assert final.startswith(shown), (shown, final)
            out.append((shown, final))
            shown = ""
        assert buffer.startswith(shown), (shown, buffer)
        shown = buffer
    return out


def reference_finals(lm, heads, sents, preset="server") -> list[str]:
    """What the library's translator gives for the same sequence of updates the client sends."""
    tr = SimultaneousTranslator(lm, heads, "en", "de", "alignatt", session_config(preset, {}))
    flat = [w for s in sents for w in s]
    finals, i, clock = [], 0, 0.0
    for s in sents:
        for k in range(1, len(s) + 1):
            nxt = flat[i + 1:i + 1 + TAIL]
            clock = max([clock, flat[i].end] + [x.end for x in nxt])
            words = [SourceWord(w.text, w.end) for w in s[:k]]
            i += 1
            if k < len(s):
                tr.update(words + [SourceWord(x.text, clock + 1) for x in nxt], clock)  # tail: not yet heard
            else:
                tr.update(words, clock, final=True)
                finals.append(tr.target)
                tr.reset()
    return finals


@pytest.fixture(scope="module")
def tiny_engine(tiny3):
    f = tiny3.facts
    hs = HeadSet([HeadEntry(2, 1), HeadEntry(5, 0, query="emit"), HeadEntry(0, 3)], f.model_id, "en", "de",
                 f.num_layers, f.num_heads)
    eng = Engine(tiny3, {"en-de": hs}, threads=1)
    yield eng
    eng.close()


def test_whisperlivekit_client_streams_a_talk(tiny_engine, tiny3):
    sents = sentences(3)
    srv = MTServer(tiny_engine, ServeConfig(port=0, preset="server_fast"))
    with ServerThread(srv) as url:
        client = wlk.AlignAttRemoteEngine(url=url, source_language="en", preset=None,
                                          latency="balanced").new_session("de")
        assert client.wants_hypothesis_tail
        events = play(client, sents)
    pairs = check_append_only(events)
    finals = [f for f, _ in events if f is not None]
    assert len(finals) == len(sents)  # one validated segment per punctuated sentence, in order
    assert finals == reference_finals(tiny3, tiny_engine.headsets["en-de"], sents, "server_fast")
    assert any(p for p, _ in pairs), "no partial translation was streamed before a final"
    assert srv.stats.errors == {} and srv.stats.sessions_total == 1
    assert srv.stats.translations == len([w for s in sents for w in s])  # one answer per update, nothing dropped


def test_whisperlivekit_client_reconnects_and_resumes(tiny_engine):
    """The server goes away mid-utterance; the client reconnects (history + accepted_target_prefix) to a new
    server on the same port and the utterance continues append-only."""
    sents = sentences(3)
    servers = [MTServer(tiny_engine, ServeConfig(port=0))]
    threads = [ServerThread(servers[0])]
    url = threads[0].start()
    port = int(url.rsplit(":", 1)[1])

    def restart():
        threads[0].stop()
        servers.append(MTServer(tiny_engine, ServeConfig(port=port)))
        threads.append(ServerThread(servers[1]))
        threads[1].start()

    client = wlk.AlignAttRemoteEngine(url=url, source_language="en", preset=None,
                                      latency="balanced").new_session("de")
    cut = len(sents[0]) + 6  # inside the second sentence
    try:
        events = play(client, sents[:2], stop_after=cut, on_stop=restart)
        time.sleep(1.1)  # the client's first reconnect back-off
        events += play(client, [sents[2]])
    finally:
        threads[-1].stop()
    check_append_only(events)
    assert sum(f is not None for f, _ in events) == 3
    shown_at_cut = events[cut][1]
    resumed_final = next(f for f, _ in events[cut + 1:] if f is not None)
    assert shown_at_cut and resumed_final.startswith(shown_at_cut)
    assert servers[1].stats.sessions_total == 1 and servers[1].stats.errors == {}


def test_whisperlivekit_client_gets_a_final_slower_than_its_timeout(tiny_engine, monkeypatch):
    """The client gives a call a fixed time (15 s), then reconnects and resends the pending final. A final that
    takes longer than that must still arrive: the retry is answered from the engine's recent finals."""
    monkeypatch.setattr(wlk, "_CALL_TIMEOUT_SECONDS", 1.0)  # a 1 s budget instead of 15 s ...
    update_steps = SimultaneousTranslator.update_steps

    def slow_final(self, words, now, final=False):  # ... and every final pass takes 1.5 s longer
        if final:
            time.sleep(1.5)
        return (yield from update_steps(self, words, now, final))

    monkeypatch.setattr(SimultaneousTranslator, "update_steps", slow_final)
    sents = sentences(5)[4:]  # a sentence no other test closes: its final is not among the engine's recent ones
    srv = MTServer(tiny_engine, ServeConfig(port=0))
    with ServerThread(srv) as url:
        client = wlk.AlignAttRemoteEngine(url=url, source_language="en", preset=None,
                                          latency="balanced").new_session("de")
        events = play(client, sents)
        assert events[-1][0] is None  # the final timed out
        for _ in range(80):  # WhisperLiveKit calls process() again on its next tokens; retries back off 1, 2, 5 s
            time.sleep(0.5)
            segment, buffer = client.process()
            events.append((segment.text if segment is not None else None, buffer.text))
            if segment is not None:
                break
    check_append_only(events)
    assert events[-1][0], "the final never arrived"
    assert srv.stats.sessions_total >= 2 and tiny_engine.finals_reused >= 1


@pytest.mark.skipif(os.environ.get("ALIGNHEADS_SKIP_EMBEDDED") == "1", reason="ALIGNHEADS_SKIP_EMBEDDED=1")
def test_whisperlivekit_client_on_the_embedded_model(embedded):
    """On a real model and tokenizer the client receives exactly the library's translation, and it is German.

    Measured on talk04's first three sentences: chrF 20.8 for these streamed finals, 30.5 when the same model
    translates each whole sentence at once (Gemma 3 270M base: its first streamed words are copied English)."""
    import sacrebleu

    from alignheads.speech.talks import talk_references

    f = embedded.facts  # the head set `alignheads score` exports for en-de on the shipped dev set (README)
    hs = HeadSet([HeadEntry(11, 2, query="emit"), HeadEntry(3, 3), HeadEntry(6, 0)], f.model_id, "en", "de",
                 f.num_layers, f.num_heads)
    eng = Engine(embedded, {"en-de": hs}, threads=1)
    sents = sentences(3)
    try:
        with ServerThread(MTServer(eng, ServeConfig(port=0))) as url:
            client = wlk.AlignAttRemoteEngine(url=url, source_language="en", preset=None,
                                              latency="balanced").new_session("de")
            events = play(client, sents)
    finally:
        eng.close()
    check_append_only(events)
    finals = [f for f, _ in events if f is not None]
    assert finals == reference_finals(embedded, hs, sents)
    refs, _ = talk_references(TALKS_DIR / "talk04.wav", "de")
    assert sacrebleu.corpus_chrf(finals, [refs[:3]]).score > 15
