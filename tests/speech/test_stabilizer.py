"""Stabiliser: LCP commits on sentence ends, hold-back, start delay, and stream-clock (absolute) times."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alignheads.base.errors import AlignheadsError
from alignheads.base.sentences import is_sentence_final, split_sentences
from alignheads.speech.asr import Word
from alignheads.speech.stabilizer import Stabilizer, StabilizerConfig, common_prefix_length, normalize_word


def timed(text: str, start: float = 0.0, step: float = 0.3) -> list[Word]:
    """Words of `text` (space-separated), each `step` long, back to back from `start`."""
    return [Word(t, start + i * step, start + (i + 1) * step - 0.05) for i, t in enumerate(text.split())]


def texts(words: list[Word]) -> list[str]:
    return [w.text for w in words]


def stab(**kw) -> Stabilizer:
    return Stabilizer(StabilizerConfig(min_start_s=kw.pop("min_start_s", 0.0), **kw))


# --- pure helpers ---------------------------------------------------------------------------------


def test_normalize_word_folds_case_and_width_but_keeps_punctuation():
    assert normalize_word(" Today ") == normalize_word("today") == "today"
    assert normalize_word("ＡＢＣ") == "abc"  # full-width letters (NFKC)
    assert normalize_word("works.") != normalize_word("works,")


@pytest.mark.parametrize(
    ("text", "final"),
    [
        ("works.", True), ("so?", True), ("looks!", True), ('stop."', True), ("(ends.)", True),
        ("好。", True), ("吗？", True), ("停！」", True), ("你好", False), ("works,", False),
        ("e.g", False), ("3,5", False), ("", False), ("…", False),
        # abbreviations never end a sentence: titles, initials, dotted acronyms (any case, quoted)
        ("Mr.", False), ("dr.", False), ("St.", False), ("J.", False), ("U.S.", False), ("e.g.", False),
        ("i.e.", False), ("(U.S.)", False), ("z.", False), ("bzw.", False), ("Sig.", False), ("Mme.", False),
        ("2019.", True), ("etc.", True), ("U.S.!", True), ("Mr?", True),
    ],
)
def test_is_sentence_final(text, final):
    assert is_sentence_final(text) is final


@pytest.mark.parametrize(("text", "next_word", "final"), [
    ("works.", "And", True), ("works.", "and", False), ("works.", '"and', False), ("works.", "3", True),
    ("works?", "so", False), ("好。", "我们", True), ("Mr.", "Smith", False),
])
def test_a_lower_case_next_word_continues_the_sentence(text, next_word, final):
    assert is_sentence_final(text, next_word=next_word) is final


def test_abbreviations_do_not_split_a_recognised_sentence():
    words = timed("Mr. Smith moved to the U.S. in May. it rained. Then Dr. J. Weber came, e.g. by bus.")
    assert [texts(p)[-1] for p in split_sentences(words)] == ["rained.", "bus."]  # "May." goes on: "it"


def test_the_stabiliser_does_not_commit_at_an_abbreviation_or_before_a_lower_case_word():
    s = stab()
    s.update(timed("We met Dr. Weber in the U.S. last year"), now=3.0)
    up = s.update(timed("We met Dr. Weber in the U.S. last year and"), now=3.3)
    assert up.committed == []  # "Dr." and "U.S." are not sentence ends
    s.update(timed("It works. and then"), now=4.0)
    assert s.update(timed("It works. and then it"), now=4.3).committed == []


def test_common_prefix_length_on_normalised_text():
    a = timed("Hello everyone. Today I want")
    b = timed("hello Everyone. today i wanted to", start=0.7)  # times do not matter, text does
    assert common_prefix_length(a, b) == 4
    assert common_prefix_length(a, []) == 0
    assert common_prefix_length(timed("a b"), timed("a b")) == 2


def test_split_sentences_keeps_unfinished_tail():
    parts = split_sentences(timed("One. Two words! And a tail"))
    assert [texts(p) for p in parts] == [["One."], ["Two", "words!"], ["And", "a", "tail"]]
    assert split_sentences([]) == []


# --- commit rule ----------------------------------------------------------------------------------


def test_first_hypothesis_never_commits():
    s = stab()
    up = s.update(timed("Hello everyone. Today"), now=1.0)
    assert up.committed == [] and texts(up.partial) == ["Hello", "everyone.", "Today"]
    assert up.cut == 0.0


def test_sentence_end_inside_lcp_is_committed_and_cut_moves_to_next_word():
    s = stab()
    s.update(timed("Hello everyone. Today I"), now=1.3)
    h2 = timed("Hello everyone. Today I want")
    up = s.update(h2, now=1.6)
    assert texts(up.committed) == ["Hello", "everyone."]
    assert texts(up.partial) == ["Today", "I", "want"]
    assert up.cut == h2[2].start  # start of the first uncommitted word
    assert s.cut == up.cut and texts(s.committed) == ["Hello", "everyone."]
    assert [texts(x) for x in up.sentences] == [["Hello", "everyone."]]


def test_punctuation_outside_lcp_is_not_committed():
    s = stab()
    s.update(timed("Hello everyone. Today"), now=1.0)
    up = s.update(timed("Hello everyone, today I"), now=1.3)  # the period was revised away
    assert up.committed == []
    assert texts(up.partial) == ["Hello", "everyone,", "today", "I"]


def test_revision_before_the_period_blocks_the_commit():
    s = stab()
    s.update(timed("I went to the bank. It"), now=2.0)
    up = s.update(timed("I went to the park. It was"), now=2.3)  # LCP stops at "the"
    assert up.committed == []
    up = s.update(timed("I went to the park. It was cold"), now=2.6)
    assert texts(up.committed) == ["I", "went", "to", "the", "park."]
    assert texts(up.partial) == ["It", "was", "cold"]


def test_commits_up_to_the_last_sentence_end_inside_the_lcp():
    s = stab()
    s.update(timed("One. Two three! Four five? Six"), now=3.0)
    up = s.update(timed("One. Two three! Four five, six seven"), now=3.3)
    assert texts(up.committed) == ["One.", "Two", "three!"]
    assert [texts(x) for x in up.sentences] == [["One."], ["Two", "three!"]]
    assert texts(up.partial) == ["Four", "five,", "six", "seven"]


def test_chinese_punctuation_commits():
    s = stab()
    zh = ["大家", "好。", "今天", "我们", "讲"]
    words = [Word(t, 0.4 * i, 0.4 * i + 0.35) for i, t in enumerate(zh)]
    s.update(words[:4], now=1.7)
    up = s.update(words, now=2.1)
    assert texts(up.committed) == ["大家", "好。"]
    assert up.cut == words[2].start
    assert "".join(texts(up.partial)) == "今天我们讲"


def test_committed_text_is_append_only_and_the_next_hypothesis_is_compared_with_the_tail():
    s = stab()
    s.update(timed("Al be. Cy do"), now=1.5)
    up1 = s.update(timed("Al be. Cy do ed"), now=1.8)
    assert texts(up1.committed) == ["Al", "be."]
    # the next buffer starts at the cut: its hypothesis repeats only the tail
    tail = [w for w in timed("Al be. Cy do ed fi. Go") if w.start >= up1.cut]
    up2 = s.update(tail, now=2.4)
    assert up2.committed == []  # the agreed prefix "Cy do ed" holds no sentence end yet
    up3 = s.update(tail + [Word("ha", 2.3, 2.4)], now=2.5)
    assert texts(s.committed) == ["Al", "be.", "Cy", "do", "ed", "fi."]
    assert texts(up3.partial) == ["Go", "ha"]


# --- timing: start delay, hold-back, the stream clock ---------------------------------------------


def test_nothing_is_emitted_before_min_start():
    s = Stabilizer(StabilizerConfig(min_start_s=2.0))
    h = timed("Hi. There", step=0.4)
    for now in (0.85, 1.7):
        up = s.update(h, now=now)
        assert up.committed == [] and up.partial == [] and up.cut == 0.0
    up = s.update(h, now=2.55)  # the hypothesis seen before the start delay still counts as "previous"
    assert texts(up.committed) == ["Hi."] and texts(up.partial) == ["There"]


def test_cut_uses_the_stream_clock_after_a_commit():
    """After a commit the buffer starts at 10.0 s; times must stay absolute, not restart at 0."""
    s = stab()
    first = timed("This is the first sentence. And", start=8.0, step=0.4)  # "And" starts at 10.0
    s.update(first, now=10.3)
    up = s.update(first, now=10.4)
    assert texts(up.committed) == ["This", "is", "the", "first", "sentence."]
    assert up.cut == pytest.approx(10.0)
    # correct: the backend got audio[cut:] with offset=cut and returned absolute times
    nxt = [Word("And", 10.0, 10.3), Word("then", 10.35, 10.6), Word("we", 10.65, 10.9)]
    up = s.update(nxt, now=11.0)
    assert texts(up.partial) == ["And", "then", "we"] and [w.end for w in up.partial] == [10.3, 10.6, 10.9]
    # utterance-relative times (the bug in the authors' code) would make every word look old: refuse them
    relative = [Word(w.text, w.start - 10.0, w.end - 10.0) for w in nxt]
    with pytest.raises(AlignheadsError, match="stream clock"):
        s.update(relative, now=11.1)


def test_words_after_now_or_out_of_order_are_rejected():
    s = stab()
    with pytest.raises(AlignheadsError, match="after the stream time"):
        s.update([Word("a", 0.0, 2.0)], now=1.0)
    with pytest.raises(AlignheadsError, match="out of time order"):
        s.update([Word("a", 0.5, 0.6), Word("b", 0.1, 0.2)], now=1.0)
    with pytest.raises(AlignheadsError, match="out of time order"):
        s.update([Word("a", 0.5, 0.4)], now=1.0)
    s.update([], now=1.0)
    with pytest.raises(AlignheadsError, match="backwards"):
        s.update([], now=0.5)


def test_max_buffer_forces_a_commit_of_the_agreed_prefix():
    s = stab(max_buffer_s=3.0)
    h = timed("no punctuation in this long stretch of speech at all", step=0.3)
    s.update(h[:-1], now=2.9)
    up = s.update(h, now=3.1)
    assert texts(up.committed) == texts(h[:-1])  # LCP committed without a sentence end
    assert texts(up.partial) == ["all"] and up.cut == h[-1].start


def test_skip_to_drops_silence_only_when_nothing_is_pending():
    s = stab()
    s.update([], now=5.0)
    s.skip_to(4.2)
    assert s.cut == 4.2
    s.skip_to(3.0)
    s.skip_to(9.0)
    assert s.cut == 5.0  # never backwards, never past now
    s.update(timed("Words after the silence", start=5.5), now=7.5)
    with pytest.raises(AlignheadsError, match="pending"):
        s.skip_to(6.0)


# --- end of stream --------------------------------------------------------------------------------


def test_finish_commits_everything_and_closes():
    s = stab()
    s.update(timed("Hello there. General"), now=1.0)
    up = s.update(timed("Hello there. General Kenobi"), now=1.3)
    assert texts(up.committed) == ["Hello", "there."]
    last = [w for w in timed("Hello there. General Kenobi!") if w.start >= up.cut]
    fin = s.finish(last, now=1.3)
    assert fin.final and texts(fin.committed) == ["General", "Kenobi!"] and fin.partial == []
    assert texts(s.committed) == ["Hello", "there.", "General", "Kenobi!"]
    with pytest.raises(AlignheadsError, match="finished"):
        s.update([], now=2.0)


def test_finish_without_words_uses_the_last_hypothesis_even_before_min_start():
    s = Stabilizer(StabilizerConfig(min_start_s=2.0))
    s.update(timed("Short"), now=0.85)
    fin = s.finish()
    assert texts(fin.committed) == ["Short"]


def test_config_validation():
    with pytest.raises(AlignheadsError):
        StabilizerConfig(chunk_ms=0)
    with pytest.raises(AlignheadsError):
        StabilizerConfig(min_start_s=-0.1)
    with pytest.raises(AlignheadsError):
        StabilizerConfig(sentence_final="")
    assert StabilizerConfig().chunk_samples == 13600
    assert StabilizerConfig(chunk_ms=1500).chunk_samples == 24000


# --- whole streams with an oracle recogniser ------------------------------------------------------


def run_stream(timeline: list[Word], total: float, config: StabilizerConfig, relative: bool = False):
    """Drive a Stabilizer chunk by chunk with an oracle ASR that hears every word fully inside its buffer."""
    s = Stabilizer(config)
    updates = []
    now = 0.0
    step = config.chunk_ms / 1000
    while now < total:
        now = min(now + step, total)
        offset = s.cut
        heard = [w for w in timeline if w.start >= offset - 1e-9 and w.end <= now]
        if relative:
            heard = [Word(w.text, w.start - offset, w.end - offset) for w in heard]
        updates.append(s.update(heard, now))
    heard = [w for w in timeline if w.start >= s.cut - 1e-9]
    updates.append(s.finish(heard, now=total))
    return s, updates


def talk_timeline() -> list[Word]:
    text = "Good morning everyone. Today we talk about speech! Is it hard? Yes, it is. Thank you"
    return timed(text, start=0.5, step=0.45)


@pytest.mark.parametrize("chunk_ms", [850, 1500])
def test_oracle_stream_commits_every_word_once_in_order(chunk_ms):
    timeline = talk_timeline()
    s, updates = run_stream(timeline, total=timeline[-1].end + 0.5, config=StabilizerConfig(chunk_ms=chunk_ms))
    assert s.committed == timeline
    assert [w for u in updates for w in u.committed] == timeline  # each word exactly once
    assert all(u.committed == [] and u.partial == [] for u in updates if u.now < 2.0)
    cuts = [u.cut for u in updates]
    assert cuts == sorted(cuts) and cuts[-1] > 5.0
    # every sentence but the unfinished last one was committed before the end of the stream
    before_end = [w for u in updates[:-1] for w in u.committed]
    assert texts(before_end)[-1] == "is."


def test_oracle_stream_with_utterance_relative_times_is_refused():
    timeline = talk_timeline()
    with pytest.raises(AlignheadsError, match="stream clock"):
        run_stream(timeline, total=timeline[-1].end, config=StabilizerConfig(), relative=True)


@settings(max_examples=60, deadline=None)
@given(
    sentences=st.lists(st.lists(st.sampled_from(["la", "di", "da", "bo", "ku"]), min_size=1, max_size=6), min_size=1,
                       max_size=6),
    chunk_ms=st.sampled_from([300, 850, 1500]),
)
def test_oracle_stream_property(sentences, chunk_ms):
    tokens = []
    for sent in sentences:
        tokens += sent[:-1] + [sent[-1] + "."]
    timeline = timed(" ".join(tokens), start=0.2, step=0.35)
    cfg = StabilizerConfig(chunk_ms=chunk_ms)
    s, updates = run_stream(timeline, total=timeline[-1].end + 0.1, config=cfg)
    assert s.committed == timeline
    for u in updates:
        assert all(w.start >= u.cut - 1e-9 for w in u.partial)
