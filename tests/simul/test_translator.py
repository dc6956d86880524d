"""The incremental translator on tiny random Gemma-3/4 (real code paths, noise outputs) and the embedded model."""

from __future__ import annotations

import random

import numpy as np
import pytest

from alignheads.heads.headset import Head, HeadEntry, HeadSet, HeadSetError
from alignheads.simul.policy import AlignAttConfig
from alignheads.simul.translator import (
    POLICIES,
    SimultaneousTranslator,
    SourceWord,
    TranslatorConfig,
    TranslatorError,
    drive,
    policy_trace_frame,
)
from tests.scripted import policy_heads

SRC = "For more than twenty years , BLEU has been the standard metric in our field .".split()
HEADS3 = [Head(2, 1), Head(5, 0, "emit"), Head(0, 3)]
HEADS4 = [Head(2, 1), Head(4, 3), Head(5, 0, "emit")]  # layers 4 and 5 read Gemma-4's shared KV


pytestmark = pytest.mark.usefixtures("one_thread")


def words(n: int, start: float = 0.0, pace: float = 0.4, src=SRC) -> list[SourceWord]:
    return [SourceWord(w, start + (i + 1) * pace) for i, w in enumerate(src[:n])]


def cfg(**kw) -> TranslatorConfig:
    align = kw.pop("alignatt", AlignAttConfig(border=-1, max_draft=6))
    return TranslatorConfig(alignatt=align, final_max_tokens=kw.pop("final_max_tokens", 12), **kw)


def run_stream(tr: SimultaneousTranslator, n_words: int, start: float = 0.0):
    tr.reset()
    ups = [tr.update(words(i, start), start + 0.4 * i) for i in range(1, n_words)]
    ups.append(tr.update(words(n_words, start), start + 0.4 * n_words, final=True))
    return ups


@pytest.mark.parametrize("name", ["tiny3", "tiny4"])
def test_kv_cache_reuse_gives_identical_drafts(name, request):
    lm = request.getfixturevalue(name)
    heads = HEADS3 if name == "tiny3" else HEADS4
    runs = {}
    for reuse in (True, False):
        tr = SimultaneousTranslator(lm, heads, "en", "de", config=cfg(reuse_cache=reuse))
        # two sentences: the second reuses the first's system prompt; sources far beyond the sliding window (16)
        ups = run_stream(tr, 9) + run_stream(tr, 7, start=10.0)
        runs[reuse] = (ups, dict(tr.stats))
    (with_reuse, st_on), (without, st_off) = runs[True], runs[False]
    assert st_off["reused_tokens"] == 0
    assert st_on["reused_tokens"] > 0.8 * st_on["prompt_tokens"]  # prompts differ only at their tail
    for a, b in zip(with_reuse, without, strict=True):
        ta, tb = a.decision_trace, b.decision_trace
        assert [t.token_id for t in ta.tokens] == [t.token_id for t in tb.tokens]
        assert a.new_text == b.new_text
        assert [t.position for t in ta.tokens] == [t.position for t in tb.tokens]
        if ta.attention is not None:  # the prompt's keys come from one chunk or two: float rounding only
            np.testing.assert_allclose(ta.attention, tb.attention, rtol=0, atol=1e-5)


@pytest.mark.parametrize("policy", POLICIES)
def test_append_only_under_random_update_sequences(tiny3, policy):
    rng = random.Random(hash(policy) % 1000)
    tr = SimultaneousTranslator(tiny3, policy_heads(policy, HEADS3, tiny3), "en", "de", policy,
                                config=cfg(cut_last=1, wait_k=2))
    for _sentence in range(2):
        tr.reset()
        shown, now = [], 100.0  # stream clock well past 0
        out = ""
        for _ in range(8):
            op = rng.random()
            if op < 0.55 and len(shown) < len(SRC):  # a new word
                now += 0.3
                shown.append(SourceWord(SRC[len(shown)], now))
            elif op < 0.75 and shown:  # ASR revision: the tail changes or shrinks
                cut = rng.randrange(len(shown))
                shown = shown[:cut] + [SourceWord("revised", now)] * rng.randint(0, 1)
            # else: a repeated update with nothing new
            before = tr.target
            upd = tr.update(list(shown), now)
            assert tr.target == before + upd.new_text  # only ever appended to
            assert tr.target.startswith(out)
            out = tr.target
        upd = tr.update(list(shown) or [SourceWord("end", now)], now, final=True)
        assert tr.target.startswith(out)
        assert tr.finished
        units = tr.target.split()
        assert sum(len(u.emitted_units) for u in tr.history) == len(units)


def test_final_update_translates_to_the_end_and_finishes(tiny3):
    tr = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=cfg(final_max_tokens=10))
    ups = run_stream(tr, 5)
    last = ups[-1]
    assert last.final and last.stop_reason == "final"
    assert last.decision_trace.draft_end in ("eos", "newline", "length_cap")
    assert all(t.status == "emitted" for t in last.decision_trace.tokens if t.text.strip())
    assert tr.finished
    again = tr.update(words(5), 3.0, final=True)  # repeated final: nothing more
    assert again.new_text == "" and again.stop_reason == "final"
    with pytest.raises(TranslatorError, match="reset"):
        tr.update(words(5), 3.0)


def test_clock_is_the_stream_clock_not_the_utterance(tiny3):
    """Words of a sentence that starts at 10 s on the stream clock: at now = 10.5 only one word (ends 10.4) is
    accessible. Code comparing utterance-relative word times (0.4, 0.8, 1.2) with the stream time would count all
    three — the authors' bug."""
    tr = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=cfg())
    ws = [SourceWord("For", 10.4), SourceWord("more", 10.8), SourceWord("than", 11.2)]
    upd = tr.update(ws, now=10.5)
    assert (upd.n_source, upd.n_accessible) == (3, 1)
    assert upd.decision_trace.n_accessible == 1
    held = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=cfg(holdback=0.5))
    assert held.update(ws, now=11.25).n_accessible == 1  # 10.4 <= 11.25 - 0.5 < 10.8


def test_empty_and_repeated_updates_do_not_run_the_model(tiny3):
    tr = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=cfg())
    empty = tr.update([], 0.0)
    assert empty.new_text == "" and empty.stop_reason == "no_source"
    first = tr.update(words(3), 1.25)
    calls = tr.stats["model_updates"]
    again = tr.update(words(3), 1.3)  # nothing new arrived
    assert again.stop_reason == "no_new_source" and again.new_text == ""
    assert tr.stats["model_updates"] == calls
    assert first.decision_trace.prompt_tokens > 0


def test_bad_input_is_rejected_clearly(tiny3):
    tr = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=cfg())
    with pytest.raises(TranslatorError, match="end times must not decrease"):
        tr.update([SourceWord("a", 2.0), SourceWord("b", 1.0)], 3.0)
    with pytest.raises(TranslatorError, match="one non-empty word"):
        tr.update([SourceWord("two words", 1.0)], 3.0)
    with pytest.raises(TranslatorError, match="finite"):
        tr.update(words(2), float("nan"))
    with pytest.raises(TranslatorError, match="needs alignment heads"):
        SimultaneousTranslator(tiny3, None, "en", "de", "alignatt")
    with pytest.raises(HeadSetError, match="out of range"):
        SimultaneousTranslator(tiny3, [Head(6, 0)], "en", "de")
    with pytest.raises(TranslatorError, match="unknown policy"):
        SimultaneousTranslator(tiny3, HEADS3, "en", "de", "wait-forever")


def test_very_long_source_names_the_context_limit(tiny3):
    tr = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=cfg(context_limit=260))
    long_src = (SRC * 6)[:60]
    for _ in range(2):  # a failed update is not remembered as done
        with pytest.raises(TranslatorError, match="context limit of 260 tokens"):
            tr.update(words(60, src=long_src), 30.0)


@pytest.mark.model  # a private tiny model (its weights are broken)
def test_nan_weights_stop_the_translator_instead_of_emitting_noise():
    import torch

    from alignheads.model.loader import load_model

    lm = load_model("tiny-gemma3")  # a private copy: its weights are broken below
    with torch.no_grad():
        lm.model.model.layers[1].mlp.down_proj.weight[0, 0] = float("inf")
    tr = SimultaneousTranslator(lm, HEADS3, "en", "de", config=cfg())
    with pytest.raises(TranslatorError, match="NaN/inf hidden states.*check the checkpoint"):
        tr.update(words(5), 2.0)


def test_headset_is_validated_and_top_k_taken(tiny3):
    hs = HeadSet([HeadEntry(2, 1, ts=0.5), HeadEntry(0, 3, ts=0.4), HeadEntry(5, 0, ts=0.3)],
                 tiny3.facts.model_id, "en", "de", tiny3.facts.num_layers, tiny3.facts.num_heads)
    tr = SimultaneousTranslator(tiny3, hs, "en", "de", config=cfg(top_k=2))
    assert tr.heads_label == ["L2H1", "L0H3"]
    assert tr._layers == [0, 2]  # capture runs on these layers only
    wrong = HeadSet([HeadEntry(2, 1)], "other/model", "en", "de", 6, 4)
    with pytest.raises(Exception, match="calibrated on"):
        SimultaneousTranslator(tiny3, wrong, "en", "de")


def test_trace_is_inspectable_and_plots(tiny3):
    import matplotlib

    matplotlib.use("Agg")
    from alignheads.lab.viz import policy_trace

    tr = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=cfg(final_max_tokens=16))
    ups = run_stream(tr, 8)
    mid = next(u for u in ups if not u.final and u.decision_trace.tokens)
    frame = mid.decision_trace.to_frame()
    assert list(frame.columns) == ["index", "token_id", "text", "position", "head_positions", "status"]
    assert all(len(h) == len(HEADS3) for h in frame["head_positions"])
    assert mid.decision_trace.attention.shape == (len(HEADS3), len(frame), mid.n_source)
    stops = frame[~frame["status"].isin(["emitted", "unit_cut", "after_stop", "held"])]
    assert len(stops) <= 1 and set(stops["status"]) <= {"future_source", "rewind"}
    df = tr.trace_frame()
    assert list(df.columns) == ["time", "source_available", "target_index", "text", "stop_reason"]
    assert df["target_index"].tolist() == list(range(len(df)))
    assert len(df) == len(tr.target.split())
    known = {"", "final", "future_source", "rewind", "end_of_draft"}
    assert set(df["stop_reason"]) <= known
    if ups[-1].emitted_units:  # the final update marks its last unit
        assert df["stop_reason"].iloc[-1] == "final"
    fig = policy_trace(df)
    assert fig is not None
    assert policy_trace_frame([]).empty


def test_baselines_follow_their_rules(tiny3):
    # wait-k: never more target units than accessible words - k + 1
    tr = SimultaneousTranslator(tiny3, None, "en", "de", "wait-k", config=cfg(wait_k=3))
    for i in range(1, 9):
        tr.update(words(i), 0.4 * i)
        assert len(tr.target.split()) <= max(0, i - 3 + 1)
    # local agreement: the first draft never emits
    la = SimultaneousTranslator(tiny3, None, "en", "de", "local-agreement", config=cfg())
    assert la.update(words(3), 1.2).new_text == ""


def test_unspaced_target_emits_characters(tiny3):
    tr = SimultaneousTranslator(tiny3, HEADS3, "en", "zh", "cut-last", config=cfg(cut_last=1))
    ups = run_stream(tr, 6)
    chars = [c for c in tr.target if not c.isspace()]
    assert sum(len(u.emitted_units) for u in ups) == len(chars)
    assert all(len(unit) == 1 for u in ups for unit in u.emitted_units)


def test_embedded_translator_mechanics(embedded):
    """Real tokenizer and completion layout: drafts stop at the newline, output is German-looking text that only
    grows, and reuse of the KV cache gives the same drafts."""
    texts = {}
    for reuse in (True, False):
        tr = SimultaneousTranslator(embedded, [Head(5, 0), Head(11, 2), Head(17, 1, "emit")], "en", "de",
                                    config=TranslatorConfig(alignatt=AlignAttConfig(border=-1, max_draft=6),
                                                            reuse_cache=reuse))
        src = "Thank you very much .".split()
        ws = [SourceWord(w, 0.4 * (i + 1)) for i, w in enumerate(src)]
        ups = [tr.update(ws[:i], 0.4 * i) for i in (2, 4)] + [tr.update(ws, 2.0, final=True)]
        texts[reuse] = ([t.token_id for u in ups for t in u.decision_trace.tokens], tr.target)
        assert ups[-1].decision_trace.draft_end in ("newline", "eos")
        assert "\n" not in tr.target and tr.target == tr.target.strip()
    assert texts[True] == texts[False]


@pytest.mark.parametrize("name", ["tiny3", "tiny4"])
def test_draft_attention_is_read_at_each_heads_query_row(name, request):
    """The attention AlignAtt decides on is, per head, the eager weights of the row its query kind names: draft token
    t's own position for `own` heads, the position that emitted it (one earlier) for `@emit` heads."""
    import torch

    from alignheads.model.attention import pool_source_words
    from alignheads.model.prompts import render

    lm = request.getfixturevalue(name)
    heads = HEADS3 if name == "tiny3" else HEADS4
    tr = SimultaneousTranslator(lm, heads, "en", "de", config=cfg(alignatt=AlignAttConfig(border=-1, max_draft=6)))
    src = words(7)
    trace = tr.update(src, 7 * 0.4).decision_trace
    n = len(trace.tokens)
    assert n >= 2 and trace.attention.shape[:2] == (len(heads), n)
    prompt = render(tr.layout, lm.tokenizer, [w.text for w in src])
    P = len(prompt.input_ids)
    ids = torch.tensor([prompt.input_ids + [t.token_id for t in trace.tokens]])
    lm.model.set_attn_implementation("eager")
    try:
        with torch.no_grad():
            attn = lm.model(ids, output_attentions=True).attentions
    finally:
        lm.model.set_attn_implementation("sdpa")
    for i, h in enumerate(heads):
        first = P if h.query == "own" else P - 1
        rows = attn[h.layer][0, h.head, first: first + n].float()
        want = pool_source_words(rows, prompt.src_tokens).numpy()
        np.testing.assert_allclose(trace.attention[i], want, atol=1e-5, rtol=0, err_msg=str(h))


@pytest.mark.parametrize("name", ["tiny3", "tiny4"])
@pytest.mark.parametrize("heads", ["own+emit", "emit"])
def test_a_guess_accepted_fully_partly_or_not_at_all_drafts_the_same(name, heads, request):
    """Feeding a guess with the prompt never changes the draft: the same tokens and end, and attention within 1e-5,
    whether the model accepts all of the guess (also up to the draft cap), part of it, or none; rejected guessed
    tokens leave the KV cache and the capture (Gemma-4's KV-shared layers included)."""
    from alignheads.model.prompts import render

    lm = request.getfixturevalue(name)
    emit_only = [Head(2, 1, "emit"), Head(5, 0, "emit")]
    chosen = (HEADS3 if name == "tiny3" else HEADS4) if heads == "own+emit" else emit_only
    tr = SimultaneousTranslator(lm, chosen, "en", "de", config=cfg(reuse_cache=False))
    prompt = render(tr.layout, lm.tokenizer, [w.text for w in words(7)])
    plain = drive(tr._generate(prompt, 6, True, "max_draft"))
    assert len(plain.ids) == 6
    wrong = next(i for i in range(5, 500) if i not in plain.ids and i not in tr._stop_ids)
    cases = {"all": (plain.ids, 6), "all but the cap": (plain.ids[:5], 5), "part": (plain.ids[:2] + [wrong], 2),
             "none": ([wrong] + plain.ids[1:4], 0)}
    for case, (guess, accepted) in cases.items():
        before = tr.stats["guess_accepted"]
        got = drive(tr._generate(prompt, 6, True, "max_draft", guess=guess))
        assert tr.stats["guess_accepted"] - before == accepted, case
        assert (got.ids, got.end) == (plain.ids, plain.end), case
        np.testing.assert_allclose(got.attention, plain.attention, atol=1e-5, rtol=0, err_msg=case)
        assert got.timings["draft_forwards"] < plain.timings["draft_forwards"] or accepted == 0, case


def test_guessing_translates_a_stream_exactly_as_without(tiny3):
    """Whole updates: the previous draft's unsent tokens as the guess give the same tokens, text and cuts."""
    runs = {}
    for guess in (True, False):
        tr = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=cfg(guess=guess))
        ups = run_stream(tr, 12)
        runs[guess] = ([(u.new_text, u.stop_reason, [t.token_id for t in u.decision_trace.tokens]) for u in ups],
                       tr.stats)
    assert runs[True][0] == runs[False][0]
    assert runs[True][1]["guess_tokens"] > 0 and runs[False][1]["guess_tokens"] == 0


def test_a_head_set_calibrated_in_another_dtype_is_stated(tiny3):
    """The file records the dtype its attention was scored in; using it on another decoder dtype warns, while the
    exact fast path (float32 decoder, screened output layer) is the same attention and does not."""
    import warnings

    from alignheads.model.loader import load_model

    hs = HeadSet([HeadEntry(2, 1), HeadEntry(5, 0, query="emit")], tiny3.facts.model_id, "en", "de",
                 tiny3.facts.num_layers, tiny3.facts.num_heads, calibration={"dtype": "float32"})
    with pytest.warns(UserWarning, match="calibrated on float32 attention and is used with int8"):
        SimultaneousTranslator(load_model("tiny-gemma3", dtype="int8"), hs, "en", "de")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SimultaneousTranslator(load_model("tiny-gemma3", dtype="auto"), hs, "en", "de")


def test_two_threads_drafting_on_one_model_take_turns(tiny3):
    """Capture hangs its recorder on the model's modules: translators on one model in two threads (two cascades,
    a cascade beside a server) must not record into each other's captures — they get what they get alone."""
    import threading

    def translate(out: list, start: float) -> None:
        tr = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=cfg())
        for _ in range(3):
            out.append([(u.new_text, [t.token_id for t in u.decision_trace.tokens]) for u in run_stream(tr, 12, start)])

    alone: list = []
    translate(alone, 0.0)
    together: list[list] = [[], []]
    threads = [threading.Thread(target=translate, args=(together[i], 0.0)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together[0] == together[1] == alone


def test_a_shared_memo_never_hands_one_head_set_the_attention_of_another(tiny3):
    """Guards the memo key (issue 21's sweep): translators reading different heads share one memo (as bench_policies'
    AlignAtt and learned-border settings do); a draft remembered for one head set is not reused by the other."""
    from collections import OrderedDict

    memo = OrderedDict()
    config = cfg(memo_size=100)
    first = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=config, memo=memo)
    other = SimultaneousTranslator(tiny3, HEADS3[:1], "en", "de", config=config, memo=memo)
    same = SimultaneousTranslator(tiny3, HEADS3, "en", "de", config=config, memo=memo)
    first.update(words(4), 1.6)
    b = other.update(words(4), 1.6).decision_trace
    c = same.update(words(4), 1.6).decision_trace
    assert not b.memo_hit and b.attention.shape[0] == 1
    assert c.memo_hit and c.attention.shape[0] == 3
