"""Decision rules on hand-made attention: z-score, median filter, border, rewind, unit cut, baselines."""

from __future__ import annotations

import numpy as np
import pytest

from alignheads.base.errors import AlignheadsError
from alignheads.simul.policy import (
    END_OF_DRAFT,
    FUTURE_SOURCE,
    REWIND,
    AlignAttConfig,
    alignatt_cut,
    alignatt_positions,
    cut_last,
    diagonal_positions,
    local_agreement,
    unit_cut,
    unit_ends,
    wait_k,
)


def diagonal_attention(n_tok: int, n_src: int, heads: int = 2, sink: float = 0.0, seed: int = 0) -> np.ndarray:
    """Attention where draft token t looks at source word t (plus noise, plus an optional sink on word 0)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 0.05, size=(heads, n_tok, n_src))
    for t in range(n_tok):
        a[:, t, min(t, n_src - 1)] += 0.5
    a[:, :, 0] += sink
    return a


def test_z_score_removes_an_attention_sink():
    a = diagonal_attention(6, 8, sink=2.0)
    raw, _ = alignatt_positions(a, AlignAttConfig(z_score=False, median_width=1))
    assert raw.tolist() == [0] * 6  # every token "attends" the sink
    pos, per_head = alignatt_positions(a, AlignAttConfig(median_width=1))
    assert pos.tolist() == [0, 1, 2, 3, 4, 5]
    assert per_head.shape == (2, 6)


def test_median_filter_removes_a_single_word_spike():
    # source words 0..9; each token's mass is a broad bump, one head adds a one-word spike far away
    n_src = 10
    a = np.zeros((1, 3, n_src))
    for t, c in enumerate((2, 3, 4)):
        a[0, t, max(0, c - 2): c + 3] = 1.0
        a[0, t, c] = 1.2
    a[0, 1, 9] = 3.0  # spike
    unfiltered, _ = alignatt_positions(a, AlignAttConfig(z_score=False, median_width=1))
    filtered, _ = alignatt_positions(a, AlignAttConfig(z_score=False, median_width=5))
    assert unfiltered[1] == 9
    assert filtered[1] != 9


def test_head_mean_decides_between_disagreeing_heads():
    a = np.zeros((3, 1, 5))
    a[0, 0, 1] = a[1, 0, 1] = 1.0  # two heads say word 1
    a[2, 0, 4] = 1.5  # one head says word 4
    pos, per_head = alignatt_positions(a, AlignAttConfig(z_score=False, median_width=1))
    assert pos.tolist() == [1]
    assert per_head[:, 0].tolist() == [1, 1, 4]


def test_positions_reject_bad_shapes():
    with pytest.raises(AlignheadsError, match="heads, draft tokens, source words"):
        alignatt_positions(np.zeros((3, 4)))
    with pytest.raises(AlignheadsError, match="at least one head"):
        alignatt_positions(np.zeros((0, 2, 3)))
    pos, per_head = alignatt_positions(np.zeros((2, 0, 3)))
    assert pos.shape == (0,) and per_head.shape == (2, 0)


@pytest.mark.parametrize(
    ("border", "expected"),
    [
        (1, (4, FUTURE_SOURCE, 4)),  # paper b=1: index 5 (first pending word) tolerated, index 6 stops
        (0, (3, FUTURE_SOURCE, 3)),  # any pending word stops
        (-1, (2, FUTURE_SOURCE, 2)),  # original AlignAtt f=1: attending the last accessible word stops
        (3, (6, END_OF_DRAFT, None)),
    ],
)
def test_border_rule_off_by_one(border, expected):
    # 5 accessible words (0..4); positions walk past them
    positions = [0, 2, 4, 5, 6, 7]
    assert alignatt_cut(positions, 5, AlignAttConfig(border=border)) == expected


def test_rewind_rule():
    cfg = AlignAttConfig(border=5, rewind=3)
    assert alignatt_cut([5, 6, 7, 4], 10, cfg) == (4, END_OF_DRAFT, None)  # jumps back 3: allowed
    assert alignatt_cut([5, 6, 7, 3, 8], 10, cfg) == (3, REWIND, 3)  # jumps back 4 > 3
    assert alignatt_cut([5, 6, 7, 3, 8], 10, AlignAttConfig(border=5, rewind=0)) == (5, END_OF_DRAFT, None)  # off
    # the first draft token is compared with the last token accepted before the draft
    assert alignatt_cut([2, 3], 10, cfg, last_position=9) == (0, REWIND, 0)
    assert alignatt_cut([2, 3], 10, cfg, last_position=5) == (2, END_OF_DRAFT, None)


def test_config_validation():
    with pytest.raises(AlignheadsError, match="rewind"):
        AlignAttConfig(rewind=-1)
    with pytest.raises(AlignheadsError, match="odd"):
        AlignAttConfig(median_width=6)
    with pytest.raises(AlignheadsError, match="max_draft"):
        AlignAttConfig(max_draft=0)


# ----------------------------------------------------------------------------- unit cut


@pytest.mark.parametrize(
    ("text", "keep", "complete", "expected"),
    [
        (" Das Haus ist gr", 16, False, " Das Haus ist"),  # last word may continue: dropped
        (" Das Haus ist groß", 18, True, " Das Haus ist groß"),  # draft ended with a stop token
        (" Das Haus ist groß", 18, False, " Das Haus ist"),
        (" Das Haus ist", 9, False, " Das Haus"),  # whitespace follows: complete
        (" Das Haus ist", 7, False, " Das"),  # cut inside a word
        (" Das Haus.", 9, True, " Das"),  # "Haus." is the unit; the rule stopped before "."
        (" Haus", 5, False, ""),  # the only word may continue
        ("", 0, True, ""),
        (" Das Haus  ", 11, False, " Das Haus"),  # trailing whitespace is never emitted
    ],
)
def test_unit_cut_spaced(text, keep, complete, expected):
    assert text[: unit_cut(text, keep, spaced=True, complete=complete)] == expected


@pytest.mark.parametrize(
    ("text", "keep", "complete", "expected"),
    [
        ("我们的结果", 3, False, "我们的"),  # one character is a unit, complete or not
        ("我们的结果", 5, False, "我们的结果"),
        ("BLEU提高了", 2, False, "BL"),
        ("我们 的", 3, True, "我们"),
    ],
)
def test_unit_cut_unspaced(text, keep, complete, expected):
    assert text[: unit_cut(text, keep, spaced=False, complete=complete)] == expected


def test_unit_ends_and_range_check():
    assert unit_ends(" a bc d", True, complete=False) == [2, 5]
    assert unit_ends(" a bc d", True, complete=True) == [2, 5, 7]
    assert unit_ends("我 们", False, complete=False) == [1, 3]
    with pytest.raises(AlignheadsError, match="out of range"):
        unit_cut("abc", 4, True, False)


# ----------------------------------------------------------------------------- baselines


def test_wait_k():
    # k=3: nothing before 3 words; then one unit per word
    assert wait_k(10, 0, 2, 3) == 0
    assert wait_k(10, 0, 3, 3) == 1
    assert wait_k(10, 1, 5, 3) == 2
    assert wait_k(1, 0, 9, 3) == 1  # never more than the draft has
    assert wait_k(10, 5, 4, 3) == 0  # already ahead
    with pytest.raises(AlignheadsError):
        wait_k(3, 0, 3, 0)


def test_cut_last_and_local_agreement():
    assert cut_last(5, 2) == 3
    assert cut_last(1, 2) == 0
    assert cut_last(4, 0) == 4
    with pytest.raises(AlignheadsError):
        cut_last(4, -1)
    assert local_agreement(None, ["a", "b"]) == 0
    assert local_agreement(["a", "b", "c"], ["a", "b", "x", "y"]) == 2
    assert local_agreement(["a"], ["a", "b"]) == 1
    assert local_agreement(["z"], ["a", "b"]) == 0


def test_diagonal_positions():
    # 4 target words over 7 source words: 0, 2, 4, 6; tokens map through their word
    assert diagonal_positions([0, 0, 1, 2, 3], 7, 4).tolist() == [0, 0, 2, 4, 6]
    assert diagonal_positions([0], 3, 1).tolist() == [0]
    with pytest.raises(AlignheadsError):
        diagonal_positions([0], 0, 1)


def test_alignatt_decide_never_emits_the_stopping_token():
    """AlignAtt.decide on a DraftView: the token whose heads point past the border, and all after it, stay unsent;
    the emitted text is the whole units before it, and the rewind reference is the last emitted token's word."""
    from alignheads.simul.policy import POLICIES, DraftView
    from alignheads.simul.translator import TranslatorConfig

    text = " Das ist ein kurzer Test"
    view = DraftView(text, [0, 4, 8, 12, 19, 24], complete=False, spaced=True, n_accessible=2, n_emitted=0,
                     attention=diagonal_attention(5, 6))
    state: dict = {}
    cfg = TranslatorConfig(alignatt=AlignAttConfig(border=0, z_score=False, median_width=1))
    cut = POLICIES["alignatt"].decide(view, cfg, state)
    assert (cut.keep_tokens, cut.stop_index, cut.reason) == (2, 2, FUTURE_SOURCE)
    assert text[: cut.chars] == " Das ist"
    assert list(cut.positions) == [0, 1, 2, 3, 4] and state["last_position"] == 1


def test_local_agreement_of_n_drafts():
    """LA-n emits the units the last n drafts agree on; LA-2 is the classic two-draft rule."""
    from alignheads.simul.policy import POLICIES, DraftView
    from alignheads.simul.translator import TranslatorConfig

    def run(n, drafts):
        state, out = {}, []
        for k, text in enumerate(drafts):
            ends = [0] + [i + 1 for i, c in enumerate(text) if c != " " and (i + 1 == len(text) or text[i + 1] == " ")]
            view = DraftView(text, ends, complete=True, spaced=True, n_accessible=5, n_emitted=len(out),
                             n_shown=k + 1)
            cut = POLICIES["local-agreement"].decide(view, TranslatorConfig(la_n=n), state)
            out += text[: cut.chars].split()
        return out

    drafts = [" a b c", " a b d", " a x y"]
    assert run(2, drafts) == ["a", "b"]  # the 2nd agrees with the 1st on "a b"
    assert run(3, drafts) == ["a"]  # only "a" is in all three
    assert run(4, drafts) == []


def test_local_agreement_counts_a_redraft_of_the_same_input_once():
    """Guards LA-n on a stream with hold-back: an update that shows no new source word (only makes a shown word
    accessible) redrafts the same prompt; it must not count as a second draft agreeing with the first."""
    from alignheads.simul.policy import POLICIES, DraftView
    from alignheads.simul.translator import TranslatorConfig

    state, out = {}, []
    for text, shown in [(" a b c", 3), (" a b c", 3), (" a b d", 4)]:
        ends = [0] + [i + 1 for i, c in enumerate(text) if c != " " and (i + 1 == len(text) or text[i + 1] == " ")]
        view = DraftView(text, ends, complete=True, spaced=True, n_accessible=5, n_emitted=len(out), n_shown=shown)
        cut = POLICIES["local-agreement"].decide(view, TranslatorConfig(la_n=2), state)
        out.append(text[: cut.chars].split())
    assert out == [[], [], ["a", "b"]]  # the repeat agreed with nothing; the next input's draft agrees on "a b"
